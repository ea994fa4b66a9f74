"""Institutions and staff accounts, event-sourced like everything else (who added whom is audited).

An institution (助产机构 / 签发机构) has a code, a name, a province profile and, once set, its counter's
address, telephone and opening hours (where referrals send families). A staff account has a
username, a role, an institution (for hospital and issuer roles), a display name (the issuer's name
printed on the registration form) and an argon2 password hash computed at the edge — the domain never
sees a password.
"""

from __future__ import annotations

import re
from typing import Any, Final
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.errors import Forbidden, InvalidValue, RuleViolated
from domain.pickup import PickupWindow, check_windows
from domain.policy import get_profile
from domain.statistics import Scope, check_district
from domain.values import Actor, CounterDetails

JSON = dict[str, Any]
STAFF_ROLES: Final = ("issuer", "hospital", "auditor", "admin", "verifier", "manager")
# Roles that belong to an institution (a verifier's: the department that checks e-licences, e.g. a police station).
INSTITUTION_ROLES: Final = ("issuer", "hospital", "verifier")
_USERNAME_RE: Final = re.compile(r"^[a-z][a-z0-9_.-]{2,31}$")
_CODE_RE: Final = re.compile(r"^[A-Z0-9]{4,16}$")


def check_username(username: str) -> str:
    """3–32 characters: lower-case letters, digits, ``_ . -``; starting with a letter."""
    name = username.strip().lower()
    if not _USERNAME_RE.match(name):
        raise InvalidValue(
            "username", "invalid_username", "用户名为3到32位小写字母、数字或 _ . -，以字母开头"
        )
    return name


def check_institution_code(code: str) -> str:
    """4–16 upper-case letters or digits."""
    value = code.strip().upper()
    if not _CODE_RE.match(value):
        raise InvalidValue("code", "invalid_institution_code", "机构代码为4到16位大写字母或数字")
    return value


def _as_admin_or_system(actor: Actor) -> None:
    if actor.role not in ("admin", "system"):
        raise Forbidden("只有系统管理员可以管理机构和账号")


