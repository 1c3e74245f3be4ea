"""django-q2 tasks of the consent flow. Safe to run twice."""

from __future__ import annotations

from .cleanup import flow_leftovers_delete


def flow_leftovers_delete_task() -> str:
    """Hourly: delete expired OAuth states and expired sessions."""
    result = flow_leftovers_delete()
    sessions = "no session rows kept by this engine" if result.sessions is None else f"{result.sessions} expired session(s)"
    return f"deleted {result.states} expired state(s) and {sessions}"
