"""Production and development configurations (decision 0012), and the data directory's permissions.

``birthcert serve`` runs in production unless ``BIRTHCERT_ENV=development``: it refuses to start while a
credential is missing or is one of the fake platforms' public values, and does not serve the H5 simulator.
``birthcert dev`` stays on its development defaults and refuses ``BIRTHCERT_ENV=production``. Whatever
starts, the data directory ends up 0700 and the event store's and embedded Redis's files 0600.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from backend.app import create_app
from backend.cli import main
from backend.config import (
    DEVELOPMENT_VALUES,
    LIBRARY_VARIABLES,
    PRODUCTION,
    Config,
    ConfigError,
    ensure_dev_keys,
)
from backend.dev import dev_environ
from backend.ems import EmsSettings, InvalidSignature, sign_webhook, verify_webhook
from backend.working_days import ScheduleDirectory, schedule_dir
from domain.holiday_schedule import parse_schedule

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 90.0
# Credentials nobody knows (as far as these tests are concerned): a complete production configuration.
PRODUCTION_CREDENTIALS = {
    "WECHAT_APPID": "wx5e1ec7ed00c0ffee",
    "WECHAT_SECRET": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "WECHAT_MCH_ID": "1612345678",
    "WECHAT_PAY_KEY": "Qm9ndXMgYnV0IG5vdCBwdWJsaWMga2V5",
    "EMS_WEBHOOK_SECRET": "a-webhook-secret-shared-with-ems-only",
}
# The storage keys, given as production must give them (or as files made by `birthcert keys init`).
STORAGE_KEYS = {
    "CIPHER_KEY": "c3RvcmFnZS1rZXktZm9yLXRoZXNlLXRlc3RzLW9ubHk=",
    "BIRTHCERT_INDEX_KEY": "aW5kZXgta2V5LWZvci10aGVzZS10ZXN0cy1vbmx5ISE=",
}
# Nothing in these tests may talk to the real WeChat.
NOWHERE = {"WECHAT_API_BASE": "http://127.0.0.1:9", "WECHAT_PAY_BASE": "http://127.0.0.1:9"}
ALWAYS_REQUIRED = ("WECHAT_APPID", "WECHAT_SECRET", "WECHAT_MCH_ID", "WECHAT_PAY_KEY", "EMS_WEBHOOK_SECRET")


# Production refuses to start while the next 60 days reach a year without an official schedule
# (backend.working_days): the tests that start it load a schedule fixture (not the State Council's).
CALENDAR_FIXTURE = ROOT / "tests" / "data" / "calendar" / "fixture-2027.json"


def load_calendar_fixture(data_dir: Path) -> Path:
    """The test schedule for 2027, as ``birthcert calendar import`` stores it under ``data_dir``."""
    schedule = parse_schedule(json.loads(CALENDAR_FIXTURE.read_text(encoding="utf-8")))
    return ScheduleDirectory(schedule_dir(data_dir)).store(schedule)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def production(environ: Mapping[str, str], data_dir: Path) -> Config:
    """A configuration as ``birthcert serve`` reads it (with its storage keys, unless ``environ`` says)."""
    return Config.from_env({**STORAGE_KEYS, **environ}, data_dir=data_dir, default_environment=PRODUCTION)


def clean_environ(data_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any birthcert setting, plus ``BIRTHCERT_DATA_DIR`` and ``extra``."""
    prefixes = (
        "BIRTHCERT_",
        "CIPHER_",
        "COMPRESSOR_",
        "POSTGRES_",
        "WECHAT_",
        "EMS_",
        "POPULATION_",
        "YUESHENGSHI_",
        "REDIS_",
    )
    env = {k: v for k, v in os.environ.items() if k not in LIBRARY_VARIABLES and not k.startswith(prefixes)}
    return {**env, "BIRTHCERT_DATA_DIR": str(data_dir), **extra}


# ---------------------------------------------------------------- what production refuses


