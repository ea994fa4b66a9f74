"""Config from the environment: key files, precedence, secrecy, the event store it describes."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.cryptography import AESCipher
from eventsourcing.domain import Aggregate, event

from backend.config import Config, ConfigError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_dev_keys_are_created_private_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    first = Config.from_env({}, data_dir=data_dir)

    cipher_file, index_file = data_dir / "keys" / "cipher.key", data_dir / "keys" / "index.key"
    assert mode(cipher_file) == 0o600
    assert mode(index_file) == 0o600
    assert mode(data_dir / "keys") == 0o700
    assert mode(data_dir) == 0o700
    assert len(base64.b64decode(cipher_file.read_text())) == 32
    assert len(first.index_key) == 32

    second = Config.from_env({}, data_dir=data_dir)
    assert second.cipher_key == first.cipher_key
    assert second.index_key == first.index_key


def test_data_dir_comes_from_the_environment(tmp_path: Path) -> None:
    config = Config.from_env({"BIRTHCERT_DATA_DIR": str(tmp_path / "data")})

    assert config.data_dir == tmp_path / "data"
    assert config.event_store_env()["SQLITE_DBNAME"] == str(tmp_path / "data" / "events.sqlite")


def test_keys_from_the_environment_win_and_no_files_are_written(tmp_path: Path) -> None:
    cipher_key = AESCipher.create_key(32)
    index_key = base64.b64encode(b"i" * 32).decode()

    config = Config.from_env(
        {"CIPHER_KEY": cipher_key, "BIRTHCERT_INDEX_KEY": index_key, "SQLITE_DBNAME": ":memory:"},
        data_dir=tmp_path / "var",
    )

    assert config.cipher_key == cipher_key
    assert config.index_key == b"i" * 32
    assert config.event_store_env()["CIPHER_KEY"] == cipher_key
    assert not (tmp_path / "var").exists()


def test_an_environment_key_wins_over_an_existing_file(tmp_path: Path) -> None:
    Config.from_env({}, data_dir=tmp_path)
    cipher_key = AESCipher.create_key(32)

    assert Config.from_env({"CIPHER_KEY": cipher_key}, data_dir=tmp_path).cipher_key == cipher_key


def test_a_loose_key_file_is_restricted(tmp_path: Path) -> None:
    Config.from_env({}, data_dir=tmp_path)
    (tmp_path / "keys" / "cipher.key").chmod(0o644)

    Config.from_env({}, data_dir=tmp_path)

    assert mode(tmp_path / "keys" / "cipher.key") == 0o600


def test_repr_shows_no_key_or_password(tmp_path: Path) -> None:
    config = Config.from_env(
        {"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_PASSWORD": "s3cret-pw"}, data_dir=tmp_path
    )
    index_b64 = base64.b64encode(config.index_key).decode()

    for text in (repr(config), str(config), f"{config}"):
        assert config.cipher_key not in text
        assert index_b64 not in text
        assert repr(config.index_key) not in text
        assert "s3cret-pw" not in text


@pytest.mark.parametrize(
    ("bad_env", "name"),
    [
        ({"CIPHER_KEY": "not base64!"}, "CIPHER_KEY"),
        ({"CIPHER_KEY": base64.b64encode(b"short").decode()}, "CIPHER_KEY"),
        ({"BIRTHCERT_INDEX_KEY": base64.b64encode(b"x" * 16).decode()}, "BIRTHCERT_INDEX_KEY"),
        ({"BIRTHCERT_PORT": "eighty"}, "BIRTHCERT_PORT"),
    ],
)
def test_bad_values_are_refused_without_echoing_keys(
    tmp_path: Path, bad_env: dict[str, str], name: str
) -> None:
    with pytest.raises(ConfigError, match=name) as raised:
        Config.from_env(bad_env, data_dir=tmp_path)
    if "KEY" in name:
        assert bad_env[name] not in str(raised.value)


def test_postgres_variables_pass_through_unchanged(tmp_path: Path) -> None:
    environ = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": "birthcert",
        "POSTGRES_HOST": "db.internal",
        "POSTGRES_PORT": "6432",
        "POSTGRES_USER": "bc",
        "POSTGRES_PASSWORD": "pw",
        "POSTGRES_POOL_SIZE": "4",
        "POSTGRES_SCHEMA": "birthcert",
        "POSTGRES_LOCK_TIMEOUT": "5",
        "CREATE_TABLE": "n",
        "UNRELATED": "ignored",
    }

    config = Config.from_env(environ, data_dir=tmp_path)
    env = config.event_store_env()

    assert not config.uses_sqlite
    for name, value in environ.items():
        if name != "UNRELATED":
            assert env[name] == value
    assert "UNRELATED" not in env
    assert "SQLITE_DBNAME" not in env


def test_defaults(tmp_path: Path) -> None:
    config = Config.from_env({}, data_dir=tmp_path)
    env = config.event_store_env()

    assert (config.host, config.port) == ("127.0.0.1", 8080)
    assert (config.province, config.snapshot_interval) == ("GD", 50)
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
    assert env["SQLITE_DBNAME"] == str(tmp_path / "events.sqlite")
    assert env["CIPHER_TOPIC"] == "eventsourcing.cryptography:AESCipher"
    assert env["COMPRESSOR_TOPIC"] == "eventsourcing.compressor:ZlibCompressor"
    assert env["BIRTHCERT_SNAPSHOT_INTERVAL"] == "50"


class Note(Aggregate):
    def __init__(self, text: str) -> None:
        self.text = text

    @event("Edited")
    def edit(self, text: str) -> None:
        self.text = text


def test_the_event_store_env_stores_events_encrypted(store_env: dict[str, str]) -> None:
    # Another application than ours, so other tables than `birthcert db migrate` made: let it make them.
    app: Application[UUID] = Application(env={**store_env, "CREATE_TABLE": "y"})
    try:
        note = Note("张三 110101202401010015")
        note.edit("李四")
        app.save(note)

        assert app.repository.get(note.id).text == "李四"
        stored = app.recorder.select_events(note.id)
        assert len(stored) == 2
        for record in stored:
            assert "张三".encode() not in record.state
            assert b"110101202401010015" not in record.state
    finally:
        app.close()
