"""新生儿出生“一件事一次办”: the bundle of services a province offers with the certificate, as data.

Pure: no I/O, no clock (docs/decisions/0044-birth-bundle.md). A province offers the bundle by a
``birth_bundle`` object in its profile (``data/provinces.json``): the services (the Birth Medical
Certificate always, then any of the vaccination certificate, 户口 registration, resident medical insurance
and the social-security card), the conditions the notice sets, and the extra fields of its form (表2) with
their allowed values. Nothing here names a province.

- ``BundleOffer``: one province's offer, read from and written back to its profile exactly.
- ``evaluate``: each condition ``met``, ``unmet`` or ``unknown`` (not yet known: a step not done yet) for
  the facts of one application (``BundleFacts``).
- ``check_values``: the mother's choices and extra fields against the offer; what the application already
  holds (``held``) is never asked, and a value given for it is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib.resources import files
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn

from domain.errors import FieldError, InvalidValue, RuleViolated
from domain.values import Address, MobileNumber, has_control

if TYPE_CHECKING:
    from domain.policy import WorkingCalendar

JSON = dict[str, Any]

# The Birth Medical Certificate: the one service every bundle has (the rest follow from it).
CERTIFICATE: Final = "birth_certificate"
# The services a bundle may offer, in the notice's order (seed 004 一、主题事项).
SERVICE_CODES: Final = (
    CERTIFICATE,
    "vaccination_certificate",
    "household_registration",
    "resident_medical_insurance",
    "social_security_card",
)
# A service's state in the parents' view (docs/decisions/0046): asked for, handed to its department, taken
# up, refused with a reason, done with its result.
SERVICE_STATES: Final = {
    "requested": "已申请",
    "sent": "已推送至办理部门",
    "accepted": "部门已受理",
    "refused": "部门未予办理",
    "done": "已办结",
}
# The service whose result registers the newborn (公安: 户口登记), and the fields of its result that the national
# notice 二(四) has health and police share: they go into the e-licence's record where the province wants it
# (``BundleOffer.elicense_registration``, docs/decisions/0048).
REGISTRATION_SERVICE: Final = "household_registration"
REGISTRATION_FIELDS: Final = ("registered_name", "citizen_id_number", "household_place")
# What a department may answer (BundleServiceUpdated.state besides ``sent``, which the hand-off records).
DEPARTMENT_ANSWERS: Final = ("accepted", "refused", "done")
# The materials of 表1 a bundle may ask for beyond the certificate's own ID photos (docs/decisions/0047): each is
# a document kind the mother uploads like an ID photo, its label as the notice names it. A closed list (the
# views label them, the issuer may send one back); the profile picks which, for which service, when.
MATERIAL_KINDS: Final = {
    "hukou_first_page": "落户方户口簿首页",
    "hukou_head_page": "落户方户口簿户主页",
    "marriage_certificate": "结婚证",
}
# When a material is asked for besides its service being chosen: ``parents_married``, her statement.
MATERIAL_WHEN: Final = ("parents_married",)
FieldKind = Literal["choice", "text", "address", "mobile", "district_code"]
FIELD_KINDS: Final = ("choice", "text", "address", "mobile", "district_code")
ConditionState = Literal["met", "unmet", "unknown"]
_DISTRICT_CODE: Final = re.compile(r"^[0-9]{6}([0-9]{3})?([0-9]{3})?$")


def _fail(key: str) -> NoReturn:
    raise InvalidValue("province", "invalid_profile", f"省份政策配置项 birth_bundle.{key} 缺失或格式不正确")


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        _fail(f"{where}.{key}")
    return value


@dataclass(frozen=True, slots=True)
class Service:
    """One service of the bundle and the department that handles it."""

    code: str
    name: str
    department: str

    def to_dict(self) -> JSON:
        """The profile's plain form."""
        return {"code": self.code, "name": self.name, "department": self.department}


