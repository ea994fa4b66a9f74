"""Our one adapter for the provincial apps (粤省事, 北京通, 健康山东, 冀时办): login, face check, message push.

None of them publishes a protocol for hosted services, so this is the one we assume (docs/decisions/0030):
each app is an OpenID Connect provider whose users are real-name accounts, and its face check is a *step-up*:

1. ``authorization_url``: an authorization request (code flow with PKCE, RFC 7636) for a fresh face
   authentication — ``acr_values`` = the channel's face acr, ``max_age``, ``prompt=login``, ``login_hint`` =
   the logged-in subject, a ``claims`` request for the name and ID-number claims — with a ``state`` (our
   ``out_seq_no``) and a ``nonce`` and PKCE verifier derived from it with our key, so nothing secret is stored.
2. The mini-program opens it; the app checks the face; its redirect carries ``code`` and ``state`` back.
3. ``complete``: the code is exchanged at the token endpoint (client secret + PKCE verifier); the ID token's
   signature, ``iss``, ``aud`` and ``exp`` are checked by ``ProviderVerifier`` (the same check as the login
   ticket's), then ``face_claims_failure`` checks what it says about this check: nonce, subject, ``acr``,
   ``auth_time`` within ``max_age``, the ID number (or its salted hash) and the name.

Its messages to the parent go through the app's push endpoint (``message_push_endpoint`` in its discovery
document, not a standard member), not WeChat's. Synchronous (``requests``): call it on the I/O executor.
Nothing personal is logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import requests

from backend.auth import LEEWAY, IdTokenRefused, ProviderUnavailable, ProviderVerifier
from backend.config import ProviderSettings
from backend.wechat import SubscribeRefused, TemplateDataInvalid, WeChatUnavailable
from domain.channels import Channel

log = logging.getLogger("birthcert.channels")

DISCOVERY_LIFESPAN: Final = 3600.0
DISCOVERY_STALE_GRACE: Final = 6 * 3600.0
REQUIRED_METADATA: Final = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


class PushRefused(SubscribeRefused):
    """The app's user turned its messages off (the push answered 403): recorded, never retried."""


class PushDataInvalid(TemplateDataInvalid):
    """The app refused the message's content (400): our bug, not the user's."""


class PushUnavailable(WeChatUnavailable):
    """The app's push did not answer, or answered something else: tried again later."""


def id_number_hash(nonce: str, id_number: str) -> str:
    """The salted hash a channel may send instead of the ID number: hex SHA-256 of nonce ‖ number."""
    return hashlib.sha256((nonce + id_number.strip().upper()).encode("utf-8")).hexdigest()


def _same(a: object, b: str) -> bool:
    return isinstance(a, str) and hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def face_claims_failure(
    channel: Channel,
    claims: Mapping[str, Any],
    *,
    nonce: str,
    subject: str,
    name: str,
    id_number: str,
    now: float,
    acr: str | None = None,
) -> str | None:
    """Why an ID token (signature, iss, aud, exp already checked) does not prove that ``subject`` just passed
    the channel's face check as ``name`` / ``id_number`` for the request with ``nonce``; None when it does.

    Each answer is a face check's failure code: ``face_nonce_mismatch``, ``face_subject_mismatch``,
    ``face_acr_mismatch``, ``face_stale`` (``auth_time`` missing, in the future or older than ``max_age``),
    ``face_mismatch`` (another person's ID number: counted towards a referral, like WeChat's 10004) and
    ``id_mismatch`` (the right number under another name: a typo, like WeChat's 10003).
    """
    if not _same(claims.get("nonce"), nonce):
        return "face_nonce_mismatch"
    if not _same(claims.get("sub"), subject):
        return "face_subject_mismatch"
    if not _same(claims.get("acr"), acr or channel.face_acr):
        return "face_acr_mismatch"
    auth_time = claims.get("auth_time")
    if (
        not isinstance(auth_time, int | float)
        or isinstance(auth_time, bool)
        or not now - channel.max_age_seconds - LEEWAY <= auth_time <= now + LEEWAY
    ):
        return "face_stale"
    wanted = id_number.strip().upper()
    if "id_number_hash" in channel.claims:
        found = claims.get(channel.claims["id_number_hash"])
        if not _same(found.lower() if isinstance(found, str) else found, id_number_hash(nonce, wanted)):
            return "face_mismatch"
    elif not _same(str(claims.get(channel.claims["id_number"], "")).strip().upper(), wanted):
        return "face_mismatch"
    if not _same(claims.get(channel.claims["name"]), name):
        return "id_mismatch"
    return None


