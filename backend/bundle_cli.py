"""``birthcert bundle handoffs`` and ``birthcert bundle resend``: the operator's view of 出生一件事's outbox
(decision 0046).

A hand-off a department's system refused outright (HTTP 4xx: its interface changed, an adapter misconfigured) is
``rejected``: logged, shown to the issuer, and never tried again by itself. Once the cause is mended, ``resend``
makes it pending again; the leader asks the department first and sends the same bytes under the same id, so the
department still takes it once. Ids and bookkeeping only are printed: no personal data.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from typing import Any

from backend.config import Config
from projections.bundle_handoff import CANCELLED, PENDING, REJECTED, SENT, list_handoffs, resend_rejected
from projections.sql import Database

log = logging.getLogger(__name__)


def _db() -> Database:
    return Database.open(Config.from_env().event_store_env())


def bundle_handoffs(args: argparse.Namespace) -> int:
    """Print the hand-offs (JSON lines), filtered by state and department."""
    db = _db()
    try:
        for handoff in list_handoffs(db, state=args.state, department=args.department):
            print(json.dumps(asdict(handoff), ensure_ascii=False))
    finally:
        db.close()
    return 0


def bundle_resend(args: argparse.Namespace) -> int:
    """Make the named (or every rejected, of one department) hand-offs pending again."""
    db = _db()
    try:
        ids = list(args.message_ids)
        if args.rejected:
            ids += [h.message_id for h in list_handoffs(db, state=REJECTED, department=args.department)]
        done = resend_rejected(db, ids)
    finally:
        db.close()
    for message_id in done:
        log.info("hand-off %s to be sent again", message_id)
    left = sorted(set(ids) - set(done))
    print(
        f"{len(done)} hand-off(s) to be sent again by the leader"
        + (f"; not rejected, left alone: {', '.join(left)}" if left else "")
    )
    return 0 if done or not ids else 1


def register_bundle(subparsers: Any) -> None:
    p = subparsers.add_parser("bundle", help="出生一件事: the hand-offs to the departments")
    sub = p.add_subparsers(dest="bundle_command", required=True, metavar="COMMAND")
    listing = sub.add_parser("handoffs", help="list the hand-offs (ids and states, no personal data)")
    listing.add_argument("--state", choices=(PENDING, SENT, REJECTED, CANCELLED))
    listing.add_argument("--department", help="a department code (police, medical_insurance, …)")
    listing.set_defaults(handler=bundle_handoffs)
    resend = sub.add_parser("resend", help="send again hand-offs a department's system refused outright")
    resend.add_argument("message_ids", nargs="*", metavar="MESSAGE_ID")
    resend.add_argument("--rejected", action="store_true", help="every rejected hand-off (of --department)")
    resend.add_argument("--department", help="with --rejected: only this department's")
    resend.set_defaults(handler=bundle_resend)
