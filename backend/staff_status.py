"""Tokens of staff accounts disabled since they logged in are refused (within ``RECHECK_SECONDS``).

A staff token lives up to two hours. Disabling an account (``birthcert users disable``) stops new
logins at once; this middleware refuses the tokens already handed out. Each staff account's status is
read from the event store (off the loop) at most once per ``RECHECK_SECONDS`` per process. The token
is verified here as ``actor_of`` would (``TokenIssuer`` remembers a verified token, so the handler's own
check costs nothing more); parents' tokens pass through untouched.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from backend.auth import Unauthenticated, bearer_token
from backend.components import APPLICATIONS, TOKENS, in_store
from domain.errors import DomainError
from domain.staff import STAFF_ROLES

RECHECK_SECONDS: Final = 30.0


class StaffStatus:
    """Which staff accounts are disabled, as last read from the store (per process, briefly cached)."""

    def __init__(self, recheck_seconds: float = RECHECK_SECONDS) -> None:
        self.recheck_seconds = recheck_seconds
        self._known: dict[str, tuple[bool, float]] = {}

    async def disabled(self, request: web.Request, username: str) -> bool:
        """Whether the account is disabled. Accounts are never deleted; a token naming no account could
        only have been signed with our key outside a login (tests, tools): it is left to the handler."""
        known = self._known.get(username)
        if known is not None and time.monotonic() - known[1] < self.recheck_seconds:
            return known[0]
        account = await in_store(request, request.app[APPLICATIONS].get_staff_account, username)
        disabled = account is not None and account.disabled
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[username] = (disabled, time.monotonic())
        return disabled


STAFF_STATUS = web.AppKey("staff_status", StaffStatus)


@web.middleware
async def refuse_disabled_staff(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """401 ``account_disabled`` for a valid staff token whose account has been disabled since."""
    if "Authorization" in request.headers and request.path.startswith("/api/"):
        try:
            actor = request.app[TOKENS].verify(bearer_token(request))
        except DomainError:
            return await handler(request)  # a bad token is the handler's to answer, as always
        if actor.role in STAFF_ROLES and await request.app[STAFF_STATUS].disabled(request, actor.id):
            raise Unauthenticated(code="account_disabled")
    return await handler(request)
