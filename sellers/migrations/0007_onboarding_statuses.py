"""Onboarding statuses (invited, opened, at Amazon, declined, link expired) replace pending.

Existing `pending` sellers get the step their history shows: the newest of declined (denied),
sent to Amazon (consent started), back with an error (opened), or invited; a seller whose links
all expired unused before it declined is `link_expired`. Reversing maps every onboarding status
back to `pending`.
"""

from django.db import migrations, models

ONBOARDING = ["invited", "opened", "at_amazon", "declined", "link_expired"]
# The newest of these events in a never-connected seller"s history names its step.
STEP_OF_EVENT = {
    "invited": "invited",
    "reauth_link_created": "invited",
    "account_released": "invited",
    "consent_started": "at_amazon",
    "consent_error": "opened",
    "exchange_failed": "opened",
    "denied": "declined",
}


def pending_to_steps(apps, schema_editor):
    Seller = apps.get_model("sellers", "Seller")
    Event = apps.get_model("sellers", "Event")
    Invitation = apps.get_model("sellers", "Invitation")
    from django.utils import timezone

    now = timezone.now()
    for seller_id in Seller.objects.filter(status="pending").values_list("pk", flat=True).iterator():
        last = (
            Event.objects.filter(seller_id=seller_id, kind__in=list(STEP_OF_EVENT))
            .order_by("-created_at", "-id")
            .values_list("kind", flat=True)
            .first()
        )
        step = STEP_OF_EVENT.get(last or "", "invited")
        links = Invitation.objects.filter(seller_id=seller_id)
        if step != "declined" and links.exists() and not links.filter(expires_at__gt=now).exists():
            step = "link_expired"
        Seller.objects.filter(pk=seller_id).update(status=step)


def steps_to_pending(apps, schema_editor):
    apps.get_model("sellers", "Seller").objects.filter(status__in=ONBOARDING).update(status="pending")


class Migration(migrations.Migration):
    dependencies = [
        ("sellers", "0006_grant_refresh_claim"),
    ]

    operations = [
        migrations.AlterField(
            model_name="event",
            name="kind",
            field=models.CharField(choices=[("invited", "Invited"), ("reauth_link_created", "Re-authorization link created"), ("reauth_link_emailed", "Re-authorization link emailed"), ("link_opened", "Opened the link"), ("link_expired", "Link expired unused"), ("consent_started", "Consent started"), ("granted", "Granted"), ("partially_granted", "Partially granted"), ("reauthorized", "Re-authorized"), ("denied", "Denied"), ("consent_error", "Consent error"), ("exchange_failed", "Code exchange failed"), ("revoked", "Revoked"), ("marked_revoked", "Marked revoked by staff"), ("refresh_failing", "Refresh failing"), ("refresh_recovered", "Refresh recovered"), ("scope_refused", "Scope refused by Amazon"), ("status_changed", "Status changed"), ("expired", "Authorization expired"), ("connection_tested", "Connection tested"), ("credentials_invalid", "App credentials rejected"), ("credentials_recovered", "App credentials working again"), ("secret_rotated", "Client secret rotated"), ("secret_expiry_notice", "Client secret expiry notice"), ("requirements_changed", "Scope requirements changed"), ("refresh_requested", "Refresh requested by staff"), ("exported", "Exported by staff"), ("identity_review_opened", "Held for identity review"), ("identity_review_approved", "Identity review approved"), ("identity_review_rejected", "Identity review rejected"), ("identity_review_expired", "Identity review expired"), ("account_released", "Amazon account released"), ("api_key_created", "API key created"), ("api_key_revoked", "API key revoked")], db_index=True, max_length=32),
        ),
        migrations.AlterField(
            model_name="seller",
            name="status",
            field=models.CharField(choices=[("invited", "Invited"), ("opened", "Opened the link"), ("at_amazon", "At Amazon"), ("declined", "Declined"), ("link_expired", "Link expired"), ("active", "Active"), ("partial", "Partial"), ("revoked", "Revoked"), ("expired", "Expired"), ("failing", "Failing")], db_index=True, default="invited", max_length=16),
        ),
        migrations.RunPython(pending_to_steps, steps_to_pending),
    ]
