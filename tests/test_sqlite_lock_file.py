"""The SQLite refresh lock file lives beside the database and is never opened through a symlink."""

from __future__ import annotations

import errno
import os
import stat

import pytest
from django.db import connections

from sellers.services.tokens import locks as tokens


@pytest.fixture
def file_database(tmp_path, monkeypatch):
    """The default connection's settings pointed at a SQLite file (no query is made)."""
    wrapper = connections["default"]
    database = tmp_path / "app" / "db.sqlite3"
    database.parent.mkdir()
    monkeypatch.setattr(wrapper, "vendor", "sqlite")
    monkeypatch.setattr(wrapper, "is_in_memory_db", lambda: False, raising=False)
    monkeypatch.setitem(wrapper.settings_dict, "NAME", str(database))
    opened_before = dict(tokens._lock_files)
    yield database
    for key, fd in list(tokens._lock_files.items()):
        if key not in opened_before:
            os.close(fd)
            del tokens._lock_files[key]


def test_the_lock_file_is_beside_the_database_and_private(file_database):
    fd = tokens._sqlite_lock_file()
    lock = file_database.parent / "db.sqlite3-grant-locks"
    assert os.path.samefile(f"/proc/self/fd/{fd}", lock)
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert tokens._sqlite_lock_file() == fd  # one descriptor per process and database


def test_a_symlink_planted_at_the_lock_path_is_refused(file_database, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (file_database.parent / "db.sqlite3-grant-locks").symlink_to(victim)
    with pytest.raises(OSError) as refused:
        tokens._sqlite_lock_file()
    assert refused.value.errno == errno.ELOOP
    assert victim.read_text() == "keep me"