@dataclass(frozen=True, slots=True)
class Condition:
    """A condition of the notice: ``label`` as the notice says it, ``message`` what a mother who fails it is
    told; ``service``: it applies only when that service is chosen; ``params`` the rule's settings."""

    code: str
    label: str
    message: str
    service: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> JSON:
        """The profile's plain form."""
        return {
            "code": self.code,
            "label": self.label,
            "message": self.message,
            "service": self.service,
            "params": dict(self.params),
        }


@dataclass(frozen=True, slots=True)
class Choice:
    """An allowed value. ``sex``: only for a newborn of that sex (与户主关系 子/女); ``prefixes``: the district
    codes a 参保地区 admits (基层医保区划编号 must start with one)."""

    value: str
    label: str
    sex: str | None = None
    prefixes: tuple[str, ...] = ()

    def to_dict(self) -> JSON:
        """The profile's plain form (keys only where set)."""
        out: JSON = {"value": self.value, "label": self.label}
        if self.sex is not None:
            out["sex"] = self.sex
        if self.prefixes:
            out["prefixes"] = list(self.prefixes)
        return out


@dataclass(frozen=True, slots=True)
class BundleField:
    """One extra field of the form (表2). ``service``: asked only when that service is chosen (None: always);
    ``required``: else optional (``default`` says what stands in: ``settle_with_address``, the address of
    the parent the newborn's 户口 follows); ``personal``: personal information, shown masked outside her own
    form; ``within``: a district code must fall within the chosen value of that field."""

    code: str
    label: str
    section: str
    kind: FieldKind
    service: str | None = None
    required: bool = True
    personal: bool = False
    choices: tuple[Choice, ...] = ()
    default: str | None = None
    within: str | None = None
    max_length: int = 60

    def choice(self, value: str) -> Choice | None:
        """The allowed value ``value``, if it is one."""
        return next((c for c in self.choices if c.value == value), None)

    def to_dict(self) -> JSON:
        """The profile's plain form."""
        return {
            "code": self.code,
            "label": self.label,
            "section": self.section,
            "kind": self.kind,
            "service": self.service,
            "required": self.required,
            "personal": self.personal,
            "choices": [c.to_dict() for c in self.choices],
            "default": self.default,
            "within": self.within,
            "max_length": self.max_length,
        }


@dataclass(frozen=True, slots=True)
class Material:
    """A material of 表1 (``MATERIAL_KINDS``) the department of ``service`` needs; ``when``: only then
    (``parents_married``: the 结婚证 when she states the parents are married)."""

    code: str
    service: str
    when: str | None = None

    @property
    def label(self) -> str:
        """The material's name as the notice says it."""
        return MATERIAL_KINDS[self.code]

    def needed(self, services: Iterable[str], *, parents_married: bool) -> bool:
        """Whether these choices ask for it."""
        return self.service in set(services) and (self.when is None or parents_married)

    def to_dict(self) -> JSON:
        """The profile's plain form."""
        return {"code": self.code, "service": self.service, "when": self.when}


