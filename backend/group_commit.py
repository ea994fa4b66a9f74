"""Group commit: the commands that arrive while the store is busy are stored together (decision 0027).

A command is queued; while fewer than ``parallel`` batches run, the queued commands (at most
``max_batch``) go to the store executor together as one ``Applications.run_batch``, which stores the
events of the simple commands in one transaction — one fsync on SQLite, one table lock on PostgreSQL —
and answers each command with its own outcome or error once its events are stored. Nothing waits for a
batch to fill: a command that arrives alone runs at once, as before; under load the batches grow by
themselves with the commands that queued behind the one running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor

from domain.service import Applications, Outcome


class GroupCommit:
    """Runs this process's commands in batches on the store executor."""

    def __init__(
        self, service: Applications, executor: Executor, *, max_batch: int, parallel: int = 1
    ) -> None:
        if max_batch < 1 or parallel < 1:
            raise ValueError("max_batch and parallel must be positive")
        self.service = service
        self.executor = executor
        self.max_batch = max_batch
        self.parallel = parallel
        self._queue: list[tuple[Callable[[], Outcome], asyncio.Future[Outcome]]] = []
        self._running = 0
        self.batches = 0
        self.commands = 0

    async def run(self, command: Callable[[], Outcome]) -> Outcome:
        """Run ``command`` (synchronous, on the store executor) with whatever else is waiting."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        if self._running < self.parallel:
            self._running += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                # A command whose request gave up while it waited (the store deadline) is dropped, not run.
                self._queue = [(command, future) for command, future in self._queue if not future.done()]
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                if not batch:
                    break
                try:
                    results = await loop.run_in_executor(
                        self.executor, self.service.run_batch, [command for command, _ in batch]
                    )
                except Exception as error:  # the batch as a whole failed (not one command's refusal)
                    results = [error] * len(batch)
                self.batches += 1
                self.commands += len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # the request went away; the command stands or fails as it did
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._running -= 1
