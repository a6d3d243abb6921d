"""Base classes for the apps' API views."""

from rest_framework.permissions import AllowAny
from rest_framework.views import APIView


# Open to anyone: no authentication, no permission (health, /api/config/). No docstring: the
# schema would take it as every subclass's description.
class PublicApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
