"""Settings for bench_tokens.py: the project's settings plus the sandbox server's database.

The benchmark keeps spconnect's data and the local Amazon stand-in's data in two databases, as
in production (Amazon is not in our database); the second alias only lets the benchmark fill it.
"""

from spconnect.settings import *  # noqa: F401,F403
from spconnect.settings import DATABASES, env

DATABASES["sandbox"] = env.db("BENCH_SANDBOX_DATABASE_URL")
DATABASES["sandbox"].setdefault("OPTIONS", {}).setdefault("timeout", 20)
if env.bool("BENCH_CLIENT_WAL", default=False):  # bench_tokens.py --sqlite-wal
    DATABASES["default"].setdefault("OPTIONS", {})["init_command"] = "PRAGMA journal_mode=WAL"
