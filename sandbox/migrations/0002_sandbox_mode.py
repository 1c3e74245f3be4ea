"""The sandbox's mode: the scope model of Amazon, or Amazon as it really behaves."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sandbox", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="SandboxState",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "mode",
                    models.CharField(
                        choices=[
                            ("seed", "Seed (scopes asked in the consent URL and echoed back)"),
                            ("amazon", "Amazon (registered roles decide, no scope echoed)"),
                        ],
                        default="seed",
                        max_length=16,
                    ),
                ),
                ("changed_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "constraints": [models.CheckConstraint(condition=models.Q(("id", 1)), name="sandbox_state_single_row")],
            },
        ),
        migrations.AddField(
            model_name="sandboxauthorization",
            name="roles",
            field=models.JSONField(default=list),
        ),
    ]
