"""Payment URLs, mounted at /api/v1/payments/."""

from django.urls import path

from payments.apis import RazorpayOrderCreateApi, RazorpayVerifyApi, RazorpayWebhookApi

app_name = "payments"

urlpatterns = [
    path("razorpay/order/", RazorpayOrderCreateApi.as_view(), name="razorpay-order"),
    path("razorpay/verify/", RazorpayVerifyApi.as_view(), name="razorpay-verify"),
    path("razorpay/webhook/", RazorpayWebhookApi.as_view(), name="razorpay-webhook"),
]
