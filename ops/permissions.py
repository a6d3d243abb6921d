"""Who may use the ops console: staff whose ops group lets them see every order and rider.

The console shows every live order and every working rider's position, so it needs both view
permissions (the dispatcher and support groups have them; finance, who sees orders but not
riders, does not). Acting from it needs the same permission as in the admin
(orders.assign_rider, the dispatcher group); the services check it again.
"""

from rest_framework.permissions import BasePermission

CONSOLE_PERMISSIONS = ("orders.view_order", "riders.view_rider")
ASSIGN_PERMISSION = "orders.assign_rider"


def console_allowed(user) -> bool:
    """Staff who may watch the console. Reads the user's permissions (one query, then cached)."""
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perms(CONSOLE_PERMISSIONS)
    )


def assign_allowed(user) -> bool:
    return console_allowed(user) and user.has_perm(ASSIGN_PERMISSION)


class CanWatchConsole(BasePermission):
    message = "You need an ops group that sees every order and rider (dispatcher or support)."
    code = "permission_denied"

    def has_permission(self, request, view):
        return console_allowed(request.user)


class CanAssignRiders(BasePermission):
    message = "You need the assign-rider permission."
    code = "permission_denied"

    def has_permission(self, request, view):
        return assign_allowed(request.user)