def test_serve_defaults_to_production_and_the_tools_to_development(tmp_path: Path) -> None:
    assert production({}, tmp_path).environment == "production"
    assert Config.from_env({}, data_dir=tmp_path).environment == "development"
    explicit = production({"BIRTHCERT_ENV": "Development"}, tmp_path)
    assert explicit.development and explicit.wechat.pay_key == DEVELOPMENT_VALUES["WECHAT_PAY_KEY"]
    with pytest.raises(
        ConfigError, match="BIRTHCERT_ENV must be 'development' or 'production', not 'staging'"
    ):
        Config.from_env({"BIRTHCERT_ENV": "staging"}, data_dir=tmp_path)


def test_production_falls_back_to_no_development_credential(tmp_path: Path) -> None:
    config = production({}, tmp_path)

    assert (config.wechat.appid, config.wechat.secret, config.wechat.mch_id, config.wechat.pay_key) == (
        "",
        "",
        "",
        "",
    )
    assert config.registry_key == ""
    assert config.production_problems() == [f"{name} is not set" for name in ALWAYS_REQUIRED]
    with pytest.raises(ConfigError) as refused:
        create_app(config)
    assert str(refused.value).startswith(
        "refusing to start in production: credentials missing or publicly known"
    )


@pytest.mark.parametrize("name", ALWAYS_REQUIRED)
def test_production_refuses_each_missing_credential(tmp_path: Path, name: str) -> None:
    environ = {**PRODUCTION_CREDENTIALS, **NOWHERE}
    del environ[name]

    with pytest.raises(ConfigError) as refused:
        create_app(production(environ, tmp_path))

    assert f"  - {name} is not set\n" in str(refused.value)
    assert str(refused.value).count("  - ") == 1


@pytest.mark.parametrize("name", sorted(DEVELOPMENT_VALUES))
def test_production_refuses_each_public_development_value_even_when_set(tmp_path: Path, name: str) -> None:
    environ = {
        **PRODUCTION_CREDENTIALS,
        **NOWHERE,
        "POPULATION_REGISTRY_URL": "https://registry.example.cn",
        "POPULATION_REGISTRY_KEY": "a-registry-key-of-our-own",
        "EMS_API_BASE": "https://ems.example.cn/api",
        "EMS_API_KEY": "an-ems-key-of-our-own",
        name: DEVELOPMENT_VALUES[name],
    }

    with pytest.raises(ConfigError) as refused:
        create_app(production(environ, tmp_path))

    assert f"  - {name} is the public development value of the fake platform\n" in str(refused.value)
    assert str(refused.value).count("  - ") == 1
    assert DEVELOPMENT_VALUES[name] not in str(refused.value)


def test_the_registry_and_ems_keys_are_needed_once_their_urls_are_set(tmp_path: Path) -> None:
    environ = {
        **PRODUCTION_CREDENTIALS,
        "POPULATION_REGISTRY_URL": "https://registry.example.cn",
        "EMS_API_BASE": "https://ems.example.cn/api",
    }

    assert production(environ, tmp_path).production_problems() == [
        "POPULATION_REGISTRY_KEY is not set (needed because POPULATION_REGISTRY_URL is set)",
        "EMS_API_KEY is not set (needed because EMS_API_BASE is set)",
    ]
    assert production(PRODUCTION_CREDENTIALS, tmp_path).production_problems() == []


def test_ems_settings_outside_development_have_no_fallback_and_the_webhook_no_empty_secret() -> None:
    settings = EmsSettings.from_env({}, development=False)
    assert (settings.api_base, settings.api_key, settings.webhook_secret) == ("", "", b"")
    body = b'{"status": "lost"}'
    # HMAC under the empty key is something anyone can compute: refused all the same.
    with pytest.raises(InvalidSignature):
        verify_webhook(body, sign_webhook(body, b""), b"")


def serve_environ(data_dir: Path, **extra: str) -> dict[str, str]:
    return clean_environ(data_dir, **NOWHERE, **STORAGE_KEYS, **extra)


