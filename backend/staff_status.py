"""Tokens of staff accounts disabled since they logged in are refused (within ``RECHECK_SECONDS``).

A staff token lives up to two hours. Disabling an account (``birthcert users disable``) stops new
logins at once; this middleware refuses the tokens already handed out. Each staff account's status is
read from the event store (off the loop) at most once per ``RECHECK_SECONDS`` per process; parents'
tokens are not looked at (their role is read from the token's payload before any signature check,
which ``actor_of`` does as before).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from typing import Final

import orjson
from aiohttp import web

from backend.auth import Unauthenticated, bearer_token
from backend.components import APPLICATIONS, TOKENS, in_store
from domain.errors import DomainError
from domain.staff import STAFF_ROLES
from domain.values import Actor

RECHECK_SECONDS: Final = 30.0


class StaffStatus:
    """Which staff accounts are disabled, as last read from the store (per process, briefly cached)."""

    def __init__(self, recheck_seconds: float = RECHECK_SECONDS) -> None:
        self.recheck_seconds = recheck_seconds
        self._known: dict[str, tuple[bool, float]] = {}
        self._lock = asyncio.Lock()

    async def disabled(self, request: web.Request, username: str) -> bool:
        """Whether the account is disabled. Accounts are never deleted; a token naming no account could
        only have been signed with our key outside a login (tests, tools): it is left to the handler."""
        now = time.monotonic()
        known = self._known.get(username)
        if known is not None and now - known[1] < self.recheck_seconds:
            return known[0]
        async with self._lock:
            account = await in_store(request, request.app[APPLICATIONS].get_staff_account, username)
            disabled = account is not None and account.disabled
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[username] = (disabled, time.monotonic())
            return disabled


STAFF_STATUS = web.AppKey("staff_status", StaffStatus)


def _claimed_role(token: str) -> object:
    """The role a token's payload claims (unverified: only to skip parents' tokens cheaply)."""
    try:
        payload = token.split(".")[1]
        return orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("role")
    except (IndexError, ValueError, AttributeError):
        return None


def _staff_actor(request: web.Request) -> Actor | None:
    """The actor of a valid staff token, else None (a bad token is the handler's to answer, as always)."""
    try:
        token = bearer_token(request)
        if _claimed_role(token) not in STAFF_ROLES:
            return None
        return request.app[TOKENS].verify(token)
    except DomainError:
        return None


@web.middleware
async def refuse_disabled_staff(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """401 ``account_disabled`` for a valid staff token whose account has been disabled since."""
    if "Authorization" in request.headers and request.path.startswith("/api/"):
        actor = _staff_actor(request)
        if actor is not None and await request.app[STAFF_STATUS].disabled(request, actor.id):
            raise Unauthenticated("该账号已停用，请联系管理员", code="account_disabled")
    return await handler(request)
