#!/usr/bin/env python3
"""Write a local .env with fresh random keys (never overwrites an existing file)."""

import base64
import os
import secrets
import sys

path = sys.argv[1] if len(sys.argv) > 1 else ".env"
if os.path.exists(path):
    sys.exit(0)
fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
content = f"""# Local settings written by `make run`. Not for production; never commit this file.
DEBUG=true
SECRET_KEY={secrets.token_urlsafe(50)}
FIELD_ENCRYPTION_KEY={fernet_key}
# SITE_URL (the base of every link) is not set here: `make run` writes the address it serves at.
SPAPI_SANDBOX=true
"""
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
with os.fdopen(fd, "w") as fh:
    fh.write(content)
print(f"Wrote {path} with fresh random keys.")
