"""The staff's web console at ``/console/``: static files (no build step), two JSON helpers.

The console is plain HTML, CSS and one ES module in ``backend/console/``; everything it shows comes from
the API with the staff member's Bearer token (kept in ``sessionStorage``). Auditors get a read-only view
of every institution, a search by application id and, on an application, its full history (the reading
recorded, ``/api/v1/audit/…``), the archived forms' PDFs and the proof bundle to verify offline. A midwifery
institution's staff (role ``hospital``) get their worklist: disputed delivery records to answer (correct or
uphold), records mothers report missing, records entered late (``/api/v1/hospital/worklist``).

Served with a strict Content-Security-Policy (``default-src 'self'``, no inline script or style, no
framing), so a page of this origin loads nothing from anywhere else.

Besides the files: ``/console/config.json`` (public: the labels of the fields a rejection may name and of its
reason codes, the ethnic groups, the handover relations, 出生一件事's service states and result fields — taken from the domain so the console never drifts from it) and
``/console/institutions.json`` (staff only: the names of the institutions the caller may see).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

from backend.components import APPLICATIONS, actor_of, in_store, json_response
from backend.static_files import StaticFiles, page_headers
from domain.application import FIXABLE_FIELDS, HANDOVER_RELATIONS
from domain.bundle import MATERIAL_KINDS, SERVICE_STATES, handoffs
from domain.rejection import REJECTION_REASONS
from domain.revocation import REVOCATION_REASONS
from domain.values import ETHNIC_GROUPS, ID_TYPE_LABELS

routes = web.RouteTableDef()

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "console"
# The only files served, with their types: nothing else under the directory is reachable.
ASSETS: Final = StaticFiles(
    STATIC_DIR,
    {
        "index.html": "text/html",
        "console.js": "text/javascript",
        "console.css": "text/css",
        "favicon.svg": "image/svg+xml",
        # The managers' statistics page (decision 0043) and Chart.js 4.6.1 from the npm registry, with its licence.
        "statistics.html": "text/html",
        "statistics.js": "text/javascript",
        "statistics.css": "text/css",
        "chart.umd.min.js": "text/javascript",
        "chart.js-LICENSE.md": "text/plain",
    },
)

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        "img-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS: Final = page_headers(CONTENT_SECURITY_POLICY)

# What an issuer may name when rejecting (domain.application.FIXABLE_FIELDS), as the issuer reads it.
FIELD_LABELS: Final = {
    "delivery_record": "分娩信息（医院记录）",
    "newborn_name": "新生儿姓名",
    "mother.nationality": "母亲国籍",
    "mother.ethnicity": "母亲民族",
    "mother.address": "母亲住址",
    "father.name": "父亲姓名",
    "father.id_number": "父亲有效身份证件号码",
    "father.nationality": "父亲国籍",
    "father.ethnicity": "父亲民族",
    "father.address": "父亲住址",
    "documents.mother_id_front": "母亲身份证人像面照片",
    "documents.mother_id_back": "母亲身份证国徽面照片",
    "documents.father_id_front": "父亲身份证人像面照片",
    "documents.father_id_back": "父亲身份证国徽面照片",
    "documents.father_handheld_id": "父亲手持身份证照片",
    **{f"documents.{kind}": f"{label}照片" for kind, label in MATERIAL_KINDS.items()},
    "signature": "申办人电子签名",
    "delivery_method": "领取方式",
}
RELATION_LABELS: Final = {"mother": "母亲", "father": "父亲", "authorized": "受委托人"}
NATIONALITY_LABELS: Final = {"CHN": "中国"}

_missing = [f for f in FIXABLE_FIELDS if f not in FIELD_LABELS] + [
    r for r in HANDOVER_RELATIONS if r not in RELATION_LABELS
]
if _missing:  # pragma: no cover - a new fixable field or relation needs its Chinese label here
    raise RuntimeError(f"console labels missing for: {', '.join(_missing)}")


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**SECURITY_HEADERS, **(extra or {})}


def _serve(request: web.Request, name: str) -> web.Response:
    return ASSETS.response(request, name, SECURITY_HEADERS)


@routes.get("/console")
async def console_root(request: web.Request) -> web.Response:
    """``/console`` → ``/console/`` (relative asset URLs need the slash)."""
    raise web.HTTPPermanentRedirect("/console/", headers=_headers())


@routes.get("/console/")
async def console_index(request: web.Request) -> web.Response:
    """The console's single page."""
    return _serve(request, "index.html")


@routes.get("/console/config.json")
async def console_config(request: web.Request) -> web.Response:
    """Labels the console needs, from the domain: fixable fields, rejection reasons, handover relations, ethnic
    groups, the grounds of a revocation, 出生一件事's service states and result fields."""
    return json_response(
        {
            "fixable_fields": [{"field": f, "label": FIELD_LABELS[f]} for f in FIXABLE_FIELDS],
            # The reject dialog's picklist (docs/decisions/0045): code, label, the fields it usually concerns.
            "rejection_reasons": [
                {"code": r.code, "label": r.label, "fields": list(r.fields)}
                for r in REJECTION_REASONS.values()
            ],
            "relations": [{"value": r, "label": RELATION_LABELS[r]} for r in HANDOVER_RELATIONS],
            "ethnic_groups": dict(ETHNIC_GROUPS),
            "nationalities": NATIONALITY_LABELS,
            "id_types": dict(ID_TYPE_LABELS),
            "revocation_reasons": [{"value": r, "label": label} for r, label in REVOCATION_REASONS.items()],
            # 出生一件事 (decision 0046): a service's states and the names of what a department's result holds.
            "bundle_states": dict(SERVICE_STATES),
            "bundle_result_labels": {
                k: label for h in handoffs().values() for k, label in h.result_labels.items()
            },
        },
        headers=_headers({"Cache-Control": "no-cache"}),
    )


@routes.get("/console/institutions.json")
async def console_institutions(request: web.Request) -> web.Response:
    """The institutions the caller may see: an issuer or a hospital its own, an auditor every one."""
    actor = actor_of(request, "issuer", "hospital", "auditor")
    institutions = await in_store(request, request.app[APPLICATIONS].list_institutions)
    visible = [
        {"code": i.code, "name": i.name, "province": i.province}
        for i in institutions
        if actor.role == "auditor" or i.code == actor.institution
    ]
    return json_response({"institutions": visible}, headers=_headers({"Cache-Control": "private, no-cache"}))


@routes.get("/console/{name}")
async def console_asset(request: web.Request) -> web.Response:
    """One of the console's files (and nothing else)."""
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound(headers=_headers())
    return _serve(request, name)