@dataclass(frozen=True, slots=True)
class BundleOffer:
    """What one province offers: its name for the bundle, the services, conditions and extra fields."""

    name: str
    platform: str
    working_days: int | None
    services: tuple[Service, ...]
    conditions: tuple[Condition, ...]
    fields: tuple[BundleField, ...]
    notes: str = ""
    materials: tuple[Material, ...] = ()
    # The police's registration result (the newborn's registered name, citizen ID number, 户籍地) goes into the
    # electronic certificate's record: its credential is amended to a new version (docs/decisions/0048).
    elicense_registration: bool = False

    def service(self, code: str) -> Service | None:
        """The offered service ``code``, if offered."""
        return next((s for s in self.services if s.code == code), None)

    def field(self, code: str) -> BundleField | None:
        """The extra field ``code``, if the form has it."""
        return next((f for f in self.fields if f.code == code), None)

    def fields_for(self, services: Iterable[str]) -> list[BundleField]:
        """The extra fields the chosen ``services`` need, in the form's order."""
        chosen = set(services)
        return [f for f in self.fields if f.service is None or f.service in chosen]

    def materials_for(self, services: Iterable[str], *, parents_married: bool) -> list[Material]:
        """The materials the chosen ``services`` need (and her statement), in the profile's order."""
        chosen = tuple(services)
        return [m for m in self.materials if m.needed(chosen, parents_married=parents_married)]

    def to_dict(self) -> JSON:
        """A JSON-ready dict; ``from_dict`` accepts exactly this."""
        return {
            "name": self.name,
            "platform": self.platform,
            "working_days": self.working_days,
            "services": [s.to_dict() for s in self.services],
            "conditions": [c.to_dict() for c in self.conditions],
            "fields": [f.to_dict() for f in self.fields],
            "notes": self.notes,
            "materials": [m.to_dict() for m in self.materials],
            "elicense_registration": self.elicense_registration,
        }

    @classmethod
    def from_dict(cls, data: Any) -> BundleOffer:
        """An offer from its profile dict; a malformed one fails loudly (a typo must not open a hole)."""
        if not isinstance(data, Mapping):
            _fail("")
        services = tuple(_service(s) for s in _list(data, "services"))
        codes = [s.code for s in services]
        if CERTIFICATE not in codes or len(set(codes)) != len(codes):
            _fail("services")
        conditions = tuple(_condition(c, codes) for c in _list(data, "conditions"))
        fields = tuple(_field(f, codes) for f in _list(data, "fields"))
        names = [f.code for f in fields]
        if len(set(names)) != len(names):
            _fail("fields")
        for f in fields:
            if f.within is not None and f.within not in names:
                _fail(f"fields.{f.code}.within")
        days = data.get("working_days")
        if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 1):
            _fail("working_days")
        notes = data.get("notes", "")
        # Absent in snapshots from before materials were asked for: none then.
        materials = tuple(_material(m, codes) for m in data.get("materials") or [])
        if len({m.code for m in materials}) != len(materials):
            _fail("materials")
        # Absent in snapshots from before 0048: the e-licence is not amended then.
        registration = data.get("elicense_registration", False)
        if not isinstance(registration, bool) or (registration and REGISTRATION_SERVICE not in codes):
            _fail("elicense_registration")
        return cls(
            name=_text(data, "name", ""),
            platform=_text(data, "platform", ""),
            working_days=days,
            services=services,
            conditions=conditions,
            fields=fields,
            notes=notes if isinstance(notes, str) else "",
            materials=materials,
            elicense_registration=registration,
        )


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        _fail(key)
    return value


def _service(data: Any) -> Service:
    if not isinstance(data, Mapping) or data.get("code") not in SERVICE_CODES:
        _fail("services.code")
    return Service(
        code=data["code"],
        name=_text(data, "name", "services"),
        department=_text(data, "department", "services"),
    )


def _material(data: Any, services: list[str]) -> Material:
    if not isinstance(data, Mapping) or data.get("code") not in MATERIAL_KINDS:
        _fail("materials.code")
    service = data.get("service")
    # The certificate's own materials are the ID photos: a material goes to a department's service.
    if service not in services or service == CERTIFICATE:
        _fail("materials.service")
    when = data.get("when")
    if when is not None and when not in MATERIAL_WHEN:
        _fail("materials.when")
    return Material(code=data["code"], service=service, when=when)


def _condition(data: Any, services: list[str]) -> Condition:
    if not isinstance(data, Mapping) or data.get("code") not in _RULES:
        _fail("conditions.code")
    service = data.get("service")
    if service is not None and service not in services:
        _fail("conditions.service")
    params = data.get("params") or {}
    if not isinstance(params, Mapping):
        _fail("conditions.params")
    code = data["code"]
    if code == "within_working_days" and not (isinstance(params.get("days"), int) and params["days"] > 0):
        _fail("conditions.params.days")
    if code == "parents_local_hukou":
        prefixes = params.get("address_prefixes")
        if (
            not isinstance(prefixes, list)
            or not prefixes
            or not all(isinstance(p, str) and p for p in prefixes)
        ):
            _fail("conditions.params.address_prefixes")
    return Condition(
        code=code,
        label=_text(data, "label", "conditions"),
        message=_text(data, "message", "conditions"),
        service=service,
        params=MappingProxyType(dict(params)),
    )


