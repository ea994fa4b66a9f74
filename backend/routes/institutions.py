"""``GET /api/v1/institutions``: the institutions and their counters, for anyone (public information).

The mini-program's hospital picker at the start (where she gave birth: a referral names its counter) and a
family referred before any institution was known look counters up here (docs/decisions/0033). Nothing in it
is about a person. The list is read from the event store at most once a minute per process: it is public,
so a request costs a copy, never a load of every institution.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from backend.components import APPLICATIONS, in_store, json_response
from domain.delivery import Institution
from domain.policy import get_profile

routes = web.RouteTableDef()
FRESH_SECONDS: Final = 60.0


@dataclass
class InstitutionDirectory:
    """The institutions as last read, and when (monotonic seconds)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    read_at: float = float("-inf")


DIRECTORY = web.AppKey("institution_directory", InstitutionDirectory)


def institution_json(institution: Institution) -> dict[str, Any]:
    """One institution as the list shows it: code, name, province and its counter (None until set)."""
    counter = institution.counter
    return {
        "code": institution.code,
        "name": institution.name,
        "province": institution.province,
        "counter": None if counter is None else counter.to_dict(),
    }


@routes.get("/api/v1/institutions")
async def list_institutions(request: web.Request) -> web.Response:
    """Every institution (``?province=GD``: of one province), by code, with its counter."""
    province = request.query.get("province")
    if province is not None:
        province = get_profile(province).code  # 422 unknown_province
    directory = request.app[DIRECTORY]
    if time.monotonic() - directory.read_at > FRESH_SECONDS:
        institutions = await in_store(request, request.app[APPLICATIONS].list_institutions)
        directory.items = [institution_json(i) for i in institutions]
        directory.read_at = time.monotonic()
    items = [i for i in directory.items if province is None or i["province"] == province]
    return json_response({"items": items})


def setup_institutions(app: web.Application) -> None:
    """The route and its directory."""
    app[DIRECTORY] = InstitutionDirectory()
    app.router.add_routes(routes)
