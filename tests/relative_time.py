"""Times in test parameters that are taken when the test runs, not when the tests were collected."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Now:
    """A time relative to when the test runs (not to when the tests were collected, minutes earlier)."""

    offset: int

    def at(self) -> int:
        return int(time.time()) + self.offset


def resolved(changes: dict[str, Any]) -> dict[str, Any]:
    """The claims with every ``Now`` made a timestamp at this moment."""
    return {k: v.at() if isinstance(v, Now) else v for k, v in changes.items()}