def _choice(data: Any) -> Choice:
    if not isinstance(data, Mapping):
        _fail("fields.choices")
    sex = data.get("sex")
    if sex not in (None, "M", "F"):
        _fail("fields.choices.sex")
    prefixes = data.get("prefixes", [])
    if not isinstance(prefixes, list) or not all(isinstance(p, str) and p.isdigit() for p in prefixes):
        _fail("fields.choices.prefixes")
    return Choice(
        value=_text(data, "value", "fields.choices"),
        label=_text(data, "label", "fields.choices"),
        sex=sex,
        prefixes=tuple(prefixes),
    )


def _field(data: Any, services: list[str]) -> BundleField:
    if not isinstance(data, Mapping) or data.get("kind") not in FIELD_KINDS:
        _fail("fields.kind")
    service = data.get("service")
    if service is not None and service not in services:
        _fail("fields.service")
    choices = tuple(_choice(c) for c in data.get("choices") or [])
    if (data["kind"] == "choice") != bool(choices):
        _fail("fields.choices")
    default = data.get("default")
    if default not in (None, "settle_with_address"):
        _fail("fields.default")
    max_length = data.get("max_length", 60)
    if not isinstance(max_length, int) or not 1 <= max_length <= 200:
        _fail("fields.max_length")
    code = _text(data, "code", "fields")
    if not re.fullmatch(r"[a-z][a-z0-9_]{1,40}", code):
        _fail("fields.code")
    return BundleField(
        code=code,
        label=_text(data, "label", "fields"),
        section=_text(data, "section", "fields"),
        kind=data["kind"],
        service=service,
        required=bool(data.get("required", True)),
        personal=bool(data.get("personal", False)),
        choices=choices,
        default=default,
        within=data.get("within"),
        max_length=max_length,
    )


# ---------------------------------------------------------------- conditions


@dataclass(frozen=True, slots=True)
class BundleFacts:
    """What decides the conditions for one application; None where a step that tells it is not done yet.

    ``province``: the profile's code; ``record_province``: the province of the delivery record's
    institution; ``parents``: each parent's ``{id_type, ethnicity, address}`` as given (the father None for
    a single mother); ``married``: her statement that the newborn was born within the parents' marriage
    (the 结婚证 of 表1); ``values``: the extra fields chosen."""

    province: str
    record_province: str | None
    born_at: datetime | None
    requested_at: datetime
    two_parents: bool
    mother: Mapping[str, Any] | None
    father: Mapping[str, Any] | None
    married: bool | None
    services: tuple[str, ...]
    values: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ConditionResult:
    """One condition as it stands for one application."""

    code: str
    label: str
    state: ConditionState
    message: str

    def to_dict(self) -> JSON:
        """The API's plain form."""
        return {"code": self.code, "label": self.label, "state": self.state, "message": self.message}


Rule = Callable[[Condition, BundleFacts, "WorkingCalendar"], ConditionState]


def _state(value: bool | None) -> ConditionState:
    return "unknown" if value is None else ("met" if value else "unmet")


def _born_in_province(_: Condition, facts: BundleFacts, __: WorkingCalendar) -> ConditionState:
    return _state(None if facts.record_province is None else facts.record_province == facts.province)


def _within_working_days(c: Condition, facts: BundleFacts, calendar: WorkingCalendar) -> ConditionState:
    if facts.born_at is None:
        return "unknown"
    return _state(facts.requested_at <= calendar.add_working_days(facts.born_at, int(c.params["days"])))


def _parents_married(_: Condition, facts: BundleFacts, __: WorkingCalendar) -> ConditionState:
    if not facts.two_parents:
        return "unmet"  # a single mother's certificate names no father: no marriage to bear the newborn
    return _state(facts.married)


