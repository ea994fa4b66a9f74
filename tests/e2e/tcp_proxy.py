"""A TCP proxy in front of PostgreSQL that can fail over: every connection through it cut at once, and new ones
refused for a while, as clients see a primary die and a standby take its place (the shared test server itself
cannot be restarted or promoted)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time


class FailoverProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``fail_over(down)`` cuts everything and refuses for ``down`` s."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.cuts = 0
        self.accepted = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._refusing_until = 0.0

    async def start(self) -> int:
        """Serve on a thread and loop of its own, so that a test blocking its own loop (a synchronous store
        call) does not stall the connections it proxies."""
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()

        self._thread = threading.Thread(target=self._loop.run_forever, name="failover-proxy", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self._loop)
        await asyncio.to_thread(started.wait, 10)
        return self.port

    async def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            self._cut_all()

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(stop(), self._loop))
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 10)
        self._loop.close()

    async def fail_over(self, down_seconds: float) -> None:
        """The primary goes: every connection is cut; for ``down_seconds`` nothing answers; then the standby."""
        self._refusing_until = time.monotonic() + down_seconds
        self._loop.call_soon_threadsafe(self._cut_all)
        self.cuts += 1
        await asyncio.sleep(down_seconds)

    def _cut_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._refusing_until:
            self.refused += 1
            client_writer.transport.abort()
            return
        self.accepted += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers |= {client_writer, server_writer}
        await asyncio.gather(
            self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
