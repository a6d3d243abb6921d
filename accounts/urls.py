"""Auth URLs, mounted at /api/v1/auth/."""

from django.urls import path

from accounts.apis import LogoutApi, MeApi, OtpRequestApi, OtpVerifyApi, TokenRefreshApi

app_name = "accounts"

urlpatterns = [
    path("otp/request/", OtpRequestApi.as_view(), name="otp-request"),
    path("otp/verify/", OtpVerifyApi.as_view(), name="otp-verify"),
    path("token/refresh/", TokenRefreshApi.as_view(), name="token-refresh"),
    path("logout/", LogoutApi.as_view(), name="logout"),
    path("me/", MeApi.as_view(), name="me"),
]