def _parents_local_hukou(c: Condition, facts: BundleFacts, __: WorkingCalendar) -> ConditionState:
    if not facts.two_parents:
        return "unmet"
    if facts.mother is None or facts.father is None:
        return "unknown"
    prefixes = tuple(c.params["address_prefixes"])
    # A resident ID's address is the one of the household register (户籍地址): it says the province.
    return _state(
        all(
            p.get("id_type", "resident_id") == "resident_id"
            and str(p.get("address", "")).startswith(prefixes)
            for p in (facts.mother, facts.father)
        )
    )


def _same_ethnicity(_: Condition, facts: BundleFacts, __: WorkingCalendar) -> ConditionState:
    if not facts.two_parents:
        return "unmet"
    if facts.mother is None or facts.father is None:
        return "unknown"
    return _state(facts.mother.get("ethnicity") == facts.father.get("ethnicity"))


def _family_household(_: Condition, facts: BundleFacts, __: WorkingCalendar) -> ConditionState:
    settle_with, household = facts.values.get("settle_with"), facts.values.get("household_type")
    if settle_with is None or household is None:
        return "unknown"
    return _state(settle_with in ("father", "mother") and household == "family")


_RULES: Mapping[str, Rule] = MappingProxyType(
    {
        "born_in_province": _born_in_province,
        "within_working_days": _within_working_days,
        "parents_married": _parents_married,
        "parents_local_hukou": _parents_local_hukou,
        "same_ethnicity": _same_ethnicity,
        "family_household": _family_household,
    }
)
CONDITION_CODES: Final = tuple(_RULES)


def evaluate(offer: BundleOffer, facts: BundleFacts, calendar: WorkingCalendar) -> list[ConditionResult]:
    """Each condition that applies to the chosen services, and how it stands."""
    return [
        ConditionResult(c.code, c.label, _RULES[c.code](c, facts, calendar), c.message)
        for c in offer.conditions
        if c.service is None or c.service in facts.services
    ]


class BundleConditionsUnmet(RuleViolated):
    """The application does not meet a condition of the bundle; ``reasons`` names every one (in the
    profile's order), the message the first."""

    code = "bundle_condition_unmet"
    message = "不符合新生儿出生“一件事一次办”的办理条件"

    def __init__(self, results: list[ConditionResult]) -> None:
        super().__init__(
            "不符合新生儿出生“一件事一次办”的办理条件：" + "；".join(r.message for r in results),
            code=results[0].code if results else None,
        )
        self.reasons = [r.code for r in results]


class BundleNotOffered(RuleViolated):
    """The application's province does not offer the bundle."""

    code = "bundle_not_offered"
    message = "本省暂未开通新生儿出生“一件事一次办”，出生医学证明办好后请分别到各部门办理"


# ---------------------------------------------------------------- the mother's choices


def check_services(offer: BundleOffer, services: Iterable[str]) -> tuple[str, ...]:
    """The chosen services in the offer's order, the certificate always among them; an unknown one refused."""
    chosen = set(services)
    unknown = sorted(s for s in chosen if offer.service(s) is None)
    if unknown:
        raise InvalidValue("services", "invalid_service", "所选事项不在本省“一件事一次办”范围内")
    if chosen <= {CERTIFICATE}:
        raise InvalidValue("services", "no_service_chosen", "请至少选择一项与出生医学证明一并办理的事项")
    return tuple(s.code for s in offer.services if s.code in chosen or s.code == CERTIFICATE)


