"""The garbage collector of a serving process: the p99 tail of reads was its full collections.

Once started, a process holds a large heap that lives as long as it does (modules, the library's and the
domain's classes, the province profiles, the clients and their pools). Every full collection walks all of
it again, stalling whichever requests are in flight. ``gc.freeze()`` after start-up moves everything that
exists then into a permanent generation the collector no longer scans; the first generation's threshold
is raised so that the many small, short-lived objects of requests are collected less often, in one go.
Only the serving commands call this (``birthcert serve``, ``birthcert dev``, the HTTP benchmark): tests
build and drop many apps in one process and keep the interpreter's defaults. Measured in bench/httpbench.py
(decision 0029).
"""

from __future__ import annotations

import gc
from typing import Final

from aiohttp import web

THRESHOLDS: Final = (10_000, 20, 20)
"""Generation 0 every 10,000 net allocations (the default 700 ran one every few requests)."""


def freeze_after_start(app: web.Application) -> None:
    """Collect, then freeze the heap once every resource of ``app`` has started; raise the thresholds."""
    app.on_startup.append(_freeze)


async def _freeze(app: web.Application) -> None:
    # Runs after cleanup_ctx has opened everything (aiohttp runs it as the first startup callback).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
