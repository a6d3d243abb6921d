"""Granting permissions to the ops groups from data migrations."""

from django.contrib.auth.management import create_permissions


def ensure_permissions(apps) -> None:
    """Creates every model's permissions now; Django normally waits for post_migrate."""
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None


def _permission(apps, code: str):
    app_label, codename = code.split(".")
    return apps.get_model("auth", "Permission").objects.get(
        content_type__app_label=app_label, codename=codename
    )


def grant(apps, grants: dict[str, list[str]]) -> None:
    """Gives each group ("name": ["app.codename", ...]) its permissions, creating the group."""
    ensure_permissions(apps)
    Group = apps.get_model("auth", "Group")
    for name, codes in grants.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*(_permission(apps, code) for code in codes))


def revoke(apps, grants: dict[str, list[str]]) -> None:
    """Undoes grant() for groups that still exist; the groups themselves stay."""
    Group = apps.get_model("auth", "Group")
    for group in Group.objects.filter(name__in=grants):
        group.permissions.remove(*(_permission(apps, code) for code in grants[group.name]))
