"""History kinds of the agency API's second part (restricted data tokens, grantless tokens, proxy)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("sellers", "0008_tenant_app_roles"),
    ]

    operations: list[migrations.operations.base.Operation] = []
