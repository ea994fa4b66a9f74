"""What every Redis-backed view and process shares: reading its position, and forgetting its keys."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from uuid import UUID

import redis.asyncio as aioredis

_BATCH = 500


async def stored_position(redis: aioredis.Redis, key: str) -> int:
    """The position recorded at ``key`` (0 before any)."""
    raw = await redis.get(key)
    return 0 if raw is None else int(raw)


async def delete_prefix(redis: aioredis.Redis, prefix: str, *, position_key: str | None = None) -> None:
    """Delete every key under ``prefix`` in batches, and ``position_key`` last.

    The position goes last so that a follower racing a reset can only redo pages, never skip one.
    """
    keep: Collection[str] = () if position_key is None else (position_key,)
    batch: list[bytes | str] = []
    async for key in redis.scan_iter(match=f"{prefix}*", count=_BATCH):
        name = key.decode() if isinstance(key, bytes) else key
        if name in keep:
            continue
        batch.append(key)
        if len(batch) >= _BATCH:
            await redis.delete(*batch)
            batch = []
    if batch:
        await redis.delete(*batch)
    if position_key is not None:
        await redis.delete(position_key)


def applications_touched(page: Sequence[tuple[int, object]], position: int) -> dict[UUID, int] | None:
    """The applications a page touched, each at the version of its last event there; None when the page
    is not beyond ``position`` (already applied, here or by another follower)."""
    from domain.application import BirthCertificateApplication

    if not page or page[-1][0] <= position:
        return None
    last_version: dict[UUID, int] = {}
    for _, event in page:
        # Delivery-record and index events make no document; a correction reaches a linked
        # application as its own DeliveryRecordRefreshed event.
        if isinstance(event, BirthCertificateApplication.Event):
            last_version[UUID(str(event.originator_id))] = event.originator_version
    return last_version
