"""Helpers shared by management commands: tenant lookup and a terminal progress bar."""

from __future__ import annotations

import sys
import time

from django.core.management.base import CommandError, OutputWrapper

from sellers.models import Tenant


def tenant_by_slug(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        known = ", ".join(Tenant.objects.order_by("slug").values_list("slug", flat=True)[:20]) or "none yet"
        raise CommandError(f"Unknown tenant {slug!r}. Known tenants: {known}.")
    return tenant


class Progress:
    """A one-line progress bar on a terminal (a command's `self.stderr`, or sys.stderr); silent
    when not a terminal."""

    def __init__(self, total: int, label: str = "", stream=None, width: int = 30):
        self.total, self.label, self.width = total, label, width
        self.stream = stream or sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty() and total > 0
        self.done = 0
        self._last = 0.0
        self._start = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            filled = int(self.width * self.done / self.total)
            rate = self.done / max(now - self._start, 1e-6)
            self._write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} ({rate:,.0f}/s)")

    def close(self) -> None:
        if self.enabled:
            self._write("\n")

    def _write(self, text: str) -> None:
        if isinstance(self.stream, OutputWrapper):
            # A command's stderr would end every write with a newline and colour it as an error.
            self.stream.write(text, style_func=str, ending="")
        else:
            self.stream.write(text)
        self.stream.flush()