def check_values(
    offer: BundleOffer,
    services: Iterable[str],
    values: Mapping[str, Any],
    *,
    newborn_sex: str | None,
    held: Mapping[str, str],
) -> dict[str, str]:
    """The extra fields the chosen services need, each checked against its kind and allowed values.

    Every invalid field is reported at once (``ValidationFailed`` at the edge: here ``InvalidValue``'s
    list). A field the application already holds (``held``) must not be given again, nor one the chosen
    services do not need.
    """
    errors: list[FieldError] = []
    wanted = {f.code: f for f in offer.fields_for(services)}
    for key in values:
        if key in held:
            errors.append(FieldError(f"fields.{key}", "already_given", "该信息已在申请中填写，无需重复填写"))
        elif key not in wanted:
            errors.append(FieldError(f"fields.{key}", "unknown_field", "所选事项不需要填写此项"))
    clean: dict[str, str] = {}
    for code, spec in wanted.items():
        if code in held:
            continue
        raw = values.get(code)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if spec.required:
                errors.append(FieldError(f"fields.{code}", "required", f"请填写{spec.label}"))
            continue
        if not isinstance(raw, str):
            errors.append(FieldError(f"fields.{code}", "invalid_type", "格式不正确，应为文字"))
            continue
        try:
            clean[code] = _checked(spec, raw, newborn_sex)
        except InvalidValue as e:
            errors.extend(e.errors)
    for code, spec in wanted.items():
        if spec.within is not None and code in clean and spec.within in clean:
            area = wanted[spec.within].choice(clean[spec.within])
            if area is not None and area.prefixes and not clean[code].startswith(area.prefixes):
                errors.append(
                    FieldError(
                        f"fields.{code}",
                        "district_outside_area",
                        f"{spec.label}不在所选{wanted[spec.within].label}（{area.label}）内",
                    )
                )
    if errors:
        error = InvalidValue(errors[0].field, errors[0].code, errors[0].message)
        error.errors = errors
        raise error
    return clean


def _checked(spec: BundleField, raw: str, newborn_sex: str | None) -> str:
    where = f"fields.{spec.code}"
    value = " ".join(raw.split())
    if spec.kind == "choice":
        choice = spec.choice(value)
        if choice is None:
            allowed = "、".join(c.label for c in spec.choices)
            raise InvalidValue(where, "invalid_choice", f"{spec.label}只能选择：{allowed}")
        if choice.sex is not None and newborn_sex is not None and choice.sex != newborn_sex:
            raise InvalidValue(where, "relation_sex_mismatch", f"{spec.label}与新生儿性别不符")
        return value
    if spec.kind == "mobile":
        return MobileNumber(value, field=where).value
    if spec.kind == "address":
        return Address(value, field=where).value
    if spec.kind == "district_code":
        if not _DISTRICT_CODE.fullmatch(value):
            raise InvalidValue(where, "invalid_district_code", f"{spec.label}应为6、9或12位数字")
        return value
    if not 2 <= len(value) <= spec.max_length or has_control(value):
        raise InvalidValue(where, "invalid_text", f"{spec.label}请填写2到{spec.max_length}个字")
    return value


def masked_value(spec: BundleField | None, value: str) -> str:
    """A personal field's value as shown outside her own form (an address: its first 6 characters)."""
    if spec is None or not spec.personal:
        return value
    if spec.kind == "mobile":
        return MobileNumber(value).masked()
    return value[:6] + "****" if len(value) > 6 else "****"


# ---------------------------------------------------------------- the form (表2)

_APPLICANT: Final = "申报人信息"
_NEWBORN: Final = "新生儿信息"
_PARENTS: Final = "父母信息"
SEX_LABELS: Final = {"M": "男", "F": "女"}


@dataclass(frozen=True, slots=True)
class DerivedItem:
    """A field of 表2 the application already holds: taken from it, never asked."""

    code: str
    label: str
    section: str
    value: str
    personal: bool = False

    def to_dict(self, *, masked: bool = False) -> JSON:
        """The plain form; ``masked``: a personal value masked (outside her own form)."""
        value = self.value
        if masked and self.personal:
            value = _mask(value)
        return {"code": self.code, "label": self.label, "section": self.section, "value": value}


def _mask(value: str) -> str:
    if len(value) >= 15 and value[:6].isdigit():  # an 18-character document number
        return value[:4] + "*" * (len(value) - 8) + value[-4:]
    if len(value) == 11 and value.isdigit():  # a mobile number
        return value[:3] + "****" + value[-4:]
    if len(value) <= 1:
        return "*"
    if len(value) <= 4:  # a name
        return value[0] + "*" * (len(value) - 1)
    return value[:6] + "****"  # an address


