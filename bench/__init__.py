"""Benchmarks for birthcert, reported as ratios against baselines measured in the same run.

``python -m bench`` (``make bench``) measures:

* commands on a SQLite file (cipher and compressor as the service uses them) against the stock
  eventsourcing library's own command rate (``bench.commands``);
* HTTP requests against a bare aiohttp handler, both served on loopback (``bench.httpbench``).

Nothing here asserts a speed: it prints a table and writes ``bench/results/latest.json``.
See ``bench/README.md``.
"""
