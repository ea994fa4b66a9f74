"""Face verification, new API: `getverifyid`, `wx.requestFacialVerify` (played by a control call), `queryverifyinfo`."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field

from aiohttp import web

from miniprogram_stub.fake_core import (
    SETTINGS,
    FakeSettings,
    add_resettable,
    control_reply,
    read_json,
    wechat_error,
    wechat_ok,
)
from miniprogram_stub.fake_tokens import requires_access_token

OUT_SEQ_NO = re.compile(r"^[0-9A-Za-z_-]{5,32}$")
CERT_NO = re.compile(r"^\d{17}[\dXx]$")

SUCCESS = 10000
BAD_PARAMS = 10001
NOT_FINISHED = 10300
# Errcodes the official pages do not list; our choices (README "Undocumented behaviour").
PARAM_ERRCODE = 10001  # getverifyid: bad or reused parameter
UNKNOWN_VERIFY_ID = 84001  # queryverifyinfo: verify_id never issued, or expired


def cert_hash(cert_type: str, cert_name: str, cert_no: str) -> str:
    """sha256 hex of `cert_type=b64&cert_name=b64&cert_no=b64` (shared doc §6.4)."""

    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    text = f"cert_type={b64(cert_type)}&cert_name={b64(cert_name)}&cert_no={b64(cert_no)}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class FaceSession:
    out_seq_no: str
    cert_hash: str
    openid: str
    cert_no: str
    expires_at: float
    result: int | None = None


@dataclass
class Faces:
    """Verification sessions by verify_id, and the results scripted per ID number."""

    settings: FakeSettings
    sessions: dict[str, FaceSession] = field(default_factory=dict)
    out_seq_nos: set[str] = field(default_factory=set)
    scripted: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        self.sessions.clear()
        self.out_seq_nos.clear()
        self.scripted.clear()

    def live(self, verify_id: object) -> FaceSession | None:
        session = self.sessions.get(verify_id) if isinstance(verify_id, str) else None
        if session is None or self.settings.clock() >= session.expires_at:
            return None
        return session


FACES = web.AppKey("fake_faces", Faces)


@requires_access_token
async def get_verify_id(request: web.Request) -> web.StreamResponse:
    """`POST /cityservice/face/identify/getverifyid`."""
    body = await read_json(request)
    faces, settings = request.app[FACES], request.app[SETTINGS]
    out_seq_no, cert_info, openid = body.get("out_seq_no"), body.get("cert_info"), body.get("openid")
    if not isinstance(out_seq_no, str) or not OUT_SEQ_NO.match(out_seq_no):
        return wechat_error(PARAM_ERRCODE, "invalid param: out_seq_no")
    if not isinstance(cert_info, dict):
        return wechat_error(PARAM_ERRCODE, "invalid param: cert_info")
    cert_type, cert_name, cert_no = (cert_info.get(k) for k in ("cert_type", "cert_name", "cert_no"))
    if cert_type != "IDENTITY_CARD":
        return wechat_error(PARAM_ERRCODE, "invalid param: cert_info.cert_type")
    if not isinstance(cert_name, str) or not cert_name.strip():
        return wechat_error(PARAM_ERRCODE, "invalid param: cert_info.cert_name")
    if not isinstance(cert_no, str) or not CERT_NO.match(cert_no):
        return wechat_error(PARAM_ERRCODE, "invalid param: cert_info.cert_no")
    if not isinstance(openid, str) or not openid:
        return wechat_error(PARAM_ERRCODE, "invalid param: openid")
    if out_seq_no in faces.out_seq_nos:
        return wechat_error(PARAM_ERRCODE, "out_seq_no duplicated")
    faces.out_seq_nos.add(out_seq_no)
    verify_id = secrets.token_urlsafe(48)
    faces.sessions[verify_id] = FaceSession(
        out_seq_no=out_seq_no,
        cert_hash=cert_hash(cert_type, cert_name, cert_no),
        openid=openid,
        cert_no=cert_no.upper(),
        expires_at=settings.clock() + settings.verify_id_lifetime,
    )
    return wechat_ok({"verify_id": verify_id, "expires_in": int(settings.verify_id_lifetime)})


@requires_access_token
async def query_verify_info(request: web.Request) -> web.StreamResponse:
    """`POST /cityservice/face/identify/queryverifyinfo`."""
    body = await read_json(request)
    session = request.app[FACES].live(body.get("verify_id"))
    if session is None:
        return wechat_error(UNKNOWN_VERIFY_ID, "invalid verify_id or verify_id expired")
    if (
        body.get("out_seq_no") != session.out_seq_no
        or body.get("openid") != session.openid
        or body.get("cert_hash") != session.cert_hash
    ):
        return wechat_ok({"verify_ret": BAD_PARAMS})
    return wechat_ok({"verify_ret": NOT_FINISHED if session.result is None else session.result})


async def play_face_verify(request: web.Request) -> web.Response:
    """`POST /_fake/face/verify {verify_id, openid?}`: the user goes through `wx.requestFacialVerify`."""
    body = await read_json(request)
    faces = request.app[FACES]
    verify_id = body.get("verify_id")
    if not isinstance(verify_id, str) or verify_id not in faces.sessions:
        return control_reply({"errCode": 90100, "errMsg": "requestFacialVerify:fail invalid verifyId"}, 404)
    session = faces.live(verify_id)
    if session is None:
        return control_reply({"errCode": 90100, "errMsg": "requestFacialVerify:fail verifyId expired"}, 410)
    openid = body.get("openid")
    if openid is not None and openid != session.openid:
        # The verify_id was issued for another user of the mini-program: the client refuses it.
        return control_reply({"errCode": 90100, "errMsg": "requestFacialVerify:fail openid mismatch"}, 403)
    if session.result is not None:
        return control_reply({"errCode": 90100, "errMsg": "requestFacialVerify:fail verifyId used"}, 409)
    session.result = faces.scripted.get(session.cert_no, SUCCESS)
    if session.result >= 90000:
        return control_reply(
            {"errCode": session.result, "errMsg": "requestFacialVerify:fail", "verify_ret": session.result}
        )
    # errCode 0 only means "finished": the backend must ask queryverifyinfo for the verdict.
    return control_reply({"errCode": 0, "errMsg": "requestFacialVerify:ok", "verify_ret": session.result})


async def script_face(request: web.Request) -> web.Response:
    """`POST /_fake/faces {cert_no, verify_ret}`: the result every later verification of that ID gets."""
    body = await read_json(request)
    cert_no, verify_ret = body.get("cert_no"), body.get("verify_ret")
    if not isinstance(cert_no, str) or not cert_no or not isinstance(verify_ret, int):
        return control_reply({"error": "cert_no (string) and verify_ret (int) required"}, 400)
    request.app[FACES].scripted[cert_no.upper()] = verify_ret
    return control_reply({"scripted": True})


def setup_face(app: web.Application, settings: FakeSettings) -> None:
    faces = Faces(settings)
    app[FACES] = faces
    add_resettable(app, faces)
    app.router.add_post("/cityservice/face/identify/getverifyid", get_verify_id)
    app.router.add_post("/cityservice/face/identify/queryverifyinfo", query_verify_info)
    app.router.add_post("/_fake/face/verify", play_face_verify)
    app.router.add_post("/_fake/faces", script_face)
