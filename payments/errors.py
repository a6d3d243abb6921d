"""The payments app's refusals: each code a client may read, its status and message."""

import enum

from rest_framework import status

from core.exceptions import ErrorCode


@enum.unique
class PaymentError(ErrorCode):
    NOT_EXPECTED = (
        "payment_not_expected",
        status.HTTP_409_CONFLICT,
        "This order is not waiting for an online payment.",
    )
    SIGNATURE_INVALID = (
        "signature_invalid",
        status.HTTP_400_BAD_REQUEST,
        "The payment signature does not match.",
    )
    MISMATCH = (
        "payment_mismatch",
        status.HTTP_409_CONFLICT,
        "The payment does not match the order's amount or currency; it will be refunded.",
    )
    NOT_REFUNDABLE = (
        "not_refundable",
        status.HTTP_409_CONFLICT,
        "This order has no captured payment left to refund.",
    )
    PROVIDER_UNAVAILABLE = (
        "payment_provider_unavailable",
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "The payment provider is not answering; try again shortly.",
    )
    PROVIDER_ERROR = (
        "payment_provider_error",
        status.HTTP_502_BAD_GATEWAY,
        "The payment provider refused the request.",
    )
