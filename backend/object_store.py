"""Where sealed bytes are kept: a local directory (the embedded default) or an S3-compatible object store.

One small interface, two backends, so that the blob store and the form archive do not care which: every
host of a deployment reaches the same S3 bucket, while a single host keeps its files under the data
directory. Only sealed bytes (AES-256-GCM, ``backend.storage`` and ``projections.archive``) are ever handed
to a backend: the object store never sees plaintext. Synchronous (blocking I/O): call it from a thread.

A backend that cannot be reached raises ``ObjectStoreUnavailable`` (answered 503 with Retry-After,
``backend.errors``). After one such failure the S3 backend refuses at once for ``pause_seconds`` rather
than let every caller wait out its own timeouts (an upload holds the store thread while it writes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import botocore.exceptions

log = logging.getLogger(__name__)

T = TypeVar("T")
# Keys are ours (hex digests, uuids, a few fixed words): nothing else ever becomes a path or an S3 key.
_KEY = re.compile(r"[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*")
PAUSE_SECONDS = 5.0


class ObjectNotFound(Exception):
    """Nothing is stored under that key."""


class ObjectStoreUnavailable(Exception):
    """The object store did not answer usefully (down, timing out, refusing): try again later."""


class ObjectStore(Protocol):
    """Bytes under keys such as ``ab/cd/<sha256>``: written whole or not at all, read back whole."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (replacing what was there), durably before returning."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; ``ObjectNotFound`` when there are none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether anything is stored under ``key``."""
        ...


def checked_key(key: str) -> str:
    """``key`` if it is one of ours (lower-case words and slashes, no ``..``), else ``ValueError``."""
    if not _KEY.fullmatch(key) or ".." in key:
        raise ValueError(f"not an object key: {key!r}")
    return key


class LocalObjects:
    """Files under ``root`` (dirs 0700, files 0600), each written to a temporary file, fsynced and renamed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalObjects({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """The file that holds ``key``."""
        return self.root / checked_key(key)

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` atomically: a reader sees no file or the whole file, never a part."""
        path = self.path(key)
        self._ensure_dirs(path.parent)
        # mkstemp creates the file 0600.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        # Make the rename itself durable.
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, key: str) -> bytes:
        """The file's bytes; ``ObjectNotFound`` when it does not exist."""
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self.path(key).is_file()

    def _ensure_dirs(self, directory: Path) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        missing = [d for d in (directory, *directory.parents) if d != self.root and self.root in d.parents]
        for d in reversed(missing):
            d.mkdir(mode=0o700, exist_ok=True)


@dataclass(frozen=True)
class S3Settings:
    """An S3-compatible object store: endpoint, bucket, an optional key prefix, region and credentials."""

    endpoint_url: str | None
    bucket: str
    prefix: str = ""
    region: str = "us-east-1"
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)
    # Path-style addressing (``endpoint/bucket/key``): what MinIO and most on-premises stores want.
    path_style: bool = True
    connect_timeout: float = 2.0
    read_timeout: float = 10.0
    max_attempts: int = 2
    pause_seconds: float = PAUSE_SECONDS

    def client(self) -> Any:
        """A boto3 S3 client for these settings (thread-safe; one per process is enough)."""
        import boto3  # only where an object store is configured: the import takes ~0.15 s
        import botocore.config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url or None,
            region_name=self.region,
            aws_access_key_id=self.access_key_id or None,
            aws_secret_access_key=self.secret_access_key or None,
            config=botocore.config.Config(
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                retries={"max_attempts": self.max_attempts, "mode": "standard"},
                s3={"addressing_style": "path" if self.path_style else "auto"},
                # Checksums of what we send and read back, where the store supports them.
                request_checksum_calculation="when_supported",
                response_checksum_validation="when_supported",
            ),
        )


class S3Objects:
    """Objects in an S3 bucket under ``prefix``: ``ObjectStoreUnavailable`` whenever it does not answer."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        pause_seconds: float = PAUSE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.pause_seconds = pause_seconds
        self._clock = clock
        self._failed_at: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: S3Settings, namespace: str, client: Any | None = None) -> S3Objects:
        """The objects of one ``namespace`` (``blobs``, ``archive``) in the configured bucket."""
        return cls(
            client or settings.client(),
            settings.bucket,
            f"{settings.prefix}{namespace}/",
            pause_seconds=settings.pause_seconds,
        )

    def __repr__(self) -> str:
        return f"S3Objects(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def put(self, key: str, data: bytes) -> None:
        """One PUT (S3 writes an object whole or not at all, and acknowledges it once durable)."""
        name = self.prefix + checked_key(key)
        self._call(lambda: self.client.put_object(Bucket=self.bucket, Key=name, Body=data))

    def get(self, key: str) -> bytes:
        """One GET of the whole object."""
        name = self.prefix + checked_key(key)

        def read() -> bytes:
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
            with contextlib.closing(body):
                data: bytes = body.read()
            return data

        return self._call(read, key)

    def exists(self, key: str) -> bool:
        """One HEAD."""
        name = self.prefix + checked_key(key)
        try:
            self._call(lambda: self.client.head_object(Bucket=self.bucket, Key=name), key)
        except ObjectNotFound:
            return False
        return True

    def reachable(self) -> bool:
        """Whether the bucket answers now: one HEAD of the bucket (False at once during the pause after a
        failure, without asking)."""
        try:
            self._call(lambda: self.client.head_bucket(Bucket=self.bucket))
        except (ObjectStoreUnavailable, ObjectNotFound):  # away, or the bucket is gone
            return False
        return True

    def _call(self, request: Callable[[], T], key: str = "") -> T:
        with self._lock:
            failed_at = self._failed_at
        if failed_at is not None and self._clock() - failed_at < self.pause_seconds:
            raise ObjectStoreUnavailable("the object store failed moments ago")
        try:
            result = request()
        except botocore.exceptions.ClientError as error:
            response: dict[str, Any] = error.response
            code = str(response.get("Error", {}).get("Code", ""))
            status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in ("NoSuchKey", "404", "NotFound") or (status == 404 and code != "NoSuchBucket"):
                raise ObjectNotFound(key) from None
            self._failed(code or str(status))
            raise ObjectStoreUnavailable(f"the object store answered {code or status}") from None
        except (botocore.exceptions.BotoCoreError, OSError) as error:
            self._failed(type(error).__name__)
            raise ObjectStoreUnavailable(
                f"the object store did not answer ({type(error).__name__})"
            ) from None
        with self._lock:
            self._failed_at = None
        return result

    def _failed(self, what: str) -> None:
        log.warning("object store unavailable", extra={"error": what, "bucket": self.bucket})
        with self._lock:
            self._failed_at = self._clock()


def open_objects(settings: S3Settings | None, namespace: str, local: Path | None) -> ObjectStore | None:
    """The composition root's choice: ``namespace`` in the configured bucket, else the directory ``local``
    (None when there is neither: the caller keeps its bytes elsewhere). Blocking (imports boto3)."""
    if settings is not None:
        return S3Objects.from_settings(settings, checked_key(namespace))
    return None if local is None else LocalObjects(local)


__all__ = [
    "LocalObjects",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreUnavailable",
    "S3Objects",
    "S3Settings",
    "checked_key",
    "open_objects",
]
