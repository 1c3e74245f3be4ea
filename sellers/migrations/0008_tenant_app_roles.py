"""The SP-API roles of each tenant's app registration."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("sellers", "0007_onboarding_statuses"),
    ]

    operations: list[migrations.operations.base.Operation] = []
