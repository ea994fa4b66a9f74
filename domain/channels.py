"""Where a parent acts from: WeChat, or a provincial government app (粤省事, 北京通, 健康山东, 冀时办).

A provincial app is a *channel*: an identity provider whose real-name accounts log in to our service and pass
its own face check (docs/decisions/0030-provincial-app-channels.md). What each one is — its name, province,
the prefix of its users' actor ids (``yss:<sub>``), its issuer, the ``acr`` of a face authentication and the
names of its ID-token claims — is data (``data/channels.json``), not code: one adapter speaks to all of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from types import MappingProxyType
from typing import Final

WECHAT: Final = "wechat"


@dataclass(frozen=True)
class Channel:
    """One provincial app as our adapter knows it (``data/channels.json``)."""

    name: str
    label: str
    province: str
    actor_prefix: str
    env: str
    issuer: str
    client_id: str
    face_acr: str
    max_age_seconds: int
    # Our name → the claim's name in its ID tokens: ``name`` and one of ``id_number`` (the number itself)
    # or ``id_number_hash`` (hex SHA-256 of the request's nonce followed by the number).
    claims: Mapping[str, str]

    def actor_id(self, subject: str) -> str:
        """The actor id of this channel's user ``subject``."""
        return f"{self.actor_prefix}:{subject}"

    def subject_of(self, actor_id: str) -> str:
        """The provider's subject of one of this channel's actor ids."""
        return actor_id.removeprefix(f"{self.actor_prefix}:")


def _load() -> Mapping[str, Channel]:
    data = json.loads(files("domain").joinpath("data", "channels.json").read_text(encoding="utf-8"))
    channels = {}
    for name, entry in data["channels"].items():
        claims = dict(entry["claims"])
        if "name" not in claims or len({"id_number", "id_number_hash"} & set(claims)) != 1:
            raise ValueError(f"channels.json: {name} must name a name claim and one ID-number claim")
        channels[name] = Channel(
            name=name,
            label=entry["label"],
            province=entry["province"],
            actor_prefix=entry["actor_prefix"],
            env=entry["env"],
            issuer=entry["issuer"],
            client_id=entry["client_id"],
            face_acr=entry["face_acr"],
            max_age_seconds=int(entry["max_age_seconds"]),
            claims=MappingProxyType(claims),
        )
    prefixes = [c.actor_prefix for c in channels.values()]
    if len(set(prefixes)) != len(prefixes):
        raise ValueError("channels.json: two channels share an actor prefix")
    return MappingProxyType(channels)


CHANNELS: Final = _load()
_BY_PREFIX: Final = {c.actor_prefix: c for c in CHANNELS.values()}


def channel_of(actor_id: str) -> Channel | None:
    """The provincial channel an actor id belongs to, or None for a WeChat user (an openid has no colon)."""
    prefix, colon, _ = actor_id.partition(":")
    return _BY_PREFIX.get(prefix) if colon else None


def channel_name_of(actor_id: str) -> str:
    """``wechat`` or the provincial channel's name."""
    channel = channel_of(actor_id)
    return WECHAT if channel is None else channel.name
