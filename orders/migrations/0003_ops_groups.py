"""Ops groups and what each may do; staff rights come from these, never from is_staff alone.

dispatcher: watches orders and riders, cancels any order.
support:    watches orders and payments, cancels any order, refunds.
finance:    watches orders, payments and webhooks, refunds, edits service areas and tariffs.
"""

from django.db import migrations

from core.permissions import grant

GROUPS = {
    "dispatcher": [
        "orders.view_order",
        "orders.view_orderevent",
        "orders.view_quote",
        "orders.view_servicearea",
        "orders.cancel_any_order",
        "riders.view_rider",
    ],
    "support": [
        "orders.view_order",
        "orders.view_orderevent",
        "orders.view_quote",
        "orders.view_rating",
        "orders.cancel_any_order",
        "orders.refund_order",
        "payments.view_payment",
        "payments.view_refund",
        "riders.view_rider",
    ],
    "finance": [
        "orders.view_order",
        "orders.view_orderevent",
        "orders.view_quote",
        "orders.refund_order",
        "orders.view_servicearea",
        "orders.add_servicearea",
        "orders.change_servicearea",
        "orders.view_tariff",
        "orders.add_tariff",
        "orders.change_tariff",
        "payments.view_payment",
        "payments.view_refund",
        "payments.view_webhookevent",
    ],
}


def create_groups(apps, schema_editor):
    grant(apps, GROUPS)


def delete_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("orders", "0002_quotes_orders_events_ratings"),
        ("payments", "0001_payments_refunds_webhook_events"),
        ("riders", "0001_rider_profile_and_location"),
    ]

    operations = [migrations.RunPython(create_groups, delete_groups)]
