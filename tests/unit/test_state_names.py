"""Every state of an application (domain/application.py ``STATES``) is named wherever states are shown: the
published contract (OpenAPI), the parents' status view, the issuers' console and the H5 simulator. A state added to
the domain without its words in one of them fails here (the last one added: ``revoked``, decision 0040)."""

from __future__ import annotations

import re
from pathlib import Path

from backend import openapi
from domain import application
from projections import status

ROOT = Path(__file__).resolve().parents[2]


def _keys(script: Path, opening: str) -> set[str]:
    """The keys of the object literal that follows ``opening`` in a script (one or several lines)."""
    text = script.read_text(encoding="utf-8")
    start = text.index(opening) + len(opening)
    body = text[start : text.index("}", start)]
    return set(re.findall(r"(?:^|[{,\s])(\w+):", body))


def test_every_state_is_named_in_the_contract_the_views_the_console_and_the_simulator() -> None:
    states = set(application.STATES)
    assert "revoked" in states
    assert list(openapi.STATES) == list(application.STATES)
    assert set(application.STATE_LABELS) == states
    assert set(status.STATE_LABELS) == states
    assert _keys(ROOT / "backend/console/console.js", "const STATE_LABELS = {") == states
    assert _keys(ROOT / "miniprogram_stub/h5/h5.js", "const icon = {") == states
