"""The ``birthcert`` command line.

Each subcommand is a ``register_*`` function that adds its parser and sets ``handler``;
a handler takes the parsed arguments and returns the exit status. To add a command,
write its register function and append it to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from backend.config import PRODUCTION, Config, ConfigError, data_dir_from_env, ensure_dev_keys

Subparsers = Any  # argparse's _SubParsersAction is private
Handler = Callable[[argparse.Namespace], int]


def _url_host(host: str) -> str:
    """The host to put in a URL a person can open."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def serve(args: argparse.Namespace) -> int:
    """Run the HTTP backend until interrupted: production unless ``BIRTHCERT_ENV=development``."""
    from aiohttp import web

    from backend.app import create_app
    from backend.gc_tuning import freeze_after_start
    from backend.logs import configure_logging
    from projections.sql import SchemaError

    configure_logging()
    config = Config.from_env(default_environment=PRODUCTION)
    app = create_app(config)  # refuses a production configuration with missing or public credentials
    freeze_after_start(app)  # the GC's full collections were the p99 tail of reads (decision 0029)
    host = args.host or config.host
    port = config.port if args.port is None else args.port
    base = f"http://{_url_host(host)}:{port}"

    workers = args.workers

    def announce(_aiohttp_message: str = "") -> None:
        how = f", {workers} worker processes" if workers > 1 else ""
        print(f"birthcert listening on {base}  ({config.environment}{how})", flush=True)
        print(f"  health:  {base}/healthz", flush=True)
        print(f"  ready:   {base}/readyz  (the event store answers)", flush=True)
        print(f"  data:    {config.data_dir} ({config.persistence_module})", flush=True)
        if config.development:
            print(
                "  WARNING: BIRTHCERT_ENV=development: the fake platforms' public credentials and the H5 "
                "simulator; never expose this to the internet",
                flush=True,
            )
        print("Press Ctrl+C to stop.", flush=True)

    try:
        if workers > 1:
            from backend.workers import serve_workers

            return serve_workers(config, host, port, workers, announce)
        web.run_app(app, host=host, port=port, print=announce, access_log=None)
    except SchemaError as e:  # PostgreSQL not migrated (or migrated by a newer version): say what to run
        print(f"birthcert: {e}", file=sys.stderr)
        return 2
    return 0


def register_serve(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="run the HTTP backend (production unless BIRTHCERT_ENV=development)"
    )
    p.add_argument("--host", help="address to bind (default: BIRTHCERT_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind (default: BIRTHCERT_PORT or 8080)")
    p.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes sharing the port (SO_REUSEPORT), supervised by this one (default 1: serve here)",
    )
    p.set_defaults(handler=serve)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def keys_init(args: argparse.Namespace) -> int:
    """Create the development key files that are missing; print their paths, never the keys."""
    for path in ensure_dev_keys(data_dir_from_env()):
        print(path)
    overridden = [name for name in ("CIPHER_KEY", "BIRTHCERT_INDEX_KEY") if os.environ.get(name)]
    if overridden:
        print(f"note: {', '.join(overridden)} set in the environment; it takes precedence over the file")
    return 0


def keys_rotate_jwt(args: argparse.Namespace) -> int:
    """Start a token-key rotation: a new signing key; the old one still verifies until retired."""
    from backend.auth import TokenKeys

    keys = TokenKeys.rotate(Config.from_env().jwt_key_dir)
    print(
        f"new signing key {keys.current_kid}; previous still accepted: {', '.join(keys.kids[1:]) or 'none'}"
    )
    print("restart the servers; retire the previous key (keys retire-jwt) once its tokens have expired (2 h)")
    return 0


def keys_retire_jwt(args: argparse.Namespace) -> int:
    """End a rotation: tokens signed by the previous key are no longer accepted."""
    from backend.auth import TokenKeys

    keys = TokenKeys.retire_previous(Config.from_env().jwt_key_dir)
    print(f"signing key {keys.current_kid}; no previous key accepted; restart the servers")
    return 0


def register_keys(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("keys", help="manage the development keys")
    keys = p.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    init = keys.add_parser("init", help="create the development key files if missing")
    init.set_defaults(handler=keys_init)
    rotate = keys.add_parser(
        "rotate-jwt", help="new token-signing key; the previous one stays valid until retired"
    )
    rotate.set_defaults(handler=keys_rotate_jwt)
    retire = keys.add_parser("retire-jwt", help="stop accepting tokens signed by the previous key")
    retire.set_defaults(handler=keys_retire_jwt)


def version(args: argparse.Namespace) -> int:
    """Print the installed version."""
    try:
        print(metadata.version("birthcert"))
    except metadata.PackageNotFoundError:
        from backend import __version__

        print(__version__)
    return 0


def register_version(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("version", help="print the version")
    p.set_defaults(handler=version)


def _late(module: str, name: str) -> Callable[[Subparsers], None]:
    """A register function imported only when the parser is built (keeps `birthcert version` light)."""

    def register(subparsers: Subparsers) -> None:
        import importlib

        getattr(importlib.import_module(module), name)(subparsers)

    return register


COMMANDS: list[Callable[[Subparsers], None]] = [
    register_serve,
    register_keys,
    register_version,
    _late("miniprogram_stub.platform", "register_stub"),
    _late("backend.admin", "register_admin"),
    _late("backend.audit_cli", "register_audit"),
    _late("backend.calendar_cli", "register_calendar"),
    _late("backend.dev", "register_dev"),
    _late("backend.dev", "register_demo"),
    _late("projections.cli", "register_projections"),
    _late("backend.migrate", "register_db"),
    _late("backend.elicense_cli", "register_elicense"),
    _late("backend.bundle_cli", "register_bundle"),
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="birthcert", description="Birth Medical Certificate backend")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``birthcert`` console script."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as e:
        print(f"birthcert: configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
