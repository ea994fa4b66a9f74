"""Commands per second on a SQLite file: the stock library's own rate, ours, and whole journeys.

All three use the event-store settings the service uses (``Config.event_store_env()``: SQLite in WAL
mode, AES-GCM cipher, zlib compressor), each on its own fresh file in a temporary directory.

* ``baseline``: a minimal stock ``Aggregate`` with one ``@event`` method in a plain ``Application``;
  one command = ``repository.get`` + the method + ``save`` on aggregates of 6, 7 and 8 events (each
  prepared aggregate takes three commands, round-robin over a batch, as in the notes' measurement).
* ``provide_details``: ``Applications.provide_details`` (the parent's PUT /details) on applications of
  6, 7 and 8 events, the same way: load, check who acts, command, one ``save``.
* ``journey``: one family from the hospital's delivery record to a submitted application through
  ``tests.builders.Walk`` (15 commands and a query), in applications submitted per second.

Preparing aggregates is not timed (``bench.common.run_batches``).
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.cryptography import AESCipher
from eventsourcing.domain import Aggregate, event

from backend.config import Config
from bench.common import Rate, Settings, run_batches
from domain.application import ParentDetails
from domain.service import Applications
from domain.values import Actor, PersonName
from tests.builders import NOW, Walk, father_details, make_id_number, mother_details

COMMANDS_PER_AGGREGATE = 3  # each prepared aggregate is loaded at 6, 7 and 8 events
BASELINE_BATCH = 100  # aggregates prepared at a time
OURS_BATCH = 20
JOURNEY_COMMANDS = (
    15  # record_delivery, start, 2 face checks × 2, confirm, details, 4 uploads, sign, choose, submit
)


class Dog(Aggregate):
    """The library's own example aggregate: created, then one kind of change."""

    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        self.tricks.append(trick)


def store_env(directory: Path) -> dict[str, str]:
    """The service's own event-store settings, on a fresh SQLite file and fresh keys in ``directory``."""
    environ = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(directory / "events.sqlite"),
        "CIPHER_KEY": AESCipher.create_key(32),
        "BIRTHCERT_INDEX_KEY": AESCipher.create_key(32),
    }
    return Config.from_env(environ, data_dir=directory).event_store_env()


class Families:
    """Walks for invented families with unique ID numbers, inpatient numbers and openids."""

    def __init__(self, app: Applications) -> None:
        self.app = app
        self.counter = itertools.count()

    def walk(self) -> Walk:
        n = next(self.counter)
        born = (date(1988, 1, 1) + timedelta(days=n // 499)).strftime("%Y%m%d")
        seq = 2 * (n % 499) + 2  # even: a woman's sequence number; +1 (odd) for the father
        walk = Walk(
            self.app,
            mother_id=make_id_number("440106", born, f"{seq:03d}"),
            father_id=make_id_number("440104", born, f"{seq + 1:03d}"),
            parent=Actor(id=f"oBench{n:07d}", role="parent"),
        )
        walk.record_delivery(inpatient_no=f"ZYB{n:08d}")
        return walk


class CommandBench:
    """The three stores, opened once and measured round after round."""

    def __init__(self, directory: Path) -> None:
        (directory / "baseline").mkdir()
        (directory / "ours").mkdir()
        (directory / "journey").mkdir()
        self.baseline: Application[UUID] = Application(store_env(directory / "baseline"))
        self.ours = Applications(store_env(directory / "ours"), clock=lambda: NOW)
        self.journeys = Applications(store_env(directory / "journey"), clock=lambda: NOW)
        self.families = Families(self.ours)
        self.journey_families = Families(self.journeys)
        self.newborn = PersonName("张小花")
        self.mother = mother_details()
        self.baseline_loads: list[int] = []
        self.ours_loads: list[int] = []

    def close(self) -> None:
        for app in (self.baseline, self.ours, self.journeys):
            app.close()

    # ------------------------------------------------------------------ baseline

    def _baseline_batch(self) -> Iterator[Callable[[], Any]]:
        app = self.baseline
        ids: list[UUID] = []
        for i in range(BASELINE_BATCH):
            dog = Dog(f"dog-{i}")
            for trick in ("roll", "sit", "stay", "fetch", "beg"):
                dog.add_trick(trick)  # 6 events
            app.save(dog)
            ids.append(dog.id)

        def command(dog_id: UUID) -> None:
            dog: Dog = app.repository.get(dog_id)
            self.baseline_loads.append(dog.version)
            dog.add_trick("play dead")
            app.save(dog)

        for _ in range(COMMANDS_PER_AGGREGATE):
            for dog_id in ids:
                yield partial(command, dog_id)

    def baseline_rate(self, seconds: float) -> Rate:
        rate = run_batches(seconds, lambda: list(self._baseline_batch()))
        return _with_loads(rate, self.baseline_loads)

    # ------------------------------------------------------------------ ours: one command

    def _ours_batch(self) -> Iterator[Callable[[], Any]]:
        walks: list[tuple[Walk, ParentDetails]] = []
        for _ in range(OURS_BATCH):
            walk = self.families.walk()
            walk.start()
            walk.verify("mother")
            walk.confirm()
            walk.details()  # 6 events
            walks.append((walk, father_details(walk.father_id or "")))

        def command(walk: Walk, father: ParentDetails) -> None:
            out = self.ours.provide_details(
                walk.parent, walk.id, newborn_name=self.newborn, mother=self.mother, father=father
            )
            self.ours_loads.append(out.version - 1)

        for _ in range(COMMANDS_PER_AGGREGATE):
            for walk, father in walks:
                yield partial(command, walk, father)

    def ours_rate(self, seconds: float) -> Rate:
        rate = run_batches(seconds, lambda: list(self._ours_batch()))
        return _with_loads(rate, self.ours_loads)

    # ------------------------------------------------------------------ ours: whole journeys

    def journey_rate(self, seconds: float) -> Rate:
        def one() -> None:
            walk = self.journey_families.walk()  # the delivery record (timed: it is part of the journey)
            walk.submitted()

        rate = run_batches(seconds, lambda: [one] * 10)
        rate.extra["commands_per_journey"] = JOURNEY_COMMANDS
        rate.extra["commands_per_second"] = rate.per_second * JOURNEY_COMMANDS
        return rate


def _with_loads(rate: Rate, loads: list[int]) -> Rate:
    recent = loads[-rate.count :] if rate.count else []
    rate.extra["mean_events_loaded"] = round(sum(recent) / len(recent), 2) if recent else None
    return rate


def measure(settings: Settings, say: Callable[[str], None]) -> dict[str, list[Rate]]:
    """Every target ``settings.rounds`` times, interleaved so that drift hits them alike."""
    results: dict[str, list[Rate]] = {"baseline": [], "provide_details": [], "journey": []}
    with tempfile.TemporaryDirectory(prefix="birthcert-bench-") as tmp:
        bench = CommandBench(Path(tmp))
        try:
            for round_no in range(1, settings.rounds + 1):
                for name, run in (
                    ("baseline", bench.baseline_rate),
                    ("provide_details", bench.ours_rate),
                    ("journey", bench.journey_rate),
                ):
                    rate = run(settings.seconds)
                    results[name].append(rate)
                    say(f"commands round {round_no}: {name} {rate.per_second:,.1f}/s")
        finally:
            bench.close()
    return results
