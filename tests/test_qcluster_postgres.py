"""Several worker machines: two `qcluster` processes on one PostgreSQL run a due schedule once.

django-q2's scheduler claims due schedules with SELECT … FOR UPDATE; on PostgreSQL the second
cluster waits on the row lock, re-reads `next_run` and finds nothing due. SQLite has no row
locks, so this only means something on PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule, Task

from .conftest import ROOT, subprocess_env
from .test_tasks import stop
from .test_tokens import postgres_test_db_url

pytestmark = [
    pytest.mark.postgres(reason="two qcluster processes sharing one database and its row locks"),
    pytest.mark.django_db(transaction=True),
]


def test_two_qclusters_run_a_due_schedule_once(tmp_path):
    name = f"probe-{uuid.uuid4().hex[:8]}"
    # Both workers serve one queue, as M worker machines do; the name keeps runs apart.
    (tmp_path / "two_workers_settings.py").write_text(
        "from tests.settings import *  # noqa\n"
        "Q_CLUSTER = {k: v for k, v in Q_CLUSTER.items() if k != 'sync'}\n"
        f"Q_CLUSTER.update(name='spconnect-{name}', workers=1)\n"
        "# Call the scheduler at start-up instead of after the first 30 s guard cycle.\n"
        "Q_CLUSTER['guard_cycle'] = 30\n"
        "LOGGING['root']['level'] = 'INFO'  # the clusters' 'running.' lines tell us they are up\n"
    )
    Schedule.objects.all().delete()  # only the probe is due: nothing else to wait for
    Schedule.objects.create(name=name, func="math.floor", args="2.5", schedule_type=Schedule.MINUTES, minutes=10,
                            repeats=-1, next_run=timezone.now() - timedelta(seconds=5))
    env = subprocess_env(postgres_test_db_url(), DJANGO_SETTINGS_MODULE="two_workers_settings",
                         PYTHONPATH=f"{ROOT}:{tmp_path}")
    logs = [tmp_path / f"worker-{n}.log" for n in (1, 2)]
    workers = [subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True) for log in logs]
    try:
        # Both clusters must be up (their schedulers have run once) before the count means anything.
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not all(" running." in log.read_text() for log in logs):
            assert all(w.poll() is None for w in workers), [log.read_text()[-1500:] for log in logs]
            time.sleep(0.3)
        assert all(" running." in log.read_text() for log in logs), [log.read_text()[-1500:] for log in logs]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not Task.objects.filter(group=name).exists():
            time.sleep(0.3)
        time.sleep(3)  # room for a duplicate run to be saved, were there one
    finally:
        for worker in workers:
            stop(worker)
    runs = list(Task.objects.filter(group=name))
    assert len(runs) == 1, [log.read_text()[-1500:] for log in logs]
    assert runs[0].success and runs[0].result == 2
    assert Schedule.objects.get(name=name).next_run > timezone.now() + timedelta(minutes=9)
