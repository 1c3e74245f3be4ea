"""`manage.py worker`: django-q2's task cluster, stopped cleanly by SIGTERM to its process group.

`manage.py qcluster` hangs when SIGTERM reaches its whole process group (`kill -TERM -- -PGID`,
systemd's default KillMode=control-group, Ctrl-C then SIGTERM from `make run`). django-q2's
sentinel resets SIGTERM to the default action, and the workers, pusher and monitor it forks
inherit that, so each of them dies on the spot, tasks in flight with them. The main process's
handler then calls `stop_event.set()`: a multiprocessing Event, whose notify waits for every
process sleeping in `stop_event.wait()` to acknowledge the wake-up. The sentinel was killed in
that wait and never acknowledges: the main process waits until SIGKILL.

Here the sentinel runs in a process group of its own, so a signal to our group reaches only the
main process, which stops the cluster the way a SIGTERM to it alone always has: the pusher stops
taking tasks, workers finish the tasks they hold, then exit.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time

from django.core.management.base import BaseCommand, CommandError
from django_q.cluster import Cluster

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# How long a sentinel that got the same SIGTERM (a signal sent to every process, e.g. systemd's
# KillMode=control-group) may take to die of it; killing is immediate, this is ample margin.
SENTINEL_DEATH_GRACE_SECONDS = 0.5

_main_pid: int | None = None
_sentinel_pid: int | None = None


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies. With the sentinel outside our process
    group, `kill -9 -- -PGID` would otherwise leave it and its workers running, orphaned."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _after_fork_in_child() -> None:
    # Runs in every child forked by the main process (only the sentinel) and, inherited, by the
    # sentinel (workers, pusher, monitor). A task's own forks are left alone.
    global _sentinel_pid
    parent = os.getppid()
    if parent == _main_pid:
        os.setpgid(0, 0)
        # Out of the terminal's foreground group, a write to it stops the writer under
        # `stty tostop`; the cluster's logs must not.
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        _sentinel_pid = os.getpid()
    elif _sentinel_pid is None or parent != _sentinel_pid:
        return
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


class Command(BaseCommand):
    help = (
        "Run the background-task workers (django-q2's cluster, Q_CLUSTER settings). SIGTERM, SIGINT "
        "or SIGHUP to the process or to its process group stops them cleanly: tasks in flight finish first."
    )

    def handle(self, *args, **options):
        global _main_pid
        if _main_pid is None:
            os.register_at_fork(after_in_child=_after_fork_in_child)
        _main_pid = os.getpid()
        received: list[int] = []

        def request_stop(signum, frame):
            # Only note it: stopping from inside a handler could interrupt the stop in progress.
            received.append(signum)

        cluster = Cluster()  # installs django-q2's handlers; ours replace them
        for signum in STOP_SIGNALS:
            signal.signal(signum, request_stop)
        cluster.start()
        sentinel = cluster.sentinel
        while not received and sentinel.is_alive():
            time.sleep(0.2)
        if not received:
            raise CommandError(f"The task cluster stopped on its own (sentinel exit code {sentinel.exitcode}).")
        logger.info("Stopping the task cluster on %s.", signal.Signals(received[0]).name)
        # A sentinel that got the signal too is dead by now, and waking it would wait forever.
        sentinel.join(timeout=SENTINEL_DEATH_GRACE_SECONDS)
        if sentinel.is_alive():
            cluster.stop()
        else:
            logger.warning(
                "The task cluster's processes were killed by the same signal (exit code %s): tasks in flight "
                "did not finish. Send the stop signal to the main process only (systemd: KillMode=mixed).",
                sentinel.exitcode,
            )
