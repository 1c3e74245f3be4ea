"""Rotating the field encryption key.

With FIELD_ENCRYPTION_KEY="new,old", every key decrypts and the first one encrypts.
`encryption_key_rotate` rewrites every encrypted column under the first key, in batches, working
on the raw stored values with plain SQL (never through the model, so nothing is decrypted into
memory longer than one value and `save()` side effects do not run). A value already under the
first key is left alone, which makes the command resumable and a second run a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cryptography.fernet
from django.apps import apps
from django.conf import settings
from django.db import connection, models, transaction
from encrypted_model_fields import fields as emf


class UnreadableEncryptedValue(RuntimeError):
    """A stored value no configured key can decrypt. Names the row, never the value."""

    def __init__(self, *, label: str, pk: Any, column: str):
        self.label, self.pk, self.column = label, pk, column
        super().__init__(
            f"{label} row {pk}, field {column}: no key in FIELD_ENCRYPTION_KEY can decrypt it. "
            "Add the key it was written with to the list (after the new key) and run again."
        )


def encrypted_fields() -> list[tuple[type[models.Model], list[models.Field]]]:
    """Every concrete model with encrypted columns (any django-encrypted-model-fields field)."""
    found = []
    for model in apps.get_models():
        meta = model._meta
        if meta.proxy or not meta.managed:
            continue
        columns = [f for f in meta.concrete_fields if isinstance(f, emf.EncryptedMixin)]
        if columns:
            found.append((model, columns))
    return sorted(found, key=lambda item: item[0]._meta.label)


def _configured_keys() -> list[str]:
    keys = settings.FIELD_ENCRYPTION_KEY
    return [keys] if isinstance(keys, str) else list(keys)


@dataclass
class ColumnReport:
    label: str  # "sellers.Grant.refresh_token"
    rotated: int = 0
    current: int = 0  # already under the first key
    empty: int = 0
    changed_meanwhile: int = 0  # rewritten by the app during the run (so under the first key)


@dataclass
class RotationReport:
    keys: int
    columns: list[ColumnReport] = field(default_factory=list)

    @property
    def rotated(self) -> int:
        return sum(c.rotated for c in self.columns)

    @property
    def current(self) -> int:
        return sum(c.current for c in self.columns)


@dataclass(frozen=True)
class _Column:
    """One encrypted column: its model and field for messages, quoted names for the SQL."""

    model_label: str
    field_name: str
    table: str
    pk: str
    column: str


@dataclass(frozen=True)
class _Keys:
    primary: cryptography.fernet.Fernet
    crypter: cryptography.fernet.MultiFernet


def encryption_key_rotate(
    *, batch_size: int = 500, dry_run: bool = False, on_batch: Callable[[str, int], None] | None = None
) -> RotationReport:
    """Re-encrypt every encrypted column with the first FIELD_ENCRYPTION_KEY.

    Raises UnreadableEncryptedValue (naming model, row and field) for a value no key reads; the
    batches before it are committed, so a fixed run resumes where it stopped. `dry_run` reads and
    checks everything and writes nothing.
    """
    configured = _configured_keys()
    # The library's MultiFernet, built from the same setting at import: rotate() decrypts with
    # any key and re-encrypts with the first, so nothing is ever encrypted twice.
    keys = _Keys(primary=cryptography.fernet.Fernet(configured[0]), crypter=emf.CRYPTER)
    report = RotationReport(keys=len(configured))
    quote = connection.ops.quote_name
    for model, columns in encrypted_fields():
        meta = model._meta
        for fld in columns:
            target = _Column(meta.label, fld.name, quote(meta.db_table), quote(meta.pk.column), quote(fld.column))
            col = ColumnReport(label=f"{meta.label}.{fld.name}")
            report.columns.append(col)
            _column_rotate(target, col, keys, batch_size=batch_size, dry_run=dry_run, on_batch=on_batch)
    return report


def _column_rotate(
    target: _Column, col: ColumnReport, keys: _Keys, *, batch_size: int, dry_run: bool,
    on_batch: Callable[[str, int], None] | None,
) -> None:
    last_pk = None
    while True:
        rows = _batch_read(target, last_pk, batch_size)
        if not rows:
            break
        last_pk = rows[-1][0]
        updates = _batch_rotate(target, col, keys, rows)
        if updates and not dry_run:
            _batch_write(target, col, updates)
        elif updates:
            col.rotated += len(updates)
        if on_batch is not None:
            on_batch(col.label, len(rows))


def _batch_read(target: _Column, last_pk: Any, batch_size: int) -> list[tuple[Any, Any]]:
    # Keyset over the primary key on raw values: flat memory, one range read per batch.
    where = f"WHERE {target.pk} > %s " if last_pk is not None else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {target.pk}, {target.column} FROM {target.table} {where}ORDER BY {target.pk} LIMIT %s",
            ([last_pk] if last_pk is not None else []) + [batch_size],
        )
        return cursor.fetchall()


def _batch_rotate(target: _Column, col: ColumnReport, keys: _Keys, rows: list[tuple[Any, Any]]) -> list[tuple[Any, Any, str]]:
    """(pk, stored value, value under the first key) for each row not yet under the first key."""
    updates = []
    for pk, raw in rows:
        if raw is None or raw == "":
            col.empty += 1
            continue
        token = raw.encode() if isinstance(raw, str) else bytes(raw)
        try:
            keys.primary.decrypt(token)
            col.current += 1
            continue
        except cryptography.fernet.InvalidToken:
            pass
        try:
            rotated = keys.crypter.rotate(token).decode()
        except cryptography.fernet.InvalidToken:
            raise UnreadableEncryptedValue(label=target.model_label, pk=pk, column=target.field_name) from None
        updates.append((pk, raw, rotated))
    return updates


def _batch_write(target: _Column, col: ColumnReport, updates: list[tuple[Any, Any, str]]) -> None:
    with transaction.atomic():
        with connection.cursor() as cursor:
            for pk, raw, rotated in updates:
                # Conditional on the value read: a row the app rewrote meanwhile
                # is already under the first key and must not be overwritten.
                cursor.execute(
                    f"UPDATE {target.table} SET {target.column} = %s WHERE {target.pk} = %s AND {target.column} = %s",
                    [rotated, pk, raw],
                )
                if cursor.rowcount == 1:
                    col.rotated += 1
                else:
                    col.changed_meanwhile += 1


def encrypted_rows_count() -> int:
    """Rows × encrypted columns the rotation will look at (for a progress bar)."""
    return sum(model._base_manager.count() * len(columns) for model, columns in encrypted_fields())