class InstitutionRecord(Aggregate):
    """A midwifery or issuing institution."""

    TOPIC = "birthcert:Institution"

    class Event(Aggregate.Event):
        """Base of the institution's events."""

        actor: JSON

    class InstitutionRegistered(Event, Aggregate.Created):
        """The institution joined the service under this code, name and province."""

        TOPIC = "birthcert:InstitutionRegistered"
        code: str
        name: str
        province: str

    Created = InstitutionRegistered

    class InstitutionRenamed(Event):
        """The institution's name changed."""

        TOPIC = "birthcert:InstitutionRenamed"
        name: str

        def apply(self, r: InstitutionRecord) -> None:
            r.name = self.name

    class PickupHoursSet(Event):
        """The hours in which certificates are collected by appointment (预约取证), replacing any before:
        ``windows`` as ``domain.pickup.PickupWindow.to_dict`` (empty: no appointments offered)."""

        TOPIC = "birthcert:PickupHoursSet"
        windows: list[JSON]

        def apply(self, r: InstitutionRecord) -> None:
            r.pickup_windows = [dict(w) for w in self.windows]

    class CounterDetailsSet(Event):
        """Where and when the institution receives families in person (现场办理): every referral to it names
        this address, telephone and opening hours from now on (docs/decisions/0033)."""

        TOPIC = "birthcert:CounterDetailsSet"
        address: str
        phone: str
        hours: str

        def apply(self, r: InstitutionRecord) -> None:
            r.counter = {"address": self.address, "phone": self.phone, "hours": self.hours}

    class DistrictSet(Event):
        """The county-level district (GB/T 2260 code) the institution lies in: managers of that district see its
        figures (docs/decisions/0043)."""

        TOPIC = "birthcert:InstitutionDistrictSet"
        district: str

        def apply(self, r: InstitutionRecord) -> None:
            r.district = self.district

    # Institutions registered before districts existed have none until one is set.
    district: str | None = None

    def __init__(self, actor: JSON, code: str, name: str, province: str) -> None:
        self.code = code
        self.name = name
        self.province = province
        self.pickup_windows: list[JSON] = []
        self.counter: JSON | None = None

    @property
    def counter_details(self) -> CounterDetails | None:
        """The counter's details, once set."""
        return None if self.counter is None else CounterDetails(**self.counter)

    @classmethod
    def register(cls, *, id: UUID, actor: Actor, code: str, name: str, province: str) -> InstitutionRecord:
        """Register an institution (admin or the system's configuration loader)."""
        _as_admin_or_system(actor)
        profile = get_profile(province)
        cleaned = " ".join(name.split())
        if not 2 <= len(cleaned) <= 60:
            raise InvalidValue("name", "invalid_institution_name", "机构名称为2到60个字")
        return cls._create(
            cls.InstitutionRegistered,
            id=id,
            actor=actor.to_dict(),
            code=check_institution_code(code),
            name=cleaned,
            province=profile.code,
        )

    def rename(self, actor: Actor, name: str) -> None:
        """Change the name (printed on forms and lists from now on)."""
        _as_admin_or_system(actor)
        cleaned = " ".join(name.split())
        if not 2 <= len(cleaned) <= 60:
            raise InvalidValue("name", "invalid_institution_name", "机构名称为2到60个字")
        if cleaned != self.name:
            self.trigger_event(self.InstitutionRenamed, actor=actor.to_dict(), name=cleaned)

    def set_pickup_hours(self, actor: Actor, windows: list[PickupWindow]) -> None:
        """Replace the pickup hours (the CLI's ``institutions pickup-hours``); unchanged hours record nothing."""
        _as_admin_or_system(actor)
        plain = [w.to_dict() for w in check_windows(windows)]
        if plain != self.pickup_windows:
            self.trigger_event(self.PickupHoursSet, actor=actor.to_dict(), windows=plain)

    @property
    def windows(self) -> list[PickupWindow]:
        """The pickup hours as values."""
        return [PickupWindow.from_dict(w) for w in self.pickup_windows]

    def set_district(self, actor: Actor, district: str) -> None:
        """Set (or change) the county-level district; the same again records nothing."""
        _as_admin_or_system(actor)
        value = check_district(district, self.province)
        if value != self.district:
            self.trigger_event(self.DistrictSet, actor=actor.to_dict(), district=value)

    def set_counter(self, actor: Actor, details: CounterDetails) -> None:
        """Set (or change) the counter's address, telephone and opening hours; the same again changes nothing."""
        _as_admin_or_system(actor)
        if details.to_dict() != self.counter:
            self.trigger_event(self.CounterDetailsSet, actor=actor.to_dict(), **details.to_dict())


