"""``birthcert institutions …`` and ``birthcert users …``: the administrator's commands.

They write to the same event store as the service (the actor is the operator at the console,
recorded as a system actor), so every account and institution has its audit trail.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from backend.config import Config
from domain.errors import DomainError
from domain.pickup import PickupWindow
from domain.service import Applications
from domain.staff import STAFF_ROLES
from domain.values import Actor, CounterDetails


def operator() -> Actor:
    """Who is acting: the operating-system user at the console."""
    return Actor(id=f"cli:{getpass.getuser()}", role="system")


def _service() -> Applications:
    return Applications(Config.from_env().event_store_env())


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise SystemExit("birthcert: the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def _refused(error: DomainError) -> int:
    """Say why on standard error, with each field's complaint; the exit status 1."""
    details = "; ".join(f"{x.field}: {x.message}" for x in getattr(error, "errors", []))
    print(f"birthcert: {error.message} ({error.code}){' — ' + details if details else ''}", file=sys.stderr)
    return 1


def users_add(args: argparse.Namespace) -> int:
    """Create a staff account; the password is read from standard input and stored as an argon2 hash."""
    from backend.routes.staff import hash_password

    password = _read_password()
    if args.role in ("auditor", "admin", "manager") and args.institution:
        print(
            f"birthcert: {args.role} accounts belong to no institution; --institution ignored"
            + (" (a manager of one institution: --scope institution:CODE)" if args.role == "manager" else ""),
            file=sys.stderr,
        )
        args.institution = None
    if args.role != "manager" and args.scope:
        print("birthcert: only manager accounts have a scope; --scope ignored", file=sys.stderr)
        args.scope = None
    service = _service()
    try:
        outcome = service.create_staff_account(
            operator(),
            username=args.username,
            role=args.role,
            institution=args.institution,
            display_name=args.name or args.username,
            password_hash=hash_password(password),
            scope=args.scope,
        )
    except DomainError as e:
        return _refused(e)
    finally:
        service.close()
    print(f"created {args.role} account {args.username} ({outcome.id})")
    return 0


def users_disable(args: argparse.Namespace) -> int:
    """Disable a staff account: no login from now on; its tokens are refused within a minute."""
    service = _service()
    try:
        service.disable_staff_account(operator(), args.username, reason=args.reason)
    except DomainError as e:
        print(f"birthcert: {e.message} ({e.code})", file=sys.stderr)
        return 1
    finally:
        service.close()
    print(f"disabled account {args.username}")
    return 0


def institutions_add(args: argparse.Namespace) -> int:
    """Register an institution."""
    service = _service()
    try:
        service.register_institution(
            operator(), code=args.code, name=args.name, province=args.province, district=args.district
        )
    except DomainError as e:
        print(f"birthcert: {e.message} ({e.code})", file=sys.stderr)
        return 1
    finally:
        service.close()
    print(f"registered {args.code.upper()} {args.name} ({args.province.upper()})")
    return 0


def institutions_counter(args: argparse.Namespace) -> int:
    """Set where and when an institution receives families in person: every referral names it from now on."""
    service = _service()
    try:
        counter = CounterDetails(args.address, args.phone, args.hours)
        service.set_institution_counter(operator(), args.code, counter=counter)
    except DomainError as e:
        return _refused(e)
    finally:
        service.close()
    print(f"counter of {args.code.upper()}: {counter.address} | {counter.phone} | {counter.hours}")
    return 0


def institutions_district(args: argparse.Namespace) -> int:
    """Set the county-level district an institution lies in (its district's managers see its figures)."""
    service = _service()
    try:
        service.set_institution_district(operator(), args.code, district=args.district)
    except DomainError as e:
        return _refused(e)
    finally:
        service.close()
    print(f"institution {args.code.upper()}: district {args.district}")
    return 0


def institutions_list(args: argparse.Namespace) -> int:
    """List the institutions, with their counters (where referrals send families)."""
    service = _service()
    try:
        for inst in service.list_institutions():
            c = inst.counter
            counter = (
                f"{c.address} | {c.phone} | {c.hours}"
                if c
                else "counter not set: birthcert institutions counter"
            )
            print(f"{inst.code}\t{inst.province}\t{inst.name}\t{counter}")
    finally:
        service.close()
    return 0


