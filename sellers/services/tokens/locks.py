"""The per-grant lock a refresh holds, so that one caller at a time refreshes a grant.

Every caller first takes a per-grant lock inside its process (threads queue there instead of in
the database). Across processes, PostgreSQL needs nothing more: the refresh itself re-reads the
row with `SELECT … FOR UPDATE` (`refresh.py`). SQLite has no row locks, and holding its
database-wide write lock across an HTTP call would stall every writer (including the local
sandbox answering that very call from the same file), so processes sharing a database file also
take a POSIX byte-range lock, one byte per grant id, on a lock file beside the database file. An
in-memory database cannot be shared by processes, so the thread lock suffices there.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
import weakref
from collections.abc import Iterator

from django.db import connection

from .errors import TokenUnavailable

# How long a caller waits for another process's refresh of the same grant before giving up.
LOCK_WAIT_SECONDS = 60.0


class _GrantLock:
    __slots__ = ("lock", "__weakref__")

    def __init__(self):
        self.lock = threading.Lock()


# One lock per grant id while anybody holds or waits for it; entries vanish afterwards.
_thread_locks: weakref.WeakValueDictionary[int, _GrantLock] = weakref.WeakValueDictionary()
_thread_locks_guard = threading.Lock()
_lock_files: dict[tuple[int, str], int] = {}


def _sqlite_lock_file() -> int | None:
    """A descriptor of the lock file of this SQLite database file, else None.

    It lives beside the database (`db.sqlite3-grant-locks`), so every process using that
    database finds the same file. Not in a shared temporary directory: there anyone can create
    a predictable name first, as a symlink to a file of ours or as a file they hold locks on.
    The database's directory is written by the app only, and the file is never opened through
    a symlink.
    """
    if connection.vendor != "sqlite" or connection.is_in_memory_db():  # type: ignore[attr-defined]  # SQLite's only
        return None
    path = os.path.realpath(str(connection.settings_dict["NAME"])) + "-grant-locks"
    # POSIX locks belong to a process; a forked worker opens its own descriptor. Descriptors are
    # never closed: closing any descriptor of a file drops all of the process's locks on it.
    key = (os.getpid(), path)
    fd = _lock_files.get(key)
    if fd is None:
        with _thread_locks_guard:
            fd = _lock_files.get(key)
            if fd is None:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                _lock_files[key] = fd
    return fd


@contextlib.contextmanager
def _file_byte_lock(fd: int, offset: int, deadline: float) -> Iterator[None]:
    delay = 0.002
    while True:
        try:
            # Non-blocking and polled: a blocking F_SETLKW can report a false EDEADLK when two
            # multi-threaded processes wait on each other's bytes (locks are per process).
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
            break
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            if time.monotonic() >= deadline:
                raise TokenUnavailable("Another process is refreshing this grant; try again shortly.") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    try:
        yield
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)


@contextlib.contextmanager
def grant_lock(grant_id: int) -> Iterator[None]:
    """Serialise refreshes of one grant across this process's threads (and SQLite processes).

    Raises TokenUnavailable after LOCK_WAIT_SECONDS of waiting for another refresh.
    """
    with _thread_locks_guard:
        holder = _thread_locks.get(grant_id)
        if holder is None:
            holder = _GrantLock()
            _thread_locks[grant_id] = holder
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    if not holder.lock.acquire(timeout=LOCK_WAIT_SECONDS):
        raise TokenUnavailable("Another thread is refreshing this grant; try again shortly.")
    try:
        fd = _sqlite_lock_file()
        if fd is None:
            yield
        else:
            with _file_byte_lock(fd, grant_id, deadline):
                yield
    finally:
        holder.lock.release()