@dataclass(frozen=True)
class StepUp:
    """A face check begun at a provincial app: where the mini-program sends its user."""

    authorization_url: str
    channel: str


class ProvincialApp:
    """One configured channel: its JWT checks (``verifier``), its face-check step-up and its message push."""

    def __init__(
        self,
        settings: ProviderSettings,
        verifier: ProviderVerifier,
        secret: bytes,
        *,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.verifier = verifier
        self.channel = verifier.channel
        self._secret = secret
        self._timeout = timeout
        self._clock = clock
        self._http = requests.Session()
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._fetched_at = float("-inf")

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ discovery

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (cached an hour; a stale copy serves while it cannot be
        fetched); ``ProviderUnavailable`` when there is none."""
        with self._lock:
            now = self._clock()
            if self._metadata is not None and now - self._fetched_at < DISCOVERY_LIFESPAN:
                return self._metadata
            try:
                self._metadata, self._fetched_at = self._fetch_metadata(), now
            except ProviderUnavailable:
                if (
                    self._metadata is None
                    or now - self._fetched_at > DISCOVERY_LIFESPAN + DISCOVERY_STALE_GRACE
                ):
                    raise
                log.warning("%s discovery refresh failed; using the cached document", self.channel.name)
            return self._metadata

    def _fetch_metadata(self) -> dict[str, Any]:
        try:
            r = self._http.get(self.settings.discovery_url, timeout=self._timeout)
            document = r.json() if r.status_code == 200 else None
        except (requests.RequestException, ValueError):
            document = None
        if (
            not isinstance(document, dict)
            or any(not isinstance(document.get(k), str) for k in REQUIRED_METADATA)
            or document["issuer"].rstrip("/") != self.settings.issuer
        ):
            log.warning("%s discovery document did not load or names another issuer", self.channel.name)
            raise self.verifier.unavailable()
        return document

    # ------------------------------------------------------------------ the face check

    def _derived(self, purpose: str, out_seq_no: str) -> str:
        mac = hmac.new(self._secret, f"{self.channel.name}:{purpose}:{out_seq_no}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")

    def nonce(self, out_seq_no: str) -> str:
        """The nonce of the check ``out_seq_no`` (derived with our key: the same in every process)."""
        return self._derived("nonce", out_seq_no)

    def code_verifier(self, out_seq_no: str) -> str:
        """The PKCE verifier of the check ``out_seq_no`` (43 characters, never sent before the exchange)."""
        return self._derived("pkce", out_seq_no)

    def begin(self, *, out_seq_no: str, subject: str, id_number: str) -> StepUp:
        """The authorization request for a fresh face authentication of ``subject`` (``state`` = out_seq_no).

        The ID number never travels in the URL (URLs are logged): a hashed channel is asked for the hash
        of the claimed number; a channel that sends the number itself is asked for it, and we compare.
        """
        metadata = self.metadata()
        nonce = self.nonce(out_seq_no)
        challenge = hashlib.sha256(self.code_verifier(out_seq_no).encode("ascii")).digest()
        names = self.channel.claims
        wanted: dict[str, Any] = {
            "acr": {"essential": True, "value": self.channel.face_acr},
            "auth_time": {"essential": True},
            names["name"]: {"essential": True},
        }
        if "id_number_hash" in names:
            wanted[names["id_number_hash"]] = {"essential": True, "value": id_number_hash(nonce, id_number)}
        else:
            wanted[names["id_number"]] = {"essential": True}
        query = {
            "response_type": "code",
            "client_id": self.settings.audience,
            "redirect_uri": self.settings.redirect_uri,
            "scope": "openid",
            "state": out_seq_no,
            "nonce": nonce,
            "acr_values": self.channel.face_acr,
            "max_age": str(self.channel.max_age_seconds),
            "prompt": "login",
            "login_hint": subject,
            "claims": json.dumps({"id_token": wanted}, separators=(",", ":")),
            "code_challenge": base64.urlsafe_b64encode(challenge).rstrip(b"=").decode("ascii"),
            "code_challenge_method": "S256",
        }
        return StepUp(f"{metadata['authorization_endpoint']}?{urlencode(query)}", self.channel.name)

    def complete(
        self,
        *,
        out_seq_no: str,
        subject: str,
        name: str,
        id_number: str,
        state: object,
        code: object,
        error: object = None,
    ) -> str | None:
        """The verdict on the check ``out_seq_no`` from the app's redirect (``code`` and ``state``, or
        ``error``): None when it passed, else the failure code. ``ProviderUnavailable`` when the app
        could not be asked (nothing is to be recorded then)."""
        if not isinstance(state, str) or not hmac.compare_digest(state.encode(), out_seq_no.encode()):
            return "face_state_mismatch"
        if error is not None:
            # access_denied: the app's face check did not pass (or the user gave up): no reason given.
            return "face_failed"
        if not isinstance(code, str) or not 0 < len(code) <= 512:
            return "face_code_invalid"
        token = self._exchange(code, self.code_verifier(out_seq_no))
        if token is None:
            return "face_code_invalid"
        try:
            claims = self.verifier.verify_id_token(token)
        except IdTokenRefused as refused:
            return refused.code
        return face_claims_failure(
            self.channel,
            claims,
            nonce=self.nonce(out_seq_no),
            subject=subject,
            name=name,
            id_number=id_number,
            now=self._clock(),
        )

    def _exchange(self, code: str, verifier: str) -> str | None:
        """The ID token for ``code`` from the token endpoint; None when the app refuses the code."""
        endpoint = self.metadata()["token_endpoint"]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.settings.redirect_uri,
            "code_verifier": verifier,
        }
        try:
            r = self._http.post(
                endpoint,
                data=form,
                auth=(self.settings.audience, self.settings.client_secret),
                timeout=self._timeout,
            )
            body = r.json()
        except (requests.RequestException, ValueError):
            log.warning("%s token endpoint did not answer", self.channel.name)
            raise self.verifier.unavailable() from None
        if r.status_code == 400 and isinstance(body, dict) and body.get("error") == "invalid_grant":
            return None  # used, expired, or not issued for this verifier / redirect
        token = body.get("id_token") if isinstance(body, dict) and r.status_code == 200 else None
        if not isinstance(token, str):
            error = body.get("error") if isinstance(body, dict) else None
            log.error("%s token endpoint answered %s (%s)", self.channel.name, r.status_code, error)
            raise self.verifier.unavailable()
        return token

    # ------------------------------------------------------------------ messages

    def push(self, *, subject: str, kind: str, data: Mapping[str, str], page: str) -> None:
        """One message to the app's user ``subject`` through its push endpoint (``Push*`` errors)."""
        try:
            endpoint = self.metadata().get("message_push_endpoint")
        except ProviderUnavailable:
            raise PushUnavailable() from None
        if not isinstance(endpoint, str):
            raise PushUnavailable(message=f"{self.channel.label}未提供消息推送接口")
        body: dict[str, Any] = {"touser": subject, "template": kind, "page": page, "data": dict(data)}
        try:
            r = self._http.post(
                endpoint,
                json=body,
                auth=(self.settings.audience, self.settings.client_secret),
                timeout=self._timeout,
            )
        except requests.RequestException:
            raise PushUnavailable() from None
        if r.status_code == 200:
            return
        if r.status_code == 403:
            raise PushRefused(errcode=403)
        if r.status_code == 400:
            raise PushDataInvalid(errcode=400)
        raise PushUnavailable(errcode=r.status_code)
