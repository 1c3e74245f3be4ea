from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_schedules(sender, **kwargs):
    # Imported when called: `schedules` imports django-q2's models, which cannot load while
    # the app registry is still being populated (when this module is imported).
    from .schedules import schedules_ensure

    schedules_ensure()


class SellersConfig(AppConfig):
    name = "sellers"
    verbose_name = "Sellers"

    def ready(self):
        # After `migrate` the background schedules exist, without a separate step.
        post_migrate.connect(_ensure_schedules, sender=self, dispatch_uid="sellers_ensure_schedules")
        # The project's system checks (spconnect is not an app, so nothing else imports them).
        from spconnect import checks  # noqa: F401