def test_production_makes_no_storage_key_of_its_own(tmp_path: Path) -> None:
    config = Config.from_env(PRODUCTION_CREDENTIALS, data_dir=tmp_path, default_environment=PRODUCTION)
    problems = config.production_problems()
    assert [p.split(" is not set")[0] for p in problems] == ["CIPHER_KEY", "BIRTHCERT_INDEX_KEY"]
    assert all("birthcert keys init" in p for p in problems)
    assert not (tmp_path / "keys").exists() or not any((tmp_path / "keys").iterdir())  # nothing written
    with pytest.raises(ConfigError):
        create_app(config)
    # Keys made on purpose (and backed up) by the operator, as `birthcert keys init` makes them, are used.
    ensure_dev_keys(tmp_path)
    again = Config.from_env(PRODUCTION_CREDENTIALS, data_dir=tmp_path, default_environment=PRODUCTION)
    assert again.production_problems() == []


async def serve_until_it_exits(env: Mapping[str, str]) -> tuple[int | None, str, str]:
    """``birthcert serve`` on a free port with ``env``: its exit status, standard output and error."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backend.cli",
        "serve",
        "--port",
        str(free_port()),
        cwd=ROOT,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, [f"{name} is not set" for name in ALWAYS_REQUIRED]),
        (
            {
                **DEVELOPMENT_VALUES,
                "POPULATION_REGISTRY_URL": "https://registry.example.cn",
                "EMS_API_BASE": "https://ems.example.cn/api",
            },
            [f"{name} is the public development value of the fake platform" for name in DEVELOPMENT_VALUES],
        ),
    ],
    ids=["unset", "public-development-values"],
)
async def test_birthcert_serve_refuses_to_start_and_names_each_credential(
    tmp_path: Path, extra: dict[str, str], expected: list[str]
) -> None:
    returncode, stdout, stderr = await serve_until_it_exits(serve_environ(tmp_path / "var", **extra))

    assert returncode == 2, stderr
    assert "birthcert: configuration error: refusing to start in production" in stderr
    for problem in expected:
        assert f"  - {problem}\n" in stderr
    assert stderr.count("  - ") == len(expected)
    assert "listening" not in stdout
    for value in extra.values():
        assert value not in stderr or value.startswith("https://")


# ---------------------------------------------------------------- birthcert dev stays development


def test_dev_environ_is_development_and_refuses_production() -> None:
    env = dev_environ({}, "http://127.0.0.1:8765", "http://127.0.0.1:8080")
    assert env["BIRTHCERT_ENV"] == "development"

    with pytest.raises(ConfigError, match="birthcert dev is for development only"):
        dev_environ({"BIRTHCERT_ENV": "production"}, "http://127.0.0.1:8765", "http://127.0.0.1:8080")


def test_birthcert_dev_refuses_production_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BIRTHCERT_ENV", "production")

    assert main(["dev", "--port", str(free_port()), "--stub-port", str(free_port())]) == 2
    assert "birthcert dev is for development only" in capsys.readouterr().err


@asynccontextmanager
async def running(args: list[str], env: dict[str, str], until: str, log: Path) -> AsyncIterator[list[str]]:
    """``birthcert ARGS`` in its own process until it prints ``until``; SIGTERM afterwards (exit 0 expected)."""
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "backend.cli",
            *args,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(DEADLINE):
                while not any(until in line for line in lines):
                    line = (await proc.stdout.readline()).decode()
                    assert line, f"exited ({await proc.wait()}) before {until!r}: {log.read_text()[-3000:]}"
                    lines.append(line)
            yield lines
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                async with asyncio.timeout(DEADLINE):
                    await proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]


async def status_of(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False) as response:
        return response.status


@pytest.mark.e2e
async def test_birthcert_dev_starts_and_serves_the_h5_simulator(tmp_path: Path) -> None:
    port, stub_port = free_port(), free_port()
    api = f"http://127.0.0.1:{port}"
    env = clean_environ(tmp_path / "var")

    args = ["dev", "--port", str(port), "--stub-port", str(stub_port)]
    async with running(args, env, "Next:", tmp_path / "dev.log") as lines:
        assert lines[0].startswith(f"birthcert listening on {api}")
        assert any(f"{api}/h5/?platform=http://127.0.0.1:{stub_port}" in line for line in lines)
        assert await status_of(f"{api}/h5/") == 200
        assert await status_of(f"{api}/healthz") == 200


@pytest.mark.e2e
async def test_birthcert_serve_starts_in_production_without_the_simulator_and_private_files(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = serve_environ(data_dir, **PRODUCTION_CREDENTIALS)
    load_calendar_fixture(data_dir)

    async with running(["serve", "--port", str(port)], env, "Press Ctrl+C", tmp_path / "serve.log") as lines:
        assert lines[0].strip() == f"birthcert listening on {api}  (production)"
        assert not any("WARNING" in line for line in lines)
        assert await status_of(f"{api}/healthz") == 200
        assert await status_of(f"{api}/readyz") == 200
        for path in ("/h5/", "/h5", "/h5/h5.js"):
            assert await status_of(api + path) == 404
        assert {p.name for p in data_dir.iterdir()} >= {"events.sqlite", "events.sqlite-wal", "redis"}
        assert_private(data_dir)

    assert_private(data_dir)
    assert "restricting it to 0700" in (tmp_path / "serve.log").read_text()


def assert_private(data_dir: Path) -> None:
    """Every directory under ``data_dir`` (and itself) 0700, every file 0600."""
    assert mode(data_dir) == 0o700
    for path in data_dir.rglob("*"):
        if path.is_dir():
            assert mode(path) == 0o700, path
        elif path.is_file():
            assert mode(path) == 0o600, path


# ---------------------------------------------------------------- create_app in each environment


async def test_the_h5_simulator_is_served_in_development_only_the_verify_page_everywhere(
    tmp_path: Path, redis_url: str
) -> None:
    development = Config.from_env({"REDIS_URL": redis_url, **NOWHERE}, data_dir=tmp_path / "dev")
    prod = production({"REDIS_URL": redis_url, **NOWHERE, **PRODUCTION_CREDENTIALS}, tmp_path / "prod")
    load_calendar_fixture(tmp_path / "prod")

    async with TestClient(TestServer(create_app(development))) as client:
        assert (await client.get("/h5/")).status == 200
        assert (await client.get("/h5/h5.js")).status == 200
    async with TestClient(TestServer(create_app(prod))) as client:
        assert (await client.get("/healthz")).status == 200
        for path in ("/h5/", "/h5", "/h5/index.html", "/h5/h5.js", "/h5/?platform=https://evil.example"):
            answer = await client.get(path, allow_redirects=False)
            assert answer.status == 404, path
            assert "evil.example" not in answer.headers.get("Content-Security-Policy", "")
        for path in ("/verify/", "/verify/verify.js"):  # the public verify page (decision 0041)
            assert (await client.get(path)).status == 200, path


async def test_a_start_makes_the_data_dir_0700_and_the_store_and_redis_files_0600(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "var"
    config = Config.from_env({**NOWHERE}, data_dir=data_dir)
    async with TestClient(TestServer(create_app(config))) as client:
        assert (await client.get("/readyz")).status == 200
        assert (data_dir / "events.sqlite-wal").exists() and (data_dir / "redis" / "appendonly.aof").exists()
        assert_private(data_dir)
    assert_private(data_dir)

    # What an earlier version left open to others is restricted at the next start, and said so.
    data_dir.chmod(0o755)
    loose = [
        data_dir / "events.sqlite",
        data_dir / "redis" / "appendonly.aof",
        data_dir / "redis" / "redis.db",
    ]
    for path in loose:
        if path.exists():
            path.chmod(0o644)
    caplog.set_level(logging.WARNING, logger="backend.config")
    async with TestClient(TestServer(create_app(Config.from_env({**NOWHERE}, data_dir=data_dir)))) as client:
        assert (await client.get("/readyz")).status == 200
        assert_private(data_dir)
    assert_private(data_dir)
    assert f"directory {data_dir} was open to others (mode 755); restricting it to 0700" in caplog.text
    assert f"file {data_dir / 'events.sqlite'} was open to others (mode 644)" in caplog.text


OBJECT_STORE = {
    "BIRTHCERT_OBJECT_STORE_URL": "https://oss.example.gov.cn/",
    "BIRTHCERT_OBJECT_STORE_BUCKET": "birthcert-gd",
    "BIRTHCERT_OBJECT_STORE_PREFIX": "/province/",
}


def complete(environ: Mapping[str, str], tmp_path: Path) -> Config:
    """A complete production configuration, plus ``environ``."""
    return production({**PRODUCTION_CREDENTIALS, **environ}, tmp_path)


@pytest.mark.parametrize(
    ("key_id", "secret", "named"),
    [
        (None, None, "BIRTHCERT_OBJECT_STORE_ACCESS_KEY_ID is not set"),
        ("minioadmin", "minioadmin", "BIRTHCERT_OBJECT_STORE_SECRET_ACCESS_KEY is a publicly known"),
        ("AKIAIOSFODNN7EXAMPLE", "a-real-secret", "BIRTHCERT_OBJECT_STORE_ACCESS_KEY_ID is a publicly known"),
    ],
)
def test_production_refuses_an_object_store_without_credentials_of_its_own(
    tmp_path: Path, key_id: str | None, secret: str | None, named: str
) -> None:
    given = {
        name: value
        for name, value in (
            ("BIRTHCERT_OBJECT_STORE_ACCESS_KEY_ID", key_id),
            ("BIRTHCERT_OBJECT_STORE_SECRET_ACCESS_KEY", secret),
        )
        if value is not None
    }
    config = complete({**OBJECT_STORE, **given}, tmp_path)
    assert any(named in problem for problem in config.production_problems())
    with pytest.raises(ConfigError):
        config.check_production()
    # The same store in development (a MinIO on a laptop) is fine.
    Config.from_env({**OBJECT_STORE, **given}, data_dir=tmp_path).check_production()


def test_an_object_store_is_read_from_the_environment(tmp_path: Path) -> None:
    secret = "a-secret-nobody-else-knows"
    config = complete(
        {
            **OBJECT_STORE,
            "BIRTHCERT_OBJECT_STORE_ACCESS_KEY_ID": "birthcert-gd-writer",
            "BIRTHCERT_OBJECT_STORE_SECRET_ACCESS_KEY": secret,
        },
        tmp_path,
    )
    store = config.object_store
    assert store is not None and config.production_problems() == []
    assert (store.endpoint_url, store.bucket, store.prefix) == (
        "https://oss.example.gov.cn",
        "birthcert-gd",
        "province/",
    )
    assert secret not in repr(store) and secret not in repr(config)
    assert complete({}, tmp_path).object_store is None  # unset: the data directory
    with pytest.raises(ConfigError, match="BUCKET"):
        complete({"BIRTHCERT_OBJECT_STORE_URL": "https://oss.example.gov.cn"}, tmp_path)
    with pytest.raises(ConfigError, match="http"):
        complete({**OBJECT_STORE, "BIRTHCERT_OBJECT_STORE_URL": "oss.example.gov.cn"}, tmp_path)


def test_a_configured_provincial_app_needs_its_own_client_secret_in_production(tmp_path: Path) -> None:
    jwks = {"BEIJINGTONG_JWKS_URL": "https://bjt.example/jwks.json"}
    assert production({**PRODUCTION_CREDENTIALS, **jwks}, tmp_path).production_problems() == [
        "BEIJINGTONG_CLIENT_SECRET is not set (needed because BEIJINGTONG_JWKS_URL is set)"
    ]
    public = {**PRODUCTION_CREDENTIALS, **jwks, "BEIJINGTONG_CLIENT_SECRET": "dev-beijingtong-secret"}
    assert production(public, tmp_path).production_problems() == [
        "BEIJINGTONG_CLIENT_SECRET is the public development value of the fake platform"
    ]
    secret = {**PRODUCTION_CREDENTIALS, **jwks, "BEIJINGTONG_CLIENT_SECRET": "s3cr3t-from-bjt"}
    config = production(secret, tmp_path)
    assert config.production_problems() == []
    channel = config.channels["beijingtong"]
    assert (channel.issuer, channel.audience) == ("https://bjt.beijing.gov.cn", "birthcert")
    assert channel.discovery_url == "https://bjt.beijing.gov.cn/.well-known/openid-configuration"
    assert "s3cr3t" not in repr(config) and "s3cr3t" not in repr(channel)