def institutions_pickup_hours(args: argparse.Namespace) -> int:
    """Set (``--window`` …), clear (``--clear``) or show the hours certificates are collected by appointment."""
    service = _service()
    try:
        if args.window or args.clear:
            windows = [PickupWindow.parse(spec) for spec in args.window or []]
            service.set_pickup_hours(operator(), args.code, windows)
        hours = service.get_pickup_hours(args.code)
    except DomainError as e:
        print(f"birthcert: {e.message} ({e.code})", file=sys.stderr)
        return 1
    finally:
        service.close()
    if not hours:
        print(f"{args.code.upper()}: no pickup hours (no appointments offered)")
    for window in hours:
        print(f"{args.code.upper()}\t{window.spec()}\t{window.label()}")
    return 0


def register_admin(subparsers: Any) -> None:
    """Add ``users add|disable`` and ``institutions add|list|counter``."""
    users = subparsers.add_parser("users", help="staff accounts").add_subparsers(
        dest="users_command", required=True
    )
    add = users.add_parser("add", help="create a staff account (password from stdin)")
    add.add_argument("--role", required=True, choices=list(STAFF_ROLES))
    add.add_argument("--institution", help="institution code (issuer and hospital accounts)")
    add.add_argument(
        "--scope",
        help="a manager's statistics scope: institution:CODE, district:440104 (county code) or province:GD",
    )
    add.add_argument("--username", required=True)
    add.add_argument("--name", help="the person's name, printed as 打证人 on the form")
    add.set_defaults(handler=users_add)
    disable = users.add_parser("disable", help="disable a staff account (its tokens stop working too)")
    disable.add_argument("--username", required=True)
    disable.add_argument("--reason", required=True, help="why, as recorded in the log (e.g. 调离岗位)")
    disable.set_defaults(handler=users_disable)
    inst = subparsers.add_parser("institutions", help="institutions").add_subparsers(
        dest="institutions_command", required=True
    )
    iadd = inst.add_parser("add", help="register an institution")
    iadd.add_argument("--code", required=True)
    iadd.add_argument("--name", required=True)
    iadd.add_argument("--province", required=True, help="profile: GD, SD, BJ or HE")
    iadd.add_argument("--district", help="county-level GB/T 2260 code, e.g. 440104 (for district statistics)")
    iadd.set_defaults(handler=institutions_add)
    district = inst.add_parser("district", help="set the county-level district an institution lies in")
    district.add_argument("--code", required=True)
    district.add_argument("--district", required=True, help="county-level GB/T 2260 code, e.g. 440104")
    district.set_defaults(handler=institutions_district)
    inst.add_parser("list", help="list institutions").set_defaults(handler=institutions_list)
    hours = inst.add_parser(
        "pickup-hours",
        help="the hours certificates are collected by appointment (预约取证): set, clear or show",
    )
    hours.add_argument("--code", required=True)
    hours.add_argument(
        "--window",
        action="append",
        help='WEEKDAYS START-END CAPACITY, e.g. "1-5 08:30-11:30 20" (repeat; replaces all windows)',
    )
    hours.add_argument("--clear", action="store_true", help="offer no appointments")
    hours.set_defaults(handler=institutions_pickup_hours)
    counter = inst.add_parser(
        "counter", help="set the counter's address, telephone and opening hours (named by referrals)"
    )
    counter.add_argument("--code", required=True)
    counter.add_argument(
        "--address",
        required=True,
        help="the counter's street address and place, e.g. ××市××路1号门诊楼二楼出生医学证明窗口",
    )
    counter.add_argument("--phone", required=True, help="e.g. 020-12345678 (several: separated by 、)")
    counter.add_argument(
        "--hours", required=True, help="e.g. 周一至周五（节假日除外）8:00-12:00，14:30-17:30"
    )
    counter.set_defaults(handler=institutions_counter)