def derived_items(
    *,
    mother: Mapping[str, Any],
    details: Mapping[str, Any] | None,
    record: Mapping[str, Any] | None,
    ethnic_groups: Mapping[str, str],
    id_type_labels: Mapping[str, str],
    held_phone: str | None,
) -> list[DerivedItem]:
    """The fields of 表2 that the application already holds (the mother's verified identity, the details,
    the delivery record), in the form's order. The newborn's ethnicity is the parents' (the bundle's
    condition: 民族一致); the 户口 address follows from the 落户方 chosen (``hukou_address``)."""
    items = [
        DerivedItem(
            "applicant_id_type", "申报人证件类型", _APPLICANT, id_type_labels.get(mother["id_type"], "")
        ),
        DerivedItem("applicant_id_number", "申报人公民身份号码", _APPLICANT, mother["id_number"], True),
        DerivedItem("applicant_name", "申报人姓名", _APPLICANT, mother["name"], True),
        DerivedItem("applicant_sex", "申报人性别", _APPLICANT, "女"),
    ]
    if held_phone is not None:
        items.append(DerivedItem("contact_phone", "申报人联系电话", _APPLICANT, held_phone, True))
    items.append(DerivedItem("applicant_relation", "申报人与变动人关系", _APPLICANT, "母亲"))
    if details is not None:
        items.append(
            DerivedItem(
                "applicant_hukou_place", "申报人户籍所在地", _APPLICANT, details["mother"]["address"], True
            )
        )
        items.append(DerivedItem("newborn_name", "新生儿姓名", _NEWBORN, details["newborn_name"], True))
    if record is not None:
        birthplace = record.get("birthplace") or {}
        items += [
            DerivedItem("newborn_sex", "新生儿性别", _NEWBORN, SEX_LABELS.get(record["newborn_sex"], "")),
            DerivedItem("newborn_born_on", "出生日期", _NEWBORN, str(record["born_at"])[:10]),
            DerivedItem(
                "newborn_birthplace",
                "出生地",
                _NEWBORN,
                "中国 " + "".join(str(birthplace.get(k) or "") for k in ("province", "city", "county")),
            ),
        ]
    if details is not None:
        father = details.get("father")
        ethnicities = {details["mother"]["ethnicity"]} | ({father["ethnicity"]} if father else set())
        if len(ethnicities) == 1:
            items.append(
                DerivedItem(
                    "newborn_ethnicity", "新生儿民族", _NEWBORN, ethnic_groups.get(ethnicities.pop(), "")
                )
            )
        if father is not None:
            items += [
                DerivedItem("father_id_number", "父亲号码", _PARENTS, father["id_number"], True),
                DerivedItem("father_name", "父亲姓名", _PARENTS, father["name"], True),
            ]
    items += [
        DerivedItem("mother_id_number", "母亲号码", _PARENTS, mother["id_number"], True),
        DerivedItem("mother_name", "母亲姓名", _PARENTS, mother["name"], True),
    ]
    return items


def settled_address(values: Mapping[str, str], details: Mapping[str, Any] | None) -> str | None:
    """The 户口 address: the one she gave, else that of the parent the newborn's 户口 follows."""
    if values.get("hukou_address"):
        return values["hukou_address"]
    parent = (details or {}).get(values.get("settle_with", ""))
    return None if not parent else str(parent.get("address") or "") or None


def form_part(offer: BundleOffer, bundle: Mapping[str, Any], derived: list[DerivedItem]) -> JSON:
    """The bundle's part of the registration form she signs: the services and every field of 表2, those
    taken from the application and those she chose (with the allowed value's label)."""
    chosen: list[JSON] = []
    values: Mapping[str, str] = bundle["values"]
    for spec in offer.fields_for(bundle["services"]):
        value = values.get(spec.code)
        if value is None and spec.default == "settle_with_address":
            value = bundle.get("settled_address")
        if value is None:
            continue
        choice = spec.choice(value) if spec.kind == "choice" else None
        chosen.append(
            {
                "code": spec.code,
                "label": spec.label,
                "section": spec.section,
                "value": value,
                "value_label": choice.label if choice else value,
            }
        )
    return {
        "title": f"{offer.name}申报表单",
        "services": [
            {"code": s.code, "name": s.name} for s in offer.services if s.code in bundle["services"]
        ],
        "parents_married": bool(bundle["parents_married"]),
        "derived": [d.to_dict() for d in derived],
        "fields": chosen,
    }


