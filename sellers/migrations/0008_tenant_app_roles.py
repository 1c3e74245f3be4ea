"""The SP-API roles of each tenant's app registration."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sellers", "0007_onboarding_statuses"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="app_roles",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="The SP-API roles chosen when the app was registered (Developer Central → the app's "
                "registration). When Amazon returns no scope, the scopes these roles give count as granted.",
            ),
        ),
        migrations.AlterField(
            model_name="tenant",
            name="registered_scopes",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="Scopes the app is registered for. Assumed granted (unconfirmed) when Amazon "
                "returns no scope in the token response and no app roles are recorded.",
            ),
        ),
    ]
