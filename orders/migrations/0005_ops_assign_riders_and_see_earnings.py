"""Dispatchers assign and unassign riders by hand; every ops group can read rider earnings."""

from django.db import migrations

from core.permissions import grant, revoke

GRANTS = {
    "dispatcher": ["orders.assign_rider", "delivery.view_offer", "riders.view_earning"],
    "support": ["delivery.view_offer", "riders.view_earning"],
    "finance": ["riders.view_earning"],
}


def forwards(apps, schema_editor):
    grant(apps, GRANTS)


def backwards(apps, schema_editor):
    revoke(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0004_delivery_code_attempts_and_tracking_seq"),
        ("delivery", "0002_offer_withdrawn_reason_and_released"),
        ("riders", "0003_earnings"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
