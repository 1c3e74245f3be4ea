"""The one way a bearer secret is stored for lookup: its SHA-256, in hex.

Invitation tokens, OAuth states, browser bindings and the sandbox's tokens are 256 random
bits, so a plain SHA-256 is enough to make a copy of the database useless for signing in
(no salt or slow hash is needed for values nobody could guess), and an index can find the row.
"""

from __future__ import annotations

import hashlib


def token_hash(value: str) -> str:
    """The 64-character hex SHA-256 of `value`, as stored in `*_hash` columns."""
    return hashlib.sha256(value.encode()).hexdigest()
