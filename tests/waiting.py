"""Waiting on a condition with a deadline (never a bare sleep to wait for a projection)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

DEADLINE = 30.0


async def eventually(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """The first true value of ``condition()`` (sync, or async and awaited), or fail saying what did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)
