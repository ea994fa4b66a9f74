"""Errors → RFC 9457 problem details, in one table and one middleware.

Domain errors know nothing of HTTP; this module decides their status. Messages meant for parents
are Chinese; ``code`` is the stable machine word the mini-program branches on. Nothing unexpected
leaks: an unknown exception is logged with a trace id and answered as a plain 500 problem.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import eventsourcing.persistence
import orjson
import psycopg
import redis
from aiohttp import web

from backend.auth import ProviderUnavailable, Unauthenticated
from backend.object_store import ObjectStoreUnavailable
from domain.application import NotReady
from domain.bundle import BundleConditionsUnmet
from domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidValue,
    NotEligibleOnline,
    NotFound,
    RuleViolated,
    ValidationFailed,
)

log = logging.getLogger("birthcert.http")

PROBLEM_TYPE_BASE = "https://birthcert.example.cn/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"

# The one table: error class → (HTTP status, title). The first matching class (in MRO order) wins.
STATUS: dict[type[Exception], tuple[int, str]] = {
    ProviderUnavailable: (503, "服务暂时不可用"),
    Unauthenticated: (401, "需要登录"),
    ValidationFailed: (422, "提交的信息有误"),
    InvalidValue: (422, "提交的信息有误"),
    NotEligibleOnline: (422, "不支持网上申领"),
    BundleConditionsUnmet: (422, "不符合一件事一次办的办理条件"),
    NotReady: (409, "还有未完成的步骤"),
    RuleViolated: (409, "当前状态不能进行此操作"),
    NotFound: (404, "未找到"),
    Forbidden: (403, "没有权限"),
    Conflict: (409, "数据冲突"),
}


class BadRequest(DomainError):
    """The request itself is malformed (not JSON, wrong types): nothing was changed."""

    code = "bad_request"
    message = "请求格式不正确"
    http_status = 400


class ServiceUnavailable(DomainError):
    """A platform we depend on (WeChat, the registry) did not answer usefully."""

    code = "service_unavailable"
    message = "服务暂时不可用，请稍后再试"
    http_status = 503


# What Redis raises when it is away (a read then falls back to the store where it can).
REDIS_UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
)
# What a dependency that is away for a moment raises: answered 503 with Retry-After.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    *REDIS_UNAVAILABLE,
    eventsourcing.persistence.OperationalError,
    eventsourcing.persistence.InterfaceError,
    ObjectStoreUnavailable,
    # Our own SQL beside the events (projections/sql.py) on PostgreSQL: a server restarting, failing over or
    # shutting our connection (AdminShutdown is one); the connection is replaced at the next statement.
    psycopg.OperationalError,
    TimeoutError,
)
RETRY_AFTER_SECONDS = 5


class ViewRecovering(DomainError):
    """A view is being rebuilt after it was lost: a list read now would miss entries."""

    code = "view_recovering"
    message = "数据正在恢复，请稍后刷新"
    http_status = 503
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}  # noqa: RUF012


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """An ``application/problem+json`` response."""
    body = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return web.Response(
        body=orjson.dumps(body), status=status, content_type=PROBLEM_CONTENT_TYPE, headers=headers or {}
    )


def problem_for(error: DomainError) -> web.Response:
    """The problem answer for a domain (or edge) error."""
    status, title = _status_of(error)
    extra: dict[str, Any] = {}
    errors = getattr(error, "errors", None)
    if errors:
        extra["errors"] = [{"field": e.field, "code": e.code, "message": e.message} for e in errors]
    if isinstance(error, NotEligibleOnline | BundleConditionsUnmet):
        extra["reasons"] = error.reasons
    detail = error.message
    referral = error.referral
    if referral is not None:  # sent to the counter: where, and what to bring (docs/decisions/0033)
        extra["referral"] = referral.to_dict()
        detail = referral.explanation()
    if isinstance(error, NotReady):
        extra["missing"] = error.missing
    if isinstance(error, Conflict) and error.current_version is not None:
        extra["current_version"] = error.current_version
    headers = dict(getattr(error, "headers", {}) or {})
    if isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = error.www_authenticate
    return problem(status, error.code, title, detail, headers=headers, **extra)


def _status_of(error: DomainError) -> tuple[int, str]:
    explicit = getattr(error, "http_status", None)
    if isinstance(explicit, int):
        return explicit, getattr(error, "title", None) or _TITLES.get(explicit, "请求无法处理")
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400, "请求无法处理"


_TITLES = {
    400: "请求格式不正确",
    401: "需要登录",
    403: "没有权限",
    404: "未找到",
    405: "不支持的请求方法",
    409: "数据冲突",
    413: "内容过大",
    415: "不支持的文件类型",
    422: "提交的信息有误",
    429: "请求过于频繁",
    502: "上游服务错误",
    503: "服务暂时不可用",
}


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn every error into a problem answer; never a stack trace, never a 500 for bad input."""
    try:
        return await handler(request)
    except DomainError as e:
        return problem_for(e)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            e.status, "http_error"
        )
        detail = {404: "请求的地址不存在", 405: "不支持的请求方法", 413: "请求内容过大"}.get(
            e.status, e.reason
        )
        return problem(e.status, code, _TITLES.get(e.status, e.reason), detail, headers=_allow_header(e))
    except UNAVAILABLE as e:
        # Redis, the event store or the object store is away for a moment: say so and when to come back, never a 500.
        log.warning("dependency unavailable", extra={"error": type(e).__name__, "path": request.path})
        return problem(
            503,
            "temporarily_unavailable",
            _TITLES.get(503, "Service Unavailable"),
            "系统正忙，请稍后重试",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    except ConnectionResetError:
        if request.transport is not None and not request.transport.is_closing():
            return _unhandled(request)  # a connection of ours (WeChat, EMS…) was reset: our error
        # The client went away mid-request (an upload cut off): nobody reads this answer, and it is no
        # fault of ours: a 4xx in the access log and the metrics, not an error with a stack trace.
        log.info("client aborted the request", extra={"path": request.path})
        return problem(400, "request_aborted", "请求未完成", "请求在传输中断开，请重试")
    except Exception:
        return _unhandled(request)


def _unhandled(request: web.Request) -> web.Response:
    """A 500 with a trace id; the stack trace goes to the log only (call inside the ``except``)."""
    trace_id = uuid.uuid4().hex
    log.exception("unhandled error", extra={"trace_id": trace_id, "path": request.path})
    return problem(500, "internal_error", "服务器内部错误", "服务器开小差了，请稍后再试", trace_id=trace_id)


def _allow_header(e: web.HTTPException) -> dict[str, str]:
    allow = e.headers.get("Allow")
    return {"Allow": allow} if allow else {}


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 problem (not 500) when it is not one."""
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("请求内容不是有效的 JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest("请求内容应为 JSON 对象", code="invalid_json")
    return data
