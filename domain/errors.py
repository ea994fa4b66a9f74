"""Domain errors: plain exceptions that know nothing of HTTP.

Each carries a stable machine ``code`` (the API's problem ``code``) and a Chinese
``message`` meant for the person who caused it; ``backend/errors.py`` maps the
classes to HTTP statuses in one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One invalid field: its dotted path, a stable code and a Chinese message."""

    field: str
    code: str
    message: str


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    code = "domain_error"
    message = "请求无法处理"
    # A refusal that sends the family to the counter carries where and what to bring (a
    # ``domain.referral.Referral``, attached by the service, which knows the institution).
    referral: Any = None

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        self.message = message or type(self).message
        self.code = code or type(self).code
        super().__init__(f"{self.code}: {self.message}")


class InvalidValue(DomainError):
    """A value failed validation when it was turned into a domain type."""

    code = "invalid_value"
    message = "填写的信息不正确"

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.errors = [FieldError(field=field, code=code, message=message)]


class ValidationFailed(DomainError):
    """Several field errors at once (raised at the edge after collecting them)."""

    code = "validation_failed"
    message = "提交的信息有误，请检查后重新填写"

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__()
        self.errors = list(errors)


class RuleViolated(DomainError):
    """A business rule refuses the command in the application's current state."""

    code = "rule_violated"
    message = "当前状态下不能进行此操作"


class NotEligibleOnline(DomainError):
    """The case must be handled at the counter (现场办理), not online."""

    code = "not_eligible_online"
    message = "您的情况不支持网上申领，请携带相关材料到签发机构现场办理"

    def __init__(self, reasons: list[str], message: str | None = None) -> None:
        super().__init__(message, code=reasons[0] if reasons else None)
        self.reasons = list(reasons)


class NotFound(DomainError):
    """The thing does not exist, or the actor may not know that it does."""

    code = "not_found"
    message = "未找到相关记录"


class Forbidden(DomainError):
    """The actor's role or institution does not allow this command."""

    code = "forbidden"
    message = "您没有权限进行此操作"


class Conflict(DomainError):
    """The command lost a race or names a value already used (HTTP 409)."""

    code = "conflict"
    message = "数据已被他人修改，请刷新后重试"

    def __init__(
        self, message: str | None = None, *, code: str | None = None, current_version: int | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.current_version = current_version
