"""The verify page's endpoint and files over HTTP (decision 0041): by licence id, anyone gets the e-licence's
issuer-signed part and nothing personal; an unknown id is a 404 problem; a replaced e-licence is still
presented (its status list says it is void) without a word of its replacement; the page is served with a
strict Content-Security-Policy; the endpoint is limited per address.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from backend.credentials import b64url_decode, verify_sd_jwt
from domain.elicense import PLAIN_ITEMS, LicenceId
from miniprogram_stub.people import Family
from tests.e2e.conftest import Stack, running_stack
from tests.e2e.test_elicense_http import jwks
from tests.e2e.test_limits import from_address
from tests.e2e.test_verification_http import issued, reissued_after_loss, verify
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

PRESENTATIONS = "/api/v1/elicense/presentations"
CJK = re.compile(r"[\u4e00-\u9fff]")


async def presented(stack: Stack, body: Any, session: Any = None) -> tuple[int, dict[str, Any], Any]:
    async with (session or stack.session).post(stack.api + PRESENTATIONS, json=body) as r:
        answer = await r.json(content_type=None)
        stack.check("POST", PRESENTATIONS, r.status, r.content_type, answer)
        return r.status, answer, r.headers


# Items that name or place the family (short codes, a weight or "F", would match anything).
IDENTIFYING = (
    "newborn_name",
    "born_at",
    "birthplace",
    "mother_name",
    "mother_id_number",
    "father_name",
    "father_id_number",
)


def personal_values(credential: str, keys: dict[str, Any]) -> list[str]:
    """The items of the family's e-licence that would identify it, as the mother's full credential discloses them."""
    disclosed = verify_sd_jwt(credential, keys).disclosed
    assert all(name in disclosed for name in IDENTIFYING)
    return [str(disclosed[name]) for name in IDENTIFYING]


async def test_a_licence_id_gives_the_signed_part_only_and_never_a_replacement(
    stack: Stack, family: Family
) -> None:
    mother, document = await issued(stack, family)
    keys = await jwks(stack)
    licence_id = document["licence_id"]

    status, answer, headers = await presented(stack, {"licence_id": licence_id})
    assert status == 200 and headers["Cache-Control"] == "no-store"
    shown = answer["credential"]
    assert answer["licence_id"] == licence_id
    # The issuer's own signature over the same claims, and no disclosure at all.
    assert shown == document["credential"].split("~", 1)[0] + "~"
    verified = verify_sd_jwt(shown, keys)
    assert verified.disclosed == {} and verified.claims["licence_id"] == licence_id
    payload = json.loads(b64url_decode(shown.split(".")[1]))
    assert set(payload) == {*PLAIN_ITEMS, "iss", "iat", "vct", "status", "_sd", "_sd_alg"}
    text = json.dumps(answer, ensure_ascii=False) + json.dumps(payload, ensure_ascii=False)
    for value in personal_values(document["credential"], keys):
        assert value not in text, "a personal item in the public presentation"

    # Unknown (well formed, its check character right, never issued): a 404 problem, Chinese, stable code.
    status, problem, headers = await presented(stack, {"licence_id": str(LicenceId.new("GZFY01"))})
    assert (status, problem["code"], problem["status"]) == (404, "elicense_not_found", 404)
    assert headers["Content-Type"].startswith("application/problem+json")
    assert CJK.search(problem["title"]) and CJK.search(problem["detail"])
    wrong_check = licence_id[:-1] + ("0" if licence_id[-1] != "0" else "1")
    for body in ({"licence_id": wrong_check}, {"licence_id": "nonsense"}, {}):
        status, problem, _ = await presented(stack, body)
        assert (status, problem["code"]) == (422, "invalid_licence_id"), body

    # Lost and reissued: the old licence id is still presented, its status list says it is void, and nothing
    # the public gets names the new certificate.
    await reissued_after_loss(stack, mother.app_id, "X440100072")

    async def revoked() -> bool:
        return bool((await verify(stack, {"credential": shown}))[1]["result"] == "revoked")

    await eventually(revoked, "the old e-licence is revoked", timeout=60)
    status, again, _ = await presented(stack, {"licence_id": licence_id})
    assert status == 200 and again["credential"] == shown and "X440100072" not in json.dumps(again)


async def test_the_page_is_served_with_a_strict_policy_and_only_its_files(stack: Stack) -> None:
    async with stack.session.get(stack.api + "/verify", allow_redirects=False) as r:
        assert (r.status, r.headers["Location"]) == (308, "/verify/")
    async with stack.session.get(stack.api + "/verify/") as r:
        page = await r.text()
        policy = r.headers["Content-Security-Policy"]
        etag = r.headers["ETag"]
        assert r.status == 200 and r.content_type == "text/html" and "电子证照核验" in page
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Referrer-Policy"] == "no-referrer"
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'" and directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert "http" not in page.replace('lang="zh-CN"', "")  # nothing from another origin
    async with stack.session.get(stack.api + "/verify/", headers={"If-None-Match": etag}) as r:
        assert r.status == 304
    for name, media in (("verify.js", "text/javascript"), ("verify.css", "text/css")):
        async with stack.session.get(f"{stack.api}/verify/{name}") as r:
            assert (r.status, r.content_type) == (200, media) and "Content-Security-Policy" in r.headers
    for name in ("index.htm", "..%2Fconsole%2Fconsole.js", "verify.py"):
        async with stack.session.get(f"{stack.api}/verify/{name}") as r:
            assert r.status == 404, name


async def test_the_endpoint_is_limited_per_address(tmp_path: Path, redis_url: str) -> None:
    async with running_stack(
        tmp_path / "var", redis_url, {"BIRTHCERT_RATE_VERIFICATION": "3 per minute"}
    ) as stack:
        unknown = {"licence_id": str(LicenceId.new("GZFY01"))}
        statuses = [(await presented(stack, unknown))[0] for _ in range(4)]
        assert statuses == [404, 404, 404, 429]
        _, problem, headers = await presented(stack, unknown)
        assert problem["code"] == "rate_limited" and 1 <= int(headers["Retry-After"]) <= 60
        # The same budget as the public verifications the page makes next.
        assert (await verify(stack, {"credential": "x~"}))[0] == 429
        async with from_address("127.0.0.2") as other:  # another address has its own
            assert (await presented(stack, unknown, other))[0] == 404
