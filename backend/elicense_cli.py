"""``birthcert elicense keys`` and ``birthcert elicense rotate-key``: the e-licence's signing keys (decision 0038).

A rotation makes a new current key and retires the one before; retired keys stay in the JWKS for ever, so that
every e-licence ever issued still verifies. Running servers sign with the new key from their next e-licence (the
key is read from the database each time).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from backend.config import Config
from backend.credentials import KeyRing
from backend.storage import at_rest_key
from projections.sql import Database


def _ring() -> KeyRing:
    config = Config.from_env()
    return KeyRing(Database.open(config.event_store_env()), at_rest_key(config.cipher_key, config.index_key))


def elicense_keys(args: argparse.Namespace) -> int:
    """List the keys (public parts and states)."""
    ring = _ring()
    try:
        print(json.dumps(ring.jwks(), ensure_ascii=False, indent=2))
    finally:
        ring.db.close()
    return 0


def elicense_rotate(args: argparse.Namespace) -> int:
    """A new current key; the previous one retired (never deleted)."""
    ring = _ring()
    try:
        signer = ring.rotate()
        retired = [k.kid for k in ring.records() if k.retired_at]
    finally:
        ring.db.close()
    print(
        f"e-licence signing key {signer.kid} (ES256); retired, still verifying: {', '.join(retired) or 'none'}"
    )
    return 0


def register_elicense(subparsers: Any) -> None:
    p = subparsers.add_parser("elicense", help="the electronic certificate's signing keys")
    sub = p.add_subparsers(dest="elicense_command", required=True, metavar="COMMAND")
    sub.add_parser("keys", help="print the JWKS with every key, current and retired").set_defaults(
        handler=elicense_keys
    )
    sub.add_parser(
        "rotate-key", help="new signing key; the previous one is retired, never deleted"
    ).set_defaults(handler=elicense_rotate)
