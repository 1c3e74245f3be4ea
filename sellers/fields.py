"""Encrypted model fields that fail loudly.

django-encrypted-model-fields 0.6.5 swallows `InvalidToken` in `to_python` and hands back the
ciphertext as if it were the value. A token read that way would be sent to Amazon (and maybe
logged by whoever received it). Values read from the database must decrypt or raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cryptography.fernet
from django.db import models
from encrypted_model_fields import fields as emf


class UndecryptableValue(RuntimeError):
    """A stored value that no configured FIELD_ENCRYPTION_KEY can decrypt."""


class StrictEncryptedMixin:
    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        try:
            return emf.decrypt_str(value)
        except cryptography.fernet.InvalidToken:
            model = getattr(self, "model", None)
            where = f"{model._meta.label}.{self.name}" if model is not None else self.name
            raise UndecryptableValue(
                f"{where} cannot be decrypted with any configured FIELD_ENCRYPTION_KEY. "
                "Was the key changed without rotating? (see docs/operations.md)"
            ) from None

    def to_python(self, value):
        # Forms and deserialisation pass plaintext; only from_db_value sees ciphertext.
        return super(emf.EncryptedMixin, self).to_python(value)


if TYPE_CHECKING:
    # django-encrypted-model-fields ships no types: to the type checker this is the text field
    # it behaves as (instances hold and take plain strings).
    _EncryptedTextBase = models.TextField
else:
    _EncryptedTextBase = emf.EncryptedTextField


class EncryptedTextField(StrictEncryptedMixin, _EncryptedTextBase):
    """Encrypted at rest; decrypts on read or raises UndecryptableValue."""

    def get_db_prep_save(self, value, connection):
        # An empty value stays empty (not an encrypted empty string) so "not set" is queryable.
        if value is None or value == "":
            return value
        if hasattr(value, "resolve_expression"):
            # bulk_update() and update(field=F(...)) hand us a SQL expression; encrypting its
            # printed form would store garbage in place of the token.
            raise TypeError(
                f"{self.name} is encrypted: assign a plain string, not a query expression "
                "(no bulk_update or F() on encrypted fields)."
            )
        return super().get_db_prep_save(value, connection)


def mask_secret(value: str | None, *, visible: int = 4) -> str:
    """`Atzr|IwEB…x9Qz` -> `••••x9Qz`: enough to tell two values apart, never to use one."""
    if not value:
        return "—"
    return "••••" + value[-visible:] if len(value) > visible * 3 else "••••"
