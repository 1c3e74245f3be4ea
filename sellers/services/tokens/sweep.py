"""Refreshing many grants ahead of need: the synchronous sweep of `refresh_tokens` (optionally
with worker threads) over the grants `sellers.selectors.grants_due` names. The schedule instead
queues one task per due grant (`sellers/tasks.py`), each calling `grant_refresh`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.db import connections

from sellers.fields import UndecryptableValue
from sellers.models import TOKEN_FIELDS, Event, Grant
from sellers.selectors import refresh_window

from ..events import event_record
from .refresh import SYSTEM, RefreshOutcome, RefreshResult, _refresh

BATCH_SIZE = 200  # grants loaded per query by sweeps

UNDECRYPTABLE_DETAIL = (
    "The stored tokens cannot be decrypted with the configured keys (FIELD_ENCRYPTION_KEY); "
    "not refreshed. Restore the key they were written under, or have the seller re-authorize."
)


@dataclass
class RefreshSummary:
    counts: dict[str, int] = field(default_factory=lambda: {o: 0 for o in RefreshOutcome.values})

    def add(self, result: RefreshResult) -> None:
        self.counts[result.outcome] = self.counts.get(result.outcome, 0) + 1

    @property
    def failed(self) -> int:
        c = self.counts
        return c[RefreshOutcome.CREDENTIALS_FAILED] + c[RefreshOutcome.TRANSIENT_FAILURE] + c[RefreshOutcome.UNDECRYPTABLE]

    def __str__(self) -> str:
        c = self.counts
        undecryptable = c[RefreshOutcome.UNDECRYPTABLE]
        return (
            f"refreshed {c[RefreshOutcome.REFRESHED]}, revoked {c[RefreshOutcome.REVOKED]}, "
            f"failed {self.failed} (app credentials {c[RefreshOutcome.CREDENTIALS_FAILED]}, "
            f"transient {c[RefreshOutcome.TRANSIENT_FAILURE]}"
            + (f", cannot be decrypted {undecryptable}" if undecryptable else "")
            + f"), skipped {c[RefreshOutcome.SKIPPED]}"
        )


def _undecryptable(grant_id: int, *, actor: str) -> RefreshResult:
    """Report a grant whose tokens no configured key decrypts, and record it in its history."""
    grant = (
        Grant.objects.select_related("seller__tenant")
        .defer(*TOKEN_FIELDS)
        .filter(pk=grant_id)
        .first()
    )
    if grant is None:
        return RefreshResult(RefreshOutcome.SKIPPED, "The grant no longer exists.")
    event_record(
        seller=grant.seller,
        kind=Event.Kind.REFRESH_FAILING,
        detail=UNDECRYPTABLE_DETAIL,
        data={"error": "undecryptable"},
        actor=actor,
    )
    return RefreshResult(RefreshOutcome.UNDECRYPTABLE, UNDECRYPTABLE_DETAIL, grant)


def _load(chunk: list[int]) -> tuple[dict[int, Grant], set[int]]:
    """(grants by id, with sellers and tenants; ids whose tokens no configured key decrypts)."""
    qs = Grant.objects.select_related("seller__tenant")
    try:
        return qs.in_bulk(chunk), set()
    except UndecryptableValue:
        # One row decrypted with the batch would fail every grant of it: read the batch
        # again one grant at a time so that only the bad ones are left out.
        loaded, bad = {}, set()
        for grant_id in chunk:
            try:
                loaded.update(qs.in_bulk([grant_id]))
            except UndecryptableValue:
                bad.add(grant_id)
        return loaded, bad


def _refresh_loaded(grant_id: int, loaded: dict[int, Grant], undecryptable: set[int], *, actor: str, force: bool) -> RefreshResult:
    if grant_id in undecryptable:
        return _undecryptable(grant_id, actor=actor)
    if grant_id not in loaded:
        return RefreshResult(RefreshOutcome.SKIPPED, "The grant no longer exists.")
    try:
        return _refresh(grant_id, actor=actor, force=force, fresh_margin=refresh_window(), preloaded=loaded[grant_id])
    except UndecryptableValue:  # re-read under the lock after a change: now unreadable
        return _undecryptable(grant_id, actor=actor)


def grants_refresh(
    *,
    grant_ids: Iterable[int],
    actor: str = SYSTEM,
    force: bool = False,
    workers: int = 1,
    on_result: Callable[[int, RefreshResult], None] | None = None,
) -> RefreshSummary:
    """Refresh many grants synchronously (`refresh_tokens`), optionally with worker threads."""
    summary = RefreshSummary()
    lock = threading.Lock()

    def one_by_one(chunk: list[int]) -> None:
        for start in range(0, len(chunk), BATCH_SIZE):
            batch = chunk[start : start + BATCH_SIZE]
            # One query loads a batch with sellers and tenants; under each grant's lock a narrow
            # query then confirms the row did not change meanwhile (else it is read again).
            loaded, undecryptable = _load(batch)
            for grant_id in batch:
                result = _refresh_loaded(grant_id, loaded, undecryptable, actor=actor, force=force)
                with lock:
                    summary.add(result)
                    if on_result is not None:
                        on_result(grant_id, result)

    def in_thread(chunk: list[int]) -> None:
        try:
            one_by_one(chunk)
        finally:
            connections.close_all()  # this thread's connections

    ids = list(grant_ids)
    if workers <= 1:
        one_by_one(ids)
        return summary
    chunks = [ids[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(in_thread, chunk) for chunk in chunks if chunk]:
            future.result()
    return summary
