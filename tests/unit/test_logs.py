"""What the service's JSON logs keep out: raw request bytes quoted by aiohttp's own parser errors."""

from __future__ import annotations

import logging

import orjson
import pytest

from backend.logs import configure_logging


def test_a_malformed_request_is_logged_without_the_bytes_it_carried(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging()
    try:
        raise ValueError(
            "Invalid header value: b'Bearer eyJhbGciOiJFZERTQSJ9.secret-token 440106199307105242'"
        )
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request from %s", "203.0.113.9")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = orjson.loads(line)
    assert entry["error_type"] == "ValueError"
    assert "secret-token" not in line and "440106199307105242" not in line and "203.0.113.9" not in line
    root.handlers[:], root.level = handlers, level
