"""``birthcert audit check|checkpoint|key|verify``: the auditor's and operator's commands."""

from __future__ import annotations

import argparse
import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

from backend.config import Config
from domain.service import Applications

VERIFIER = Path(__file__).resolve().parent.parent / "tools" / "birthcert_verify.py"


def _open() -> tuple[Applications, Any]:
    from backend.routes.audit import open_audit_log

    config = Config.from_env()
    applications = Applications(config.event_store_env())
    return applications, open_audit_log(config, applications, ThreadPoolExecutor(max_workers=1))


def check(args: argparse.Namespace) -> int:
    """Recompute the log from the event store and compare it with the last signed checkpoint."""
    applications, audit = _open()
    try:
        result = audit.check(thorough=not args.quick)
    finally:
        audit.db.close()
        applications.close()
    where = f" (position {result.position})" if result.position is not None else ""
    print(f"{'OK' if result.ok else 'MISMATCH'}: {result.message}{where}")
    return 0 if result.ok else 1


def checkpoint(args: argparse.Namespace) -> int:
    """Sign a checkpoint of the log as it stands (after catching up with the event store)."""
    import asyncio

    from projections.audit_log import IntegrityError
    from projections.runner import LogFollower

    applications, audit = _open()
    try:
        asyncio.run(LogFollower(applications, audit, executor=audit.executor, name="audit-log").catch_up())
        latest = audit.make_checkpoint()
    except IntegrityError as error:
        print(f"MISMATCH: {error}")
        return 1
    finally:
        audit.db.close()
        applications.close()
    print(latest["note"], end="")
    return 0


def key(args: argparse.Namespace) -> int:
    """Print the verifier key(s) auditors use to check checkpoints."""
    from backend.routes.audit import log_signing_keys
    from projections.signed_note import Ed25519NoteSigner

    config = Config.from_env()
    for private in log_signing_keys(config).private_keys():
        print(Ed25519NoteSigner(config.log_origin, private).verifier_key())
    return 0


def standalone_verifier() -> ModuleType:
    """tools/birthcert_verify.py, the file auditors run without birthcert installed."""
    spec = importlib.util.spec_from_file_location("birthcert_verify", VERIFIER)
    if spec is None or spec.loader is None:
        raise SystemExit(f"birthcert: cannot load {VERIFIER}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def verify(args: argparse.Namespace) -> int:
    """Check a proof bundle offline, exactly as the standalone verifier does."""
    status: int = standalone_verifier().main(["bundle", args.bundle, "--key", args.key])
    return status


def register_audit(subparsers: Any) -> None:
    """Add ``audit``."""
    audit = subparsers.add_parser("audit", help="the verifiable audit log").add_subparsers(
        dest="audit_command", required=True
    )
    c = audit.add_parser("check", help="compare the event store with the last signed checkpoint")
    c.add_argument(
        "--quick",
        action="store_true",
        help="what the service checks at start: the events past the checkpoint, and a sample below it",
    )
    c.set_defaults(handler=check)
    audit.add_parser("checkpoint", help="sign a checkpoint now and print it").set_defaults(handler=checkpoint)
    audit.add_parser("key", help="print the verifier key(s) of the checkpoints").set_defaults(handler=key)
    v = audit.add_parser("verify", help="verify a proof bundle offline")
    v.add_argument("bundle")
    v.add_argument("--key", required=True, help="the verifier key (birthcert audit key)")
    v.set_defaults(handler=verify)