class StaffAccount(Aggregate):
    """A staff member's login: role, institution, display name and password hash."""

    TOPIC = "birthcert:StaffAccount"

    class Event(Aggregate.Event):
        """Base of the account's events."""

        actor: JSON

    class StaffAccountCreated(Event, Aggregate.Created):
        """An account was created (the hash is argon2id; the password itself is never stored)."""

        TOPIC = "birthcert:StaffAccountCreated"
        username: str
        role: str
        institution: str | None
        display_name: str
        password_hash: str

    Created = StaffAccountCreated

    class PasswordChanged(Event):
        """A new password hash."""

        TOPIC = "birthcert:PasswordChanged"
        password_hash: str

        def apply(self, a: StaffAccount) -> None:
            a.password_hash = self.password_hash

    class ManagerScopeAssigned(Event):
        """A manager's account sees the figures of ``scope`` (``domain.statistics.Scope`` as text); in the
        creation's save, right after it."""

        TOPIC = "birthcert:ManagerScopeAssigned"
        scope: str

        def apply(self, a: StaffAccount) -> None:
            a.scope = self.scope

    class StaffAccountDisabled(Event):
        """The account may no longer log in."""

        TOPIC = "birthcert:StaffAccountDisabled"
        reason: str

        def apply(self, a: StaffAccount) -> None:
            a.disabled = True

    # Accounts made before managers existed have no scope.
    scope: str | None = None

    def __init__(
        self,
        actor: JSON,
        username: str,
        role: str,
        institution: str | None,
        display_name: str,
        password_hash: str,
    ) -> None:
        self.username = username
        self.role = role
        self.institution = institution
        self.display_name = display_name
        self.password_hash = password_hash
        self.disabled = False

    @classmethod
    def create(
        cls,
        *,
        id: UUID,
        actor: Actor,
        username: str,
        role: str,
        institution: str | None,
        display_name: str,
        password_hash: str,
        scope: Scope | None = None,
    ) -> StaffAccount:
        """Create an account; hospital and issuer accounts belong to an institution, a manager's has a scope."""
        _as_admin_or_system(actor)
        if role not in STAFF_ROLES:
            raise InvalidValue(
                "role", "invalid_role", "角色只能是 issuer、hospital、auditor、admin、verifier 或 manager"
            )
        if (role == "manager") != (scope is not None):
            raise InvalidValue(
                "scope", "scope_required", "统计管理人员须指定统计范围（机构、区县或省），其他角色不设"
            )
        if role in INSTITUTION_ROLES and not institution:
            raise InvalidValue(
                "institution", "institution_required", "签发人员、助产机构人员和核验人员须指定所属机构"
            )
        cleaned = " ".join(display_name.split())
        if not 1 <= len(cleaned) <= 30:
            raise InvalidValue("display_name", "invalid_display_name", "姓名为1到30个字")
        if not password_hash.startswith("$argon2"):
            raise InvalidValue("password", "invalid_password_hash", "密码须以 argon2 散列保存")
        account = cls._create(
            cls.StaffAccountCreated,
            id=id,
            actor=actor.to_dict(),
            username=check_username(username),
            role=role,
            institution=institution if role in INSTITUTION_ROLES else None,
            display_name=cleaned,
            password_hash=password_hash,
        )
        if scope is not None:
            account.trigger_event(cls.ManagerScopeAssigned, actor=actor.to_dict(), scope=str(scope))
        return account

    def change_password(self, actor: Actor, password_hash: str) -> None:
        """The account's owner or an admin sets a new password hash."""
        if actor.role not in ("admin", "system") and actor.id != self.username:
            raise Forbidden()
        if not password_hash.startswith("$argon2"):
            raise InvalidValue("password", "invalid_password_hash", "密码须以 argon2 散列保存")
        self.trigger_event(self.PasswordChanged, actor=actor.to_dict(), password_hash=password_hash)

    def disable(self, actor: Actor, reason: str) -> None:
        """Stop the account from logging in."""
        _as_admin_or_system(actor)
        if self.disabled:
            raise RuleViolated("账号已停用", code="already_disabled")
        self.trigger_event(self.StaffAccountDisabled, actor=actor.to_dict(), reason=reason)

    def as_actor(self) -> Actor:
        """Who this account acts as."""
        return Actor(
            id=self.username,
            role=self.role,  # type: ignore[arg-type]
            institution=self.institution,
            name=self.display_name,
            scope=self.scope,
        )


class AccessRecord(Aggregate):
    """An auditor read personal data in full: who, what, when (itself part of the verifiable log)."""

    TOPIC = "birthcert:AccessRecord"

    class Event(Aggregate.Event):
        """Base of the record's events."""

        actor: JSON

    class PersonalDataViewed(Event, Aggregate.Created):
        """``actor`` (an auditor) read ``what`` of application ``application_id`` in full."""

        TOPIC = "birthcert:PersonalDataViewed"
        application_id: str
        what: str

    Created = PersonalDataViewed

    def __init__(self, actor: JSON, application_id: str, what: str) -> None:
        self.auditor = actor
        self.application_id = application_id
        self.what = what

    @classmethod
    def record(cls, *, id: UUID, actor: Actor, application_id: str, what: str) -> AccessRecord:
        """Record the reading."""
        if actor.role != "auditor":
            raise Forbidden("只有审计人员可以查看完整的申请历史")
        return cls._create(
            cls.PersonalDataViewed, id=id, actor=actor.to_dict(), application_id=application_id, what=what
        )