# ---------------------------------------------------------------- the hand-off to the departments (0046)


@dataclass(frozen=True, slots=True)
class Handoff:
    """Which department a service goes to and what it gets: only the fields it needs (PIPL art. 6, the
    minimum), and the fields its result may carry back. ``data/bundle_departments.json``."""

    service: str
    department: str
    name: str
    fields: tuple[str, ...]
    result_fields: tuple[str, ...]
    personal_result_fields: tuple[str, ...] = ()
    # A ``done`` result carries exactly one of these (the card: its pickup place or its parcel's number).
    result_one_of: tuple[str, ...] = ()
    # Each result field's name as staff and parents read it (登记姓名, 医保电子凭证 …).
    result_labels: Mapping[str, str] = field(default_factory=dict)
    # The department's own time limit in working days, else the bundle's (domain/bundle_clock.py, 0049).
    working_days: int | None = None

    def masked_result(self, result: Mapping[str, Any]) -> JSON:
        """A department's result as any view shows it: its personal values (the registered name, the citizen
        ID number) masked."""
        return {k: _mask(str(v)) if k in self.personal_result_fields else v for k, v in result.items()}


@cache
def handoffs() -> Mapping[str, Handoff]:
    """Every service a department takes over, by service code (the certificate is ours: never in it)."""
    text = files("domain").joinpath("data", "bundle_departments.json").read_text(encoding="utf-8")
    out: dict[str, Handoff] = {}
    for service, spec in json.loads(text)["services"].items():
        if service not in SERVICE_CODES or service == CERTIFICATE:
            _fail(f"handoff.{service}")
        out[service] = Handoff(
            service=service,
            department=str(spec["department"]),
            name=str(spec["name"]),
            fields=tuple(spec["fields"]),
            result_fields=tuple(spec["result_fields"]),
            personal_result_fields=tuple(spec.get("personal_result_fields", ())),
            result_one_of=tuple(spec.get("result_one_of", ())),
            result_labels=MappingProxyType(dict(spec.get("result_labels", {}))),
            working_days=spec.get("working_days"),
        )
        handoff = out[service]
        days = handoff.working_days
        if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 1):
            _fail(f"handoff.{service}.working_days")
        if not set(handoff.personal_result_fields) | set(handoff.result_one_of) <= set(handoff.result_fields):
            _fail(f"handoff.{service}.result_fields")
        if set(handoff.result_labels) != set(handoff.result_fields):
            _fail(f"handoff.{service}.result_labels")
    departments = [h.department for h in out.values()]
    if len(set(departments)) != len(departments):
        _fail("handoff.department")
    return MappingProxyType(out)


def handoff_of_department(department: str) -> Handoff | None:
    """The hand-off a department code names (``disease_control``, ``police``, ``medical_insurance``,
    ``social_security``), if any."""
    return next((h for h in handoffs().values() if h.department == department), None)


def table2_values(
    offer: BundleOffer, bundle: Mapping[str, Any], derived: list[DerivedItem], certificate_number: str
) -> dict[str, str]:
    """Every value of 表2 for one application, by field code: what the application holds, what she chose
    (the 户口 address defaulting to the 落户方's) and the certificate's number. Personal: never logged."""
    values = {d.code: d.value for d in derived}
    chosen: Mapping[str, str] = bundle["values"]
    for spec in offer.fields_for(bundle["services"]):
        value = chosen.get(spec.code)
        if value is None and spec.default == "settle_with_address":
            value = bundle.get("settled_address")
        if value is not None:
            values[spec.code] = value
    values["certificate_number"] = certificate_number
    return values


def handoff_fields(handoff: Handoff, table2: Mapping[str, str]) -> dict[str, str]:
    """The department's share of 表2: its fields only, in its order (a field the application lacks is left out)."""
    return {code: table2[code] for code in handoff.fields if code in table2}
