"""A scripted mini-program: drives the parent journey over HTTP exactly as the real front end would.

Where the real mini-program would call a WeChat client API (``wx.login``, ``wx.requestFacialVerify``,
``wx.requestPayment``), this client asks the fake platform to play it (``/_fake/...``). Used by the
end-to-end tests, by ``birthcert demo`` and by the load generator.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from PIL import Image, ImageDraw

from miniprogram_stub.people import Family, Person

JSON = dict[str, Any]


class ApiProblem(Exception):
    """The service answered with an RFC 9457 problem."""

    def __init__(self, status: int, problem: JSON) -> None:
        self.status = status
        self.problem = problem
        self.code = str(problem.get("code", ""))
        super().__init__(f"{status} {self.code}: {problem.get('detail', '')}")


def id_photo(label: str, *, exif: bool = True) -> bytes:
    """A JPEG standing in for a photo of an ID card (with camera EXIF, as phones write it)."""
    image = Image.new("RGB", (640, 400), (235, 240, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 620, 380), outline=(40, 60, 120), width=4)
    draw.text((40, 40), label, fill=(20, 20, 20))
    out = io.BytesIO()
    if exif:
        info = Image.Exif()
        info[0x010F] = "PhoneMaker"  # Make
        info[0x0132] = "2026:11:20 10:00:00"  # DateTime
        image.save(out, "JPEG", exif=info.tobytes(), quality=85)
    else:
        image.save(out, "JPEG", quality=85)
    return out.getvalue()


def signature_png() -> bytes:
    """A PNG of a handwritten-looking signature stroke."""
    image = Image.new("RGBA", (400, 160), (255, 255, 255, 0))
    draw = ImageDraw.Draw(image)
    draw.line(
        [(20, 120), (80, 40), (140, 110), (220, 50), (300, 120), (380, 60)], fill=(0, 0, 0, 255), width=6
    )
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@dataclass
class MiniProgram:
    """One parent's mini-program session against ``api`` (our service), with ``platform`` (the fake)."""

    session: aiohttp.ClientSession
    api: str
    platform: str
    family: Family
    say: Callable[[str], None] = field(default=lambda _text: None)
    # Called with (method, path, status, content type, body) of every answer: the tests check the OpenAPI document.
    check: Callable[[str, str, int, str, Any], None] | None = None
    token: str | None = None
    app_id: str | None = None
    version: int | None = None
    openid: str | None = None
    # A provincial app (粤省事 ``yueshengshi``, 北京通 ``beijingtong``, …) the parent uses instead of WeChat,
    # and the real-name account's holder there (the mother unless said).
    channel: str | None = None
    account_holder: Person | None = None

    # ------------------------------------------------------------------ HTTP

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        idempotency_key: str | None = None,
        if_match: int | None = None,
        expect: tuple[int, ...] = (200, 201),
    ) -> JSON:
        """One API call; a problem answer raises ApiProblem."""
        headers: dict[str, str] = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if method in ("POST", "PUT"):
            headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        async with self.session.request(method, self.api + path, json=json, data=data, headers=headers) as r:
            body = await r.json(content_type=None)
            if self.check is not None:
                self.check(method, path, r.status, r.content_type, body)
            if r.status not in expect:
                raise ApiProblem(r.status, body if isinstance(body, dict) else {"detail": str(body)})
            if isinstance(body, dict) and isinstance(body.get("version"), int):
                self.version = body["version"]
            return body if isinstance(body, dict) else {"value": body}

    async def fake(self, path: str, payload: JSON) -> JSON:
        """Ask the fake WeChat platform to play a client-side WeChat API."""
        async with self.session.post(self.platform + path, json=payload) as r:
            body: JSON = await r.json(content_type=None)
            return body

    # ------------------------------------------------------------------ the journey, step by step

    async def login(self, openid: str | None = None) -> None:
        """wx.login → POST /auth/wechat (or the provincial app's login when ``channel`` is set)."""
        if self.channel is not None:
            await self.login_channel(self.channel, openid)
            return
        self.openid = openid or self.family.openid
        code = f"dev:{self.openid}:{uuid.uuid4().hex[:8]}"
        answer = await self.call("POST", "/api/v1/auth/wechat", json={"code": code})
        self.token = answer["token"]
        self.say("登录小程序")

    async def login_channel(
        self, channel: str, openid: str | None = None, holder: Person | None = None
    ) -> JSON:
        """Entering from a provincial app: its signed ticket (the fake's real-name account of ``holder``)
        → POST /auth/channels/<channel>."""
        self.channel = channel
        self.account_holder = holder or self.account_holder or self.family.mother
        self.openid = openid or f"{channel}-{self.family.openid}"
        person = self.account_holder
        ticket = await self.fake(
            f"/_fake/oidc/{channel}/tickets",
            {"openid": self.openid, "name": person.name, "id_number": person.id_number},
        )
        answer = await self.call(
            "POST", f"/api/v1/auth/channels/{channel}", json={"ticket": ticket["ticket"]}
        )
        self.token = answer["token"]
        self.say(f"从{channel}登录")
        return answer

    async def script_provider_face(self, outcome: str, person: Person | None = None) -> JSON:
        """What this account's next face checks at its provincial app do: pass, fail, wrong_person (as
        ``person``), stale, wrong_acr, wrong_nonce, forged."""
        who = None if person is None else {"name": person.name, "id_number": person.id_number}
        return await self.fake(
            f"/_fake/oidc/{self.channel}/faces", {"openid": self.openid, "outcome": outcome, "person": who}
        )

    async def provider_face(self, authorization_url: str) -> JSON:
        """The app opens the authorization request, checks the face and redirects: the redirect's query
        (``code`` and ``state``, or ``error`` and ``state``), as the mini-program's web-view catches it."""
        async with self.session.get(authorization_url, allow_redirects=False) as r:
            location = r.headers.get("Location", "")
            if r.status != 302 or not location:
                raise ApiProblem(r.status, {"detail": await r.text(), "code": "provider_refused"})
        return dict(parse_qsl(urlsplit(location).query))

    async def start(self, **circumstances: Any) -> JSON:
        """申办: start an application."""
        if self.family.father is None:
            circumstances.setdefault("parents", "single_mother")
        answer = await self.call("POST", "/api/v1/applications", json=circumstances)
        self.app_id = answer["id"]
        self.say(f"发起申办（申请编号 {self.app_id[:8]}…）")
        return answer

    @property
    def base(self) -> str:
        """This application's path."""
        return f"/api/v1/applications/{self.app_id}"

    async def begin_face(self, role: str, person: Person) -> JSON:
        """Ask the service for a verify_id."""
        return await self.call(
            "POST",
            f"{self.base}/face-verifications",
            json={"role": role, "name": person.name, "id_number": person.id_number},
        )

    async def face_result(self, out_seq_no: str, redirect: JSON | None = None) -> JSON:
        """Ask the service for the verdict (a provincial app's: with its redirect's ``code`` and ``state``)."""
        return await self.call("POST", f"{self.base}/face-verifications/{out_seq_no}/result", json=redirect)

    async def verify_face(self, role: str, person: Person | None = None) -> JSON:
        """The whole face check: verify_id → wx.requestFacialVerify (played by the fake) → verdict; or, from
        a provincial app, its authorization request → its face check (the fake) → the redirect → verdict."""
        person = person or (self.family.mother if role == "mother" else self.family.father)
        assert person is not None
        started = await self.begin_face(role, person)
        if self.channel is not None:
            redirect = await self.provider_face(started["authorization_url"])
            verdict = await self.face_result(started["out_seq_no"], redirect)
            self.say(f"{'母亲' if role == 'mother' else '父亲'}在{self.channel}完成刷脸认证")
            return verdict
        await self.fake("/_fake/face/verify", {"verify_id": started["verify_id"], "openid": self.openid})
        verdict = await self.face_result(started["out_seq_no"])
        self.say(f"{'母亲' if role == 'mother' else '父亲'}刷脸认证通过")
        return verdict

    async def delivery_record(self) -> JSON:
        """The hospital's record, masked."""
        return await self.call("GET", f"{self.base}/delivery-record")

    async def confirm_delivery(self) -> JSON:
        """Confirm the record."""
        record = (await self.delivery_record())["delivery_record"]
        answer = await self.call("POST", f"{self.base}/delivery-record/confirm")
        self.say(
            f"确认分娩信息：{record['institution_name']}，出生时间 {record['newborn']['born_at'][:16]}，"
            f"体重 {record['newborn']['weight_g']} 克"
        )
        return answer

    async def prefill(self) -> JSON:
        """Police-registry data of the verified parents, where the province uses it (Guangdong)."""
        return await self.call("GET", f"{self.base}/details/prefill")

    def details_body(self, newborn_name: str | None = None, prefill: JSON | None = None) -> JSON:
        """The details as the form sends them (the registry's values, confirmed, where there are any)."""
        mother = self.family.mother
        father = self.family.father
        from_registry = (prefill or {}).get("mother")
        mother_part: JSON = {"nationality": "CHN", "ethnicity": mother.ethnicity, "address": mother.address}
        if from_registry:
            mother_part.update(from_registry)
        return {
            "newborn_name": newborn_name or self.family.newborn_name,
            "mother": mother_part,
            "father": None
            if father is None
            else {
                "name": father.name,
                "id_number": father.id_number,
                "nationality": "CHN",
                "ethnicity": father.ethnicity,
                "address": father.address,
            },
        }

    async def provide_details(self, newborn_name: str | None = None) -> JSON:
        """Names and details, taking the registry's values where the province offers them."""
        prefill = await self.prefill()
        body = self.details_body(newborn_name, prefill)
        answer = await self.call("PUT", f"{self.base}/details", json=body)
        source = "（民族、住址取自公安人口信息）" if body["mother"].get("source") == "registry" else ""
        self.say(f"填写新生儿姓名「{newborn_name or self.family.newborn_name}」及父母信息{source}")
        return answer

    async def register_with_police(self, person: Person) -> None:
        """Put a parent in the fake population registry (test and demo arrangement)."""
        await self.fake(
            "/_fake/registry/persons",
            {
                "id_number": person.id_number,
                "name": person.name,
                "ethnicity": person.ethnicity,
                "address": person.address,
            },
        )

    async def upload(self, kind: str, content: bytes | None = None, filename: str = "photo.jpg") -> JSON:
        """One ID photo."""
        form = aiohttp.FormData()
        form.add_field("kind", kind)
        form.add_field("file", content or id_photo(kind), filename=filename, content_type="image/jpeg")
        return await self.call("POST", f"{self.base}/documents", data=form)

    async def upload_all(self) -> None:
        """Every required ID photo."""
        kinds = ["mother_id_front", "mother_id_back"]
        if self.family.father is not None:
            kinds += ["father_id_front", "father_id_back"]
        for kind in kinds:
            await self.upload(kind)
        self.say(f"上传身份证照片 {len(kinds)} 张")

    async def upload_materials(self) -> list[str]:
        """出生一件事's materials of 表1 her opt-in asks for and she has not uploaded yet (decision 0047)."""
        bundle = await self.call("GET", f"{self.base}/bundle")
        kinds = [m["code"] for m in bundle.get("materials", []) if m["needed"] and not m["uploaded"]]
        for kind in kinds:
            await self.upload(kind)
        if kinds:
            self.say(f"上传一件事一次办材料 {len(kinds)} 张")
        return kinds

    async def invite_father(self) -> JSON:
        """The mother invites the father to his own phone: the one-time code, its page and a QR code."""
        answer = await self.call("POST", f"{self.base}/father-invitation")
        self.say(f"邀请孩子父亲用本人微信完成认证（{answer['expires_at'][:16]} 前有效）")
        return answer

    async def accept_invitation(self, invitation: str) -> JSON:
        """The father, on his own phone, opens the shared card: he joins the application."""
        answer = await self.call("POST", "/api/v1/father-invitations/accept", json={"invitation": invitation})
        self.app_id = answer["application_id"]
        self.say("孩子父亲接受邀请，加入申请")
        return answer

    async def fathers_part(self) -> None:
        """On the father's own phone: his face check as the father, then his ID photos."""
        await self.verify_face("father")
        for kind in ("father_id_front", "father_id_back"):
            await self.upload(kind)
        self.say("孩子父亲上传本人身份证照片 2 张")

    async def submit_after_fathers_part(self, *, ems: bool = True) -> JSON:
        """On the mother's phone, once the father did his part on his: her ID photos, her signature, EMS (or pickup
        at the counter), submit."""
        for kind in ("mother_id_front", "mother_id_back"):
            await self.upload(kind)
        await self.sign()
        await (self.choose_ems() if ems else self.choose_pickup())
        return await self.submit()

    async def form(self) -> JSON:
        """The form to sign, with its SHA-256."""
        return await self.call("GET", f"{self.base}/form")

    async def sign(self, form_sha256: str | None = None) -> JSON:
        """Sign the form as shown."""
        sha = form_sha256 or (await self.form())["sha256"]
        form = aiohttp.FormData()
        form.add_field("form_sha256", sha)
        form.add_field("file", signature_png(), filename="signature.png", content_type="image/png")
        answer = await self.call("POST", f"{self.base}/signature", data=form)
        self.say(f"在登记表上电子签名（表单摘要 {sha[:12]}…）")
        return answer

    async def choose_ems(self) -> JSON:
        """EMS to the mother."""
        mother = self.family.mother
        answer = await self.call(
            "PUT",
            f"{self.base}/delivery-method",
            json={
                "method": "ems",
                "recipient": {"name": mother.name, "phone": "13800138000", "address": mother.address},
            },
        )
        self.say("选择邮政速递到家")
        return answer

    async def choose_pickup(self) -> JSON:
        """Pickup at the issuing institution."""
        return await self.call("PUT", f"{self.base}/delivery-method", json={"method": "pickup"})

    async def pay_postage(self) -> JSON:
        """WeChat Pay for the postage (wx.requestPayment played by the fake's notification)."""
        order = await self.call("POST", f"{self.base}/payments")
        await self.fake("/_fake/pay/notify", {"out_trade_no": order["out_trade_no"]})
        self.say(f"支付邮寄费 ¥{order['amount_fen'] / 100:.2f}")
        return order

    async def submit(self) -> JSON:
        """Submit for review."""
        answer = await self.call("POST", f"{self.base}/submit")
        self.say("提交审核")
        return answer

    async def withdraw(self) -> JSON:
        """Withdraw."""
        return await self.call("POST", f"{self.base}/withdraw", json={"reason": "申办人撤回"})

    async def status(self) -> JSON:
        """The status view."""
        return await self.call("GET", self.base)

    async def book_first_pickup_slot(self) -> JSON:
        """预约取证: the first slot with a place left at her institution."""
        offered = await self.call("GET", f"{self.base}/pickup-slots")
        slot = next(s for s in offered["slots"] if s["remaining"] > 0)
        answer = await self.call(
            "PUT", f"{self.base}/pickup-appointment", json={"date": slot["date"], "start": slot["start"]}
        )
        self.say(f"预约领取时间：{answer['appointment']['label']}")
        return answer

    async def sign_collector_letter(self, collector: Person) -> JSON:
        """The mother reads the 授权委托书 for this collector and signs it."""
        who = {"collector_name": collector.name, "collector_id_number": collector.id_number}
        preview = await self.call("POST", f"{self.base}/collector-letter/preview", json=who)
        form = aiohttp.FormData()
        for key, value in {**who, "letter_sha256": preview["sha256"]}.items():
            form.add_field(key, value)
        form.add_field("file", signature_png(), filename="signature.png", content_type="image/png")
        answer = await self.call("POST", f"{self.base}/collector-letter", data=form)
        self.say(f"签署授权委托书，委托 {collector.name[0]}* 代为领取")
        return answer

    async def verify_at_counter(self, code: str) -> JSON:
        """On the collector's own phone, from the counter's QR code: the face check as the ID shown."""
        started = await self.call("POST", "/api/v1/collector-checks/face-verifications", json={"code": code})
        await self.fake("/_fake/face/verify", {"verify_id": started["verify_id"], "openid": self.openid})
        return await self.call(
            "POST",
            f"/api/v1/collector-checks/face-verifications/{started['out_seq_no']}/result",
            json={"code": code},
        )

    async def bundle(self) -> JSON:
        """出生一件事: what the province offers, its conditions for this application, the fields of 表2."""
        return await self.call("GET", f"{self.base}/bundle")

    async def opt_in_bundle(self, services: list[str], fields: JSON, *, parents_married: bool = True) -> JSON:
        """Opt in to 出生一件事 (or change the opt-in) with the chosen services and the extra fields."""
        body = {"services": services, "parents_married": parents_married, "fields": fields}
        answer = await self.call("PUT", f"{self.base}/bundle", json=body)
        self.say("申请新生儿出生“一件事一次办”：" + "、".join(services))
        return answer

    async def withdraw_bundle(self) -> JSON:
        """Withdraw the opt-in to 出生一件事."""
        return await self.call("DELETE", f"{self.base}/bundle")

    async def ready_to_sign(self) -> None:
        """Login to the ID photos: everything the signature waits for."""
        await self.login()
        await self.start()
        await self.verify_face("mother")
        await self.confirm_delivery()
        await self.provide_details()
        if self.family.father is not None:
            await self.verify_face("father")
        await self.upload_all()

    async def whole_journey(self, *, ems: bool = True, pay: bool = False) -> JSON:
        """Login to submission; returns the final status view."""
        await self.ready_to_sign()
        await self.sign()
        if ems:
            await self.choose_ems()
        else:
            await self.choose_pickup()
        if pay:
            await self.pay_postage()
        await self.submit()
        return await self.status()


@dataclass
class StaffClient:
    """A staff member's browser or a hospital's HIS: login, then authenticated calls."""

    session: aiohttp.ClientSession
    api: str
    token: str | None = None
    check: Callable[[str, str, int, str, Any], None] | None = None

    async def login(self, username: str, password: str) -> JSON:
        """POST /auth/staff."""
        answer = await self.call(
            "POST", "/api/v1/auth/staff", json={"username": username, "password": password}
        )
        self.token = answer["token"]
        return answer

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        idempotency_key: str | None = None,
        if_match: int | None = None,
        expect: tuple[int, ...] = (200, 201),
    ) -> JSON:
        """One API call; a problem answer raises ApiProblem."""
        headers: dict[str, str] = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        async with self.session.request(method, self.api + path, json=json, headers=headers) as r:
            body = await r.json(content_type=None)
            if self.check is not None:
                self.check(method, path, r.status, r.content_type, body)
            if r.status not in expect:
                raise ApiProblem(r.status, body if isinstance(body, dict) else {"detail": str(body)})
            return body if isinstance(body, dict) else {"value": body}
