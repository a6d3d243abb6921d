"""Auth endpoints: OTP login, JWT refresh and logout, and the signed-in user."""

import ipaddress

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.phone import normalize_phone
from accounts.services import (
    LoginRole,
    auth_logout,
    auth_token_refresh,
    otp_request,
    otp_verify,
    user_update,
)
from accounts.throttles import (
    OtpRequestIpThrottle,
    OtpRequestPhoneThrottle,
    OtpVerifyIpThrottle,
    OtpVerifyPhoneThrottle,
)
from core.openapi import error_response


def _client_ip(request) -> str | None:
    """REMOTE_ADDR, which the ASGI server has already resolved behind trusted proxies."""
    address = request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


class PhoneField(serializers.CharField):
    """Accepts "+919812345678" or "98123 45678"; yields E.164."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 32)
        kwargs.setdefault("help_text", "E.164, e.g. +919812345678 (Indian numbers may omit +91).")
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        try:
            return normalize_phone(super().to_internal_value(data))
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from None


class UserOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    phone = serializers.CharField()
    name = serializers.CharField()
    roles = serializers.ListField(child=serializers.ChoiceField(choices=LoginRole.choices))


class PublicAuthApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]


class OtpRequestApi(PublicAuthApi):
    throttle_classes = [OtpRequestIpThrottle, OtpRequestPhoneThrottle]

    class InputSerializer(serializers.Serializer):
        phone = PhoneField()

    class OutputSerializer(serializers.Serializer):
        expires_in = serializers.IntegerField(help_text="Seconds the code stays valid.")
        resend_after = serializers.IntegerField(help_text="Seconds before asking again.")

    @extend_schema(
        summary="Send a login code by SMS",
        description="The same answer whether or not the number has an account. 429 with "
        "`otp_cooldown` inside the resend cooldown, `throttled` past a per-phone, per-IP or "
        "hourly limit; both carry Retry-After.",
        request=InputSerializer,
        responses={
            202: OutputSerializer,
            400: error_response("invalid (not a phone number), or phone_country_not_served."),
            429: error_response("otp_cooldown or throttled; see Retry-After."),
            503: error_response(
                "sms_budget_spent: the hour's SMS budget is spent (Retry-After), or "
                "service_unavailable."
            ),
        },
        auth=[],
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = otp_request(phone=serializer.validated_data["phone"], ip=_client_ip(request))
        return Response(self.OutputSerializer(result).data, status=status.HTTP_202_ACCEPTED)


class OtpVerifyApi(PublicAuthApi):
    throttle_classes = [OtpVerifyIpThrottle, OtpVerifyPhoneThrottle]

    class InputSerializer(serializers.Serializer):
        phone = PhoneField()
        otp = serializers.RegexField(
            rf"^\d{{{settings.OTP_LENGTH}}}$", help_text=f"The {settings.OTP_LENGTH}-digit code."
        )
        role = serializers.ChoiceField(
            choices=LoginRole.choices,
            help_text="customer or rider: adds that role (creating the account on first "
            "login). staff: signs in an existing staff account without adding a role, and "
            "needs `password` too.",
        )
        password = serializers.CharField(
            required=False,
            default="",
            allow_blank=True,
            write_only=True,
            trim_whitespace=False,
            max_length=256,
            style={"input_type": "password"},
            help_text="role staff only: the staff account's password (the admin's).",
        )

    class OutputSerializer(serializers.Serializer):
        access = serializers.CharField()
        refresh = serializers.CharField()
        user = UserOutputSerializer()

    @extend_schema(
        summary="Sign in with the code",
        description="Answers an access token (ACCESS_TOKEN_LIFETIME_MINUTES, send it as "
        "`Authorization: Bearer <access>` and as `?token=` on the sockets) and a refresh token "
        "(REFRESH_TOKEN_LIFETIME_DAYS). `role` customer or rider adds that role to the account, "
        "making it on first sign-in.",
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            400: error_response(
                "otp_invalid, otp_expired (ask again), otp_locked (5 wrong tries)."
            ),
            403: error_response(
                "not_staff, staff_password_invalid (the code is then used up) or account_disabled."
            ),
            429: error_response("throttled; see Retry-After."),
        },
        auth=[],
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = otp_verify(**serializer.validated_data, ip=_client_ip(request))
        return Response(self.OutputSerializer(result).data)


class TokenRefreshApi(PublicAuthApi):
    # Public by nature: the refresh token in the body is the credential.

    class InputSerializer(serializers.Serializer):
        refresh = serializers.CharField()

    class OutputSerializer(serializers.Serializer):
        access = serializers.CharField()
        refresh = serializers.CharField(help_text="Replaces the one sent, which stops working.")

    @extend_schema(
        summary="Rotate the refresh token",
        description="A new access token and a new refresh token; the refresh token sent stops "
        "working, so keep the new one. Call it when the access token expires (a 401 with "
        "`token_not_valid`), not before every call.",
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            400: error_response("No refresh token given."),
            401: error_response("token_not_valid: invalid, expired or already used."),
        },
        auth=[],
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tokens = auth_token_refresh(refresh=serializer.validated_data["refresh"])
        return Response(self.OutputSerializer(tokens).data)


class LogoutApi(APIView):
    class InputSerializer(serializers.Serializer):
        refresh = serializers.CharField()

    @extend_schema(
        summary="Log out: the refresh token stops working",
        description="The access token stays valid until it expires (ACCESS_TOKEN_LIFETIME).",
        request=InputSerializer,
        responses={
            204: OpenApiResponse(description="Logged out."),
            400: error_response("token_not_valid: not a refresh token of yours."),
        },
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        auth_logout(user=request.user, refresh=serializer.validated_data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100, allow_blank=True)

        def validate(self, attrs):
            others = sorted(set(self.initial_data) - {"name"})
            if others:
                raise serializers.ValidationError(
                    {field: ["Only name can be changed here."] for field in others}
                )
            return attrs

    @extend_schema(
        summary="The signed-in user",
        description="Phone, name and roles: customer, rider, staff.",
        responses=UserOutputSerializer,
    )
    def get(self, request):
        return Response(UserOutputSerializer(request.user).data)

    @extend_schema(
        summary="Change the signed-in user's name",
        description="Only `name` can be changed; the phone is the account.",
        request=InputSerializer,
        responses={
            200: UserOutputSerializer,
            400: error_response("Invalid name, or a field other than name."),
        },
    )
    def patch(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_update(user=request.user, name=serializer.validated_data["name"])
        return Response(UserOutputSerializer(user).data)
