"""`manage.py worker` stops in seconds on SIGTERM to its process group, tasks in flight finished.

`manage.py qcluster` hangs there until SIGKILL (see sellers/management/commands/worker.py).
The cluster runs with the ORM broker on a SQLite file of its own, so that a task taken but not
finished can be seen still waiting in the queue (it is delivered again after `retry`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .conftest import ROOT, subprocess_env

TASKS = 6
TASK_SECONDS = 1.5

ENQUEUE = f"""
import json, django
django.setup()
from django_q.tasks import async_task
print(json.dumps([async_task("time.sleep", {TASK_SECONDS}) for _ in range({TASKS})]))
"""

OUTCOME = """
import json, django
django.setup()
from django_q.models import OrmQ, Task
print(json.dumps({
    "done": [[t.id, t.started.timestamp(), t.stopped.timestamp()] for t in Task.objects.filter(success=True)],
    "failed": list(Task.objects.filter(success=False).values_list("id", flat=True)),
    "queued": [q.task_id() for q in OrmQ.objects.all()],
}))
"""


@pytest.fixture
def cluster_env(tmp_path, sqlite_file_db):  # noqa: F811
    (tmp_path / "worker_settings.py").write_text(
        "from tests.settings import *  # noqa\n"
        "Q_CLUSTER = {k: v for k, v in Q_CLUSTER.items() if k not in ('sync', 'redis')}\n"
        f"Q_CLUSTER.update(name='spconnect-stop-{uuid.uuid4().hex[:8]}', workers=2, orm='default')\n"
        "LOGGING['root']['level'] = 'INFO'  # 'processing' lines say when tasks are in flight\n"
    )
    return subprocess_env(sqlite_file_db, DJANGO_SETTINGS_MODULE="worker_settings", PYTHONPATH=f"{ROOT}:{tmp_path}")


def run_script(script: str, env: dict):
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_cluster_with_tasks_in_flight(env: dict, log: Path) -> tuple[subprocess.Popen, list[str], set[int]]:
    enqueued = run_script(ENQUEUE, env)
    # A session (and process group) of its own, as under systemd or a shell's job control.
    worker = subprocess.Popen([sys.executable, "manage.py", "worker"], cwd=ROOT, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=log.open("w"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and log.read_text().count(" processing ") < 2:
        assert worker.poll() is None, log.read_text()[-2000:]
        time.sleep(0.1)
    assert log.read_text().count(" processing ") >= 2, log.read_text()[-2000:]
    return worker, enqueued, descendants(worker.pid)


def wait_for_exit(worker: subprocess.Popen, timeout: float) -> float | None:
    """Seconds the worker took to exit, or None (then it is killed, its whole tree with it)."""
    started = time.monotonic()
    try:
        worker.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in descendants(worker.pid) | {worker.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.wait(timeout=10)
        return None
    return time.monotonic() - started


def test_sigterm_to_the_process_group_stops_in_seconds_after_the_tasks_in_flight(cluster_env, tmp_path):
    log = tmp_path / "worker.log"
    worker, enqueued, cluster = start_cluster_with_tasks_in_flight(cluster_env, log)
    signalled_at = time.time()
    os.killpg(worker.pid, signal.SIGTERM)  # what `kill -TERM -- -PGID` and Ctrl-C's shells send
    took = wait_for_exit(worker, timeout=20)
    assert took is not None and took < 15, f"still running 20 s after SIGTERM to its group:\n{log.read_text()[-2000:]}"
    assert worker.returncode == 0, log.read_text()[-2000:]
    assert not [pid for pid in cluster if alive(pid)], "cluster processes left behind"
    outcome = run_script(OUTCOME, cluster_env)
    done = {task_id: (started, stopped) for task_id, started, stopped in outcome["done"]}
    assert outcome["failed"] == []
    # Every task ran to the end, or waits in the queue to be delivered again: none is lost.
    assert set(enqueued) == set(done) | set(outcome["queued"]), outcome
    # The two tasks in flight when the signal came (and those the cluster had already taken from
    # the broker) finished instead of dying with their workers.
    finished_after = [task_id for task_id, (_, stopped) in done.items() if stopped > signalled_at]
    assert len(finished_after) >= 2, (outcome, signalled_at)


def test_sigterm_to_every_process_of_the_cluster_does_not_hang(cluster_env, tmp_path):
    # systemd's default KillMode=control-group signals every process; the sentinel and the
    # workers die of it at once. The main process must notice and exit instead of waiting forever.
    log = tmp_path / "worker.log"
    worker, enqueued, cluster = start_cluster_with_tasks_in_flight(cluster_env, log)
    for pid in cluster | {worker.pid}:
        os.kill(pid, signal.SIGTERM)
    took = wait_for_exit(worker, timeout=20)
    assert took is not None and took < 10, f"still running 20 s after SIGTERM to each process:\n{log.read_text()[-2000:]}"
    assert "KillMode=mixed" in log.read_text()  # the log says what to change
    assert not [pid for pid in cluster if alive(pid)], "cluster processes left behind"
    outcome = run_script(OUTCOME, cluster_env)
    # The killed tasks were taken but not acknowledged: the ORM broker delivers them again.
    assert set(enqueued) == {task_id for task_id, *_ in outcome["done"]} | set(outcome["queued"]), outcome
