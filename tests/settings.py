"""Test settings: the project's settings with fixed test keys and the sandbox on.

The encryption key is read once at import (django-encrypted-model-fields), so it is fixed here
for the whole run; a test that needs a wrong key runs a subprocess.
"""

import os
import sys

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdef")
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "iyHox1r1y7hesdCbWh1EvZHFwu4IN1JgMD6ez28BcFM=")
os.environ.setdefault("SPAPI_SANDBOX", "true")
os.environ.setdefault("SITE_URL", "http://testserver")
os.environ["SPCONNECT_ENV_FILE"] = "/nonexistent"  # never pick up a developer's .env

from spconnect.settings import *  # noqa: E402,F401,F403

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
Q_CLUSTER["sync"] = True  # noqa: F405  # tasks run inline unless a test starts a real cluster
SECURE_SSL_REDIRECT = False
LOGGING["root"]["level"] = "WARNING"  # noqa: F405

# Parallel runs (`make test` runs TEST_WORKERS processes): each worker gets its own Redis database for the
# cache, since every test empties the cache first and Redis empties a whole database at once.
# Only in the worker itself: servers a test starts inherit the variable but use the Redis it names.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "") if "xdist" in sys.modules else ""
if _worker.startswith("gw") and CACHES["default"]["BACKEND"].endswith("RedisCache"):  # noqa: F405
    from urllib.parse import urlsplit, urlunsplit

    _url = urlsplit(CACHES["default"]["LOCATION"])  # noqa: F405
    CACHES["default"]["LOCATION"] = urlunsplit(_url._replace(path=f"/{10 + int(_worker[2:])}"))  # noqa: F405
