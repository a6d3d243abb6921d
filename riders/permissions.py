"""Who may call the rider API: signed-in riders (a rider profile is made on first use)."""

from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.views import APIView

from riders.errors import RiderError
from riders.models import Rider
from riders.services import rider_get_or_create


class IsRider(BasePermission):
    message = RiderError.NOT_A_RIDER.message
    code = RiderError.NOT_A_RIDER.code

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and request.user.is_rider)


class RiderApi(APIView):
    permission_classes = [IsAuthenticated, IsRider]

    def rider(self) -> Rider:
        return rider_get_or_create(user=self.request.user)
