"""The sandbox's mode: the source document's model of Amazon, or Amazon as it really behaves."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("sandbox", "0001_initial"),
    ]

    operations: list[migrations.operations.base.Operation] = []
