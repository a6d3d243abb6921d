"""The accounts app's refusals: each code a client may read, its status and message."""

import enum

from rest_framework import status

from core.exceptions import ErrorCode


@enum.unique
class AccountError(ErrorCode):
    OTP_COOLDOWN = (
        "otp_cooldown",
        status.HTTP_429_TOO_MANY_REQUESTS,
        "A code was sent moments ago; wait before asking for another.",
    )
    OTP_SEND_LIMIT = (
        "throttled",
        status.HTTP_429_TOO_MANY_REQUESTS,
        "Too many codes were sent to this number; try again later.",
    )
    PHONE_COUNTRY_NOT_SERVED = (
        "phone_country_not_served",
        status.HTTP_400_BAD_REQUEST,
        "Login codes can only be sent to numbers of the countries this service runs in.",
    )
    SMS_BUDGET_SPENT = (
        "sms_budget_spent",
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "Login codes are paused for a few minutes; try again shortly.",
    )
    STAFF_PASSWORD_INVALID = (
        "staff_password_invalid",
        status.HTTP_403_FORBIDDEN,
        "Staff sign in with their password as well as the code; ask for a new code.",
    )
    OTP_INVALID = (
        "otp_invalid",
        status.HTTP_400_BAD_REQUEST,
        "That code is not right. Check the SMS or ask for a new code.",
    )
    OTP_EXPIRED = (
        "otp_expired",
        status.HTTP_400_BAD_REQUEST,
        "That code has expired; ask for a new one.",
    )
    OTP_LOCKED = (
        "otp_locked",
        status.HTTP_400_BAD_REQUEST,
        "Too many wrong codes; ask for a new one.",
    )
    NOT_STAFF = (
        "not_staff",
        status.HTTP_403_FORBIDDEN,
        "This number does not belong to a staff account.",
    )
    ACCOUNT_DISABLED = (
        "account_disabled",
        status.HTTP_403_FORBIDDEN,
        "This account is disabled; contact support.",
    )
    REFRESH_TOKEN_INVALID = (
        "token_not_valid",
        status.HTTP_401_UNAUTHORIZED,
        "The refresh token is invalid, expired or already used; sign in again.",
    )
    # Logging out with a refresh token that is not a valid one of the caller's: the request is
    # wrong (400), the caller's session is not (their access token worked).
    LOGOUT_TOKEN_INVALID = (
        "token_not_valid",
        status.HTTP_400_BAD_REQUEST,
        "The refresh token is invalid, expired or already used.",
    )
