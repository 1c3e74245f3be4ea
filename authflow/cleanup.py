"""Removal of consent-flow leftovers: OAuth states and browser sessions past their expiry.

Anyone can open the Login URI or an invitation, and each start leaves a state row and a session
row behind. Neither is history (Event rows are), so both go once they can no longer be used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module

from django.conf import settings
from django.utils import timezone

from .models import OAuthState

# A state is kept this long past its expiry so that a seller who comes back late still gets
# "this attempt expired / was already completed, start again" (with the retry button) rather
# than "not one we started".
STATE_KEEP_AFTER_EXPIRY = timedelta(days=1)


@dataclass(frozen=True)
class CleanupResult:
    states: int
    sessions: int | None  # None: the session engine keeps no database rows (cookie, cache, file)


def _sessions_clear_expired(*, now) -> int | None:
    """Django's `clearsessions`; returns how many rows the database backends deleted."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if hasattr(store, "get_model_class"):  # db and cached_db (expired cache entries lapse alone)
        deleted, _ = store.get_model_class().objects.filter(expire_date__lt=now).delete()
        return deleted
    try:
        store.clear_expired()  # file: removes expired files; cache: nothing to do
    except NotImplementedError:
        pass  # signed cookies: the browser holds the session, nothing is stored here
    return None


def flow_leftovers_delete(*, now=None) -> CleanupResult:
    """Delete OAuth states expired more than STATE_KEEP_AFTER_EXPIRY ago, and expired sessions."""
    now = now or timezone.now()
    states, _ = OAuthState.objects.filter(expires_at__lt=now - STATE_KEEP_AFTER_EXPIRY).delete()
    return CleanupResult(states=states, sessions=_sessions_clear_expired(now=now))
