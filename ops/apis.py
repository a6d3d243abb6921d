"""The ops console's JSON: its snapshot, the order panel and the panel's two actions.

For the console page only, in a staff browser signed in through the admin: the session is the
credential (POSTs carry the CSRF token, as DRF's SessionAuthentication demands), not a JWT, and
none of this is part of the apps' API, so it stays out of the OpenAPI schema. Assigning goes
through the same services as the admin's assign page.
"""

from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.exceptions import ApiError
from delivery.services.staff_actions import order_assign_by_staff, order_unassign_by_staff
from ops.permissions import CanAssignRiders, CanWatchConsole
from ops.selectors import console_snapshot, order_detail
from orders.errors import OrderError
from orders.models import Order

NO_STORE = {"Cache-Control": "no-store"}


class ConsoleSessionAuthentication(SessionAuthentication):
    """The admin session. Naming a scheme makes DRF answer 401 (not 403) to anonymous
    callers, so the page can tell "sign in again" from "not for you"."""

    def authenticate_header(self, request):
        return 'Session realm="ops"'


class ConsoleApi(APIView):
    authentication_classes = [ConsoleSessionAuthentication]
    permission_classes = [IsAuthenticated, CanWatchConsole]
    schema = None  # not part of the apps' API (drf-spectacular leaves these out)


class ConsoleSnapshotApi(ConsoleApi):
    def get(self, request):
        return Response(console_snapshot(user=request.user), headers=NO_STORE)


class ConsoleOrderApi(ConsoleApi):
    def get(self, request, order_id):
        return Response(order_detail(user=request.user, order_id=order_id), headers=NO_STORE)


def _existing_order_id(order_id):
    if not Order.objects.filter(pk=order_id).exists():
        raise ApiError(OrderError.NOT_FOUND)
    return order_id


class ConsoleOrderAssignApi(ConsoleApi):
    permission_classes = [IsAuthenticated, CanWatchConsole, CanAssignRiders]

    class InputSerializer(serializers.Serializer):
        rider_id = serializers.UUIDField()

    def post(self, request, order_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order_assign_by_staff(
            order_id=_existing_order_id(order_id),
            rider_id=serializer.validated_data["rider_id"],
            staff=request.user,
            reason=f"Assigned in the ops console by {request.user.phone}",
        )
        return Response(order_detail(user=request.user, order_id=order_id), headers=NO_STORE)


class ConsoleOrderUnassignApi(ConsoleApi):
    permission_classes = [IsAuthenticated, CanWatchConsole, CanAssignRiders]

    def post(self, request, order_id):
        order_unassign_by_staff(
            order_id=_existing_order_id(order_id),
            staff=request.user,
            reason=f"Unassigned in the ops console by {request.user.phone}",
        )
        return Response(order_detail(user=request.user, order_id=order_id), headers=NO_STORE)
