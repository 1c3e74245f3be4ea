"""History kinds of the agency API's second part (restricted data tokens) and of renewals coming due."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sellers", "0008_tenant_app_roles"),
    ]

    operations = [
        migrations.AlterField(
            model_name="event",
            name="kind",
            field=models.CharField(choices=[('invited', 'Invited'), ('reauth_link_created', 'Re-authorization link created'), ('reauth_link_emailed', 'Re-authorization link emailed'), ('link_opened', 'Opened the link'), ('link_expired', 'Link expired unused'), ('consent_started', 'Consent started'), ('granted', 'Granted'), ('partially_granted', 'Partially granted'), ('reauthorized', 'Re-authorized'), ('denied', 'Declined at Amazon'), ('consent_error', 'Consent error'), ('exchange_failed', 'Code exchange failed'), ('revoked', 'Revoked'), ('marked_revoked', 'Marked revoked by staff'), ('refresh_failing', 'Refresh failing'), ('refresh_recovered', 'Refresh recovered'), ('scope_refused', 'Scope refused by Amazon'), ('status_changed', 'Status changed'), ('renewal_due', 'Renewal due soon'), ('expired', 'Authorization expired'), ('connection_tested', 'Connection tested'), ('credentials_invalid', 'App credentials rejected'), ('credentials_recovered', 'App credentials working again'), ('secret_rotated', 'Client secret rotated'), ('secret_expiry_notice', 'Client secret expiry notice'), ('requirements_changed', 'Scope requirements changed'), ('refresh_requested', 'Refresh requested by staff'), ('exported', 'Exported by staff'), ('identity_review_opened', 'Held for identity review'), ('identity_review_approved', 'Identity review approved'), ('identity_review_rejected', 'Identity review rejected'), ('identity_review_expired', 'Identity review expired'), ('account_released', 'Amazon account released'), ('api_key_created', 'API key created'), ('api_key_revoked', 'API key revoked'), ('rdt_created', 'Restricted data token obtained')], db_index=True, max_length=32),
        ),
    ]
