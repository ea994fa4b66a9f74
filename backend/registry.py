"""The population registry (公安人口信息) adapter: a verified parent's ethnicity and address from police data.

Guangdong prefills these instead of having them typed (domain.md); the parent sees and confirms them.
The registry's protocol is ours to define behind this adapter (a JSON lookup with an API key); the
fake in ``miniprogram_stub`` speaks it. Answers are personal data: returned to their owner only, never
logged or cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from backend.errors import ServiceUnavailable

TIMEOUT = aiohttp.ClientTimeout(total=5)


@dataclass(frozen=True)
class RegistryEntry:
    """What the registry knows of a person."""

    ethnicity: str
    address: str


@dataclass(frozen=True)
class PopulationRegistry:
    """Looks people up by resident ID number and name."""

    base_url: str
    api_key: str

    async def lookup(
        self, session: aiohttp.ClientSession, *, id_number: str, name: str
    ) -> RegistryEntry | None:
        """The entry, or None when the registry does not know this person."""
        try:
            async with session.post(
                f"{self.base_url}/v1/persons/lookup",
                json={"id_number": id_number, "name": name},
                headers={"X-Api-Key": self.api_key},
                timeout=TIMEOUT,
            ) as r:
                if r.status == 404:
                    return None
                if r.status != 200:
                    raise ServiceUnavailable(
                        "公安人口信息暂时无法查询，请手动填写", code="registry_unavailable"
                    )
                body = await r.json()
        except (aiohttp.ClientError, TimeoutError):
            raise ServiceUnavailable(
                "公安人口信息暂时无法查询，请手动填写", code="registry_unavailable"
            ) from None
        return RegistryEntry(ethnicity=str(body["ethnicity"]), address=str(body["address"]))
