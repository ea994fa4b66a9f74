"""The population registry (公安人口信息): a parent's ethnicity and registered address by ID number and name."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from aiohttp import web

from miniprogram_stub.fake_core import SETTINGS, Json, add_resettable, control_reply, read_json

LOOKUP_PATH = "/registry/v1/persons/lookup"


@dataclass
class Registry:
    persons: dict[str, Json] = field(default_factory=dict)  # id_number → {name, ethnicity, address}

    def reset(self) -> None:
        self.persons.clear()


REGISTRY = web.AppKey("fake_registry", Registry)


def _strings(body: Json, *names: str) -> list[str] | None:
    values = [body.get(name) for name in names]
    if not all(isinstance(v, str) and v.strip() for v in values):
        return None
    return [str(v).strip() for v in values]


async def lookup_person(request: web.Request) -> web.Response:
    """`POST /registry/v1/persons/lookup` (header `X-Api-Key`) `{id_number, name}`."""
    key = request.headers.get("X-Api-Key", "")
    if not hmac.compare_digest(key.encode(), request.app[SETTINGS].registry_api_key.encode()):
        return control_reply({"code": "unauthorized"}, 401)
    parsed = _strings(await read_json(request), "id_number", "name")
    if parsed is None:
        return control_reply({"code": "bad_request"}, 400)
    id_number, name = parsed
    person = request.app[REGISTRY].persons.get(id_number.upper())
    # A wrong name answers like an unknown number, so the registry cannot be used to learn names.
    if person is None or person["name"] != name:
        return control_reply({"code": "not_found"}, 404)
    return control_reply({"ethnicity": person["ethnicity"], "address": person["address"]})


async def add_person(request: web.Request) -> web.Response:
    """`POST /_fake/registry/persons {id_number, name, ethnicity, address}`."""
    parsed = _strings(await read_json(request), "id_number", "name", "ethnicity", "address")
    if parsed is None:
        return control_reply({"error": "id_number, name, ethnicity and address required"}, 400)
    id_number, name, ethnicity, address = parsed
    request.app[REGISTRY].persons[id_number.upper()] = {
        "name": name,
        "ethnicity": ethnicity,
        "address": address,
    }
    return control_reply({"stored": True}, 201)


def setup_registry(app: web.Application) -> None:
    registry = Registry()
    app[REGISTRY] = registry
    add_resettable(app, registry)
    app.router.add_post(LOOKUP_PATH, lookup_person)
    app.router.add_post("/_fake/registry/persons", add_person)
