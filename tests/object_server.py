"""A real S3 server for the tests, started by the tests themselves: moto's ``ThreadedMotoServer`` on loopback.

Each test gets a bucket of its own (``S3Bucket``) and the environment that points the service at it; a
test that needs the store to go away stops a server of its own (``S3Server.stop``) and starts it again on
the same port (moto keeps its objects in this process, so they are still there).
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from backend.object_store import S3Settings

ACCESS_KEY = "birthcert-test-access"
SECRET_KEY = "birthcert-test-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class S3Server:
    """moto's S3 over real HTTP on 127.0.0.1: start, stop, start again on the same port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedMotoServer | None = None

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def bucket(self) -> S3Bucket:
        """A new, empty bucket."""
        name = f"birthcert-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return S3Bucket(self, name)


@dataclass(frozen=True)
class S3Bucket:
    """One test's bucket: the service's settings and environment for it, and a raw look at what it holds."""

    server: S3Server
    name: str

    def settings(self, **more: Any) -> S3Settings:
        return S3Settings(
            endpoint_url=self.server.url,
            bucket=self.name,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            **more,
        )

    def environ(self) -> dict[str, str]:
        return {
            "BIRTHCERT_OBJECT_STORE_URL": self.server.url,
            "BIRTHCERT_OBJECT_STORE_BUCKET": self.name,
            "BIRTHCERT_OBJECT_STORE_ACCESS_KEY_ID": ACCESS_KEY,
            "BIRTHCERT_OBJECT_STORE_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def objects(self) -> dict[str, bytes]:
        """Every object in the bucket, by key, exactly as stored."""
        client = self.server.client()
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.name):
            for item in page.get("Contents", []):
                found[item["Key"]] = client.get_object(Bucket=self.name, Key=item["Key"])["Body"].read()
        return found

    def replace(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key`` behind the service's back (an intruder with the bucket's keys)."""
        self.server.client().put_object(Bucket=self.name, Key=key, Body=data)


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """A running server, stopped at the end."""
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()
