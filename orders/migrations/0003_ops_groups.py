"""Ops groups and what each may do; staff rights come from these, never from is_staff alone.

dispatcher: watches orders and riders, cancels any order.
support:    watches orders and payments, cancels any order, refunds.
finance:    watches orders, payments and webhooks, refunds, edits service areas and tariffs.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

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
    # Permissions are normally made after all migrations (post_migrate); make them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codes in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for code in codes:
            app_label, codename = code.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


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
