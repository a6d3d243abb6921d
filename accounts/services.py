"""Writes for accounts: login codes, their SMS, JWTs and the signed-in user's profile."""

import hashlib
import hmac
import logging
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import phonenumbers
from django.conf import settings
from django.contrib.auth.models import update_last_login
from django.db import connection, models, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac
from prometheus_client import Counter
from rest_framework_simplejwt.exceptions import TokenBackendError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.errors import AccountError
from accounts.models import OtpChallenge, SmsMessage, User
from accounts.phone import mask_phone
from accounts.sms import (
    DummySmsProvider,
    OutgoingSms,
    SmsRejectedError,
    SmsTemporaryError,
    get_sms_provider,
    mask_codes,
)
from core.exceptions import ApiError

logger = logging.getLogger(__name__)

OTP_REFUSED = Counter(
    "otp_requests_refused",
    "Login codes refused before any SMS: a number outside OTP_ALLOWED_COUNTRIES (country), or "
    "the hour's SMS_HOURLY_BUDGET spent (sms_budget).",
    ["reason"],
)
for _reason in ("country", "sms_budget"):
    OTP_REFUSED.labels(_reason)  # shown as 0 before the first refusal, for the alert's rate()


class LoginRole(models.TextChoices):
    CUSTOMER = "customer", "Customer"
    RIDER = "rider", "Rider"
    # Signs a staff member in without adding a customer or rider role to the account.
    STAFF = "staff", "Staff"


_ROLE_FLAGS = {LoginRole.CUSTOMER: "is_customer", LoginRole.RIDER: "is_rider"}


@dataclass(frozen=True)
class OtpRequestResult:
    expires_in: int
    resend_after: int


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


@dataclass(frozen=True)
class LoginResult:
    user: User
    access: str
    refresh: str


# --- Login codes -----------------------------------------------------------------------------


def otp_code_hmac(*, phone: str, code: str) -> str:
    # The phone is part of the message, so one stolen hash cannot be matched to other numbers.
    return salted_hmac(
        "accounts.otp", f"{phone}:{code}", secret=settings.OTP_HMAC_KEY, algorithm="sha256"
    ).hexdigest()


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


def _lock_phone(phone: str) -> None:
    """Serialises code requests for one phone until the transaction ends.

    There may be no row to lock yet (a first request), so a PostgreSQL advisory lock keyed by the
    phone stops two simultaneous requests from both passing the cooldown and the hourly cap.
    """
    key = int.from_bytes(hashlib.sha256(f"otp:{phone}".encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def otp_request(*, phone: str, ip: str | None) -> OtpRequestResult:
    """Creates a login code for `phone` and queues its SMS.

    It never looks up whether the number has an account: the answer, and the work done to
    produce it, are the same for everyone. The cooldown, the hourly cap and the hourly SMS budget
    are counted in the database, so they hold across processes and when the cache (and the
    throttles on it) lose their memory. The budget may be overshot by the requests racing past
    its check at once.
    """
    country = phonenumbers.region_code_for_number(phonenumbers.parse(phone))
    if country not in settings.OTP_ALLOWED_COUNTRIES:
        OTP_REFUSED.labels("country").inc()
        raise ApiError(
            AccountError.PHONE_COUNTRY_NOT_SERVED,
            fields={"phone": [f"Numbers of {', '.join(settings.OTP_ALLOWED_COUNTRIES)} only."]},
        )
    now = timezone.now()
    with transaction.atomic():
        _lock_phone(phone)
        sent_last_hour = list(
            OtpChallenge.objects.filter(phone=phone, created_at__gt=now - timedelta(hours=1))
            .order_by("created_at")
            .values_list("created_at", flat=True)
        )
        if sent_last_hour:
            ready_at = sent_last_hour[-1] + timedelta(seconds=settings.OTP_RESEND_COOLDOWN_SECONDS)
            if ready_at > now:
                raise ApiError(AccountError.OTP_COOLDOWN, retry_after=_seconds_until(ready_at, now))
        if len(sent_last_hour) >= settings.OTP_MAX_SENDS_PER_HOUR:
            # The next code may go once enough of this hour's codes have aged out of the window.
            ready_at = sent_last_hour[-settings.OTP_MAX_SENDS_PER_HOUR] + timedelta(hours=1)
            raise ApiError(AccountError.OTP_SEND_LIMIT, retry_after=_seconds_until(ready_at, now))
        _check_sms_budget(now)

        code = f"{secrets.randbelow(10**settings.OTP_LENGTH):0{settings.OTP_LENGTH}d}"
        OtpChallenge.objects.create(
            phone=phone,
            code_hmac=otp_code_hmac(phone=phone, code=code),
            expires_at=now + timedelta(seconds=settings.OTP_EXPIRY_SECONDS),
            ip=ip,
        )
        minutes = max(1, round(settings.OTP_EXPIRY_SECONDS / 60))
        sms_queue(
            phone=phone,
            body=f"{code} is your login code. It expires in {minutes} min. Never share it.",
            params={"otp": code},
        )
    return OtpRequestResult(
        expires_in=settings.OTP_EXPIRY_SECONDS,
        resend_after=settings.OTP_RESEND_COOLDOWN_SECONDS,
    )


def _check_sms_budget(now: datetime) -> None:
    hour = OtpChallenge.objects.filter(created_at__gt=now - timedelta(hours=1))
    if hour.count() < settings.SMS_HOURLY_BUDGET:
        return
    OTP_REFUSED.labels("sms_budget").inc()
    logger.warning("SMS_HOURLY_BUDGET (%s) spent: login code refused", settings.SMS_HOURLY_BUDGET)
    oldest = hour.order_by("created_at").values_list("created_at", flat=True).first()
    raise ApiError(
        AccountError.SMS_BUDGET_SPENT, retry_after=_seconds_until(oldest + timedelta(hours=1), now)
    )


def _otp_refusal(*, challenge: OtpChallenge | None, phone: str, otp: str, now: datetime):
    """Why `otp` does not sign in, or None when it does. Records a wrong try on the challenge."""
    if challenge is None or challenge.used_at is not None:
        return ApiError(AccountError.OTP_INVALID)
    if challenge.burned_at is not None:
        return ApiError(AccountError.OTP_LOCKED)
    if challenge.expires_at <= now:
        return ApiError(AccountError.OTP_EXPIRED)
    if hmac.compare_digest(challenge.code_hmac, otp_code_hmac(phone=phone, code=otp)):
        return None
    challenge.attempts += 1
    if challenge.attempts >= settings.OTP_MAX_ATTEMPTS:
        challenge.burned_at = now
        challenge.save(update_fields=["attempts", "burned_at", "updated_at"])
        return ApiError(AccountError.OTP_LOCKED)
    challenge.save(update_fields=["attempts", "updated_at"])
    return ApiError(AccountError.OTP_INVALID)


def _user_for_login(*, phone: str, role: str) -> User:
    """The account behind `phone`, created on a first customer or rider login.

    OTP login never grants staff: role "staff" only signs in an existing staff account.
    """
    user = User.objects.select_for_update().filter(phone=phone).first()
    if role == LoginRole.STAFF and (user is None or not user.is_staff):
        raise ApiError(AccountError.NOT_STAFF)
    if user is None:
        user = User.objects.create_user(phone)
    if not user.is_active:
        raise ApiError(AccountError.ACCOUNT_DISABLED)
    flag = _ROLE_FLAGS.get(role)
    if flag and not getattr(user, flag):
        setattr(user, flag, True)
        user.save(update_fields=[flag])
    return user


def otp_verify(
    *, phone: str, otp: str, role: str, ip: str | None, password: str = ""
) -> LoginResult:
    """Signs in with the phone's newest code: single use, expiring, burnt after 5 wrong tries.

    Locks the challenge row, so two tries of one code cannot both succeed. Staff need their
    password as well (an SMS code alone, after a SIM swap, must not yield a token that follows
    every rider); a wrong one burns the code, so each guess costs a new SMS.
    """
    now = timezone.now()
    with transaction.atomic():
        challenge = (
            OtpChallenge.objects.select_for_update()
            .filter(phone=phone)
            .order_by("-created_at", "-id")
            .first()
        )
        refusal = _otp_refusal(challenge=challenge, phone=phone, otp=otp, now=now)
        if refusal is None:
            user = _user_for_login(phone=phone, role=role)
            if role == LoginRole.STAFF and not user.check_password(password):
                challenge.burned_at = now
                challenge.save(update_fields=["burned_at", "updated_at"])
                refusal = ApiError(AccountError.STAFF_PASSWORD_INVALID)
        if refusal is None:
            challenge.used_at = now
            challenge.save(update_fields=["used_at", "updated_at"])
            update_last_login(None, user)
            refresh = RefreshToken.for_user(user)
    # Outside the transaction, so the wrong try recorded above is committed, not rolled back.
    if refusal is not None:
        logger.info("OTP refused for %s from %s: %s", mask_phone(phone), ip or "-", refusal.code)
        raise refusal
    logger.info("OTP login for user %s as %s", user.pk, role)
    return LoginResult(user=user, access=str(refresh.access_token), refresh=str(refresh))


def otp_challenge_purge(
    *, older_than: timedelta = timedelta(days=1), batch_size: int = 1000
) -> int:
    """Deletes old challenges in bounded batches (for the hourly housekeeping task).

    At least an hour must stay: the hourly send cap counts the challenges of the last hour.
    """
    if older_than < timedelta(hours=1):
        raise ValueError("keep at least an hour of OTP challenges: the hourly cap counts them")
    cutoff = timezone.now() - older_than
    deleted = 0
    while True:
        batch = list(
            OtpChallenge.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[
                :batch_size
            ]
        )
        if not batch:
            return deleted
        deleted += OtpChallenge.objects.filter(pk__in=batch).delete()[0]


# --- SMS -------------------------------------------------------------------------------------


def sms_queue(*, phone: str, body: str, params: dict[str, str] | None = None) -> SmsMessage:
    """Records an SMS and sends it from a Celery task once the transaction commits."""
    from accounts.tasks import send_sms  # the task module imports this one

    sms = SmsMessage.objects.create(
        phone=phone, body=body, params=params or {}, provider=settings.SMS_PROVIDER
    )
    # robust: a broker hiccup is logged, not turned into a 500 after the code was committed;
    # the row stays "queued" for anyone looking, and the user can ask again after the cooldown.
    transaction.on_commit(lambda: send_sms.delay(sms.pk), robust=True)
    return sms


def sms_deliver(*, sms_id: int, final_attempt: bool) -> SmsMessage | None:
    """Hands one queued SMS to its provider; raises SmsTemporaryError so the task retries.

    Safe to run twice: only a queued row is sent, under its row lock, so a redelivered task
    finds it settled. The lock is held across the provider call (at most
    SMS_HTTP_TIMEOUT_SECONDS) for exactly that reason.
    """
    failure: SmsTemporaryError | None = None
    with transaction.atomic():
        sms = SmsMessage.objects.select_for_update().filter(pk=sms_id).first()
        if sms is None or sms.status != SmsMessage.Status.QUEUED:
            return sms
        sms.attempts += 1
        outgoing = OutgoingSms(phone=sms.phone, body=sms.body, params=sms.params)
        try:
            sms.provider_message_id = get_sms_provider(sms.provider).send(outgoing)[:100]
            sms.status = SmsMessage.Status.SENT
            sms.sent_at = timezone.now()
            sms.error = ""
        except SmsTemporaryError as error:
            failure = error
            sms.error = str(error)[:300]
            if final_attempt:
                sms.status = SmsMessage.Status.FAILED
        except SmsRejectedError as error:
            sms.error = str(error)[:300]
            sms.status = SmsMessage.Status.FAILED
            logger.error("SMS %s to %s refused: %s", sms.pk, mask_phone(sms.phone), error)
        if sms.status != SmsMessage.Status.QUEUED and sms.provider != DummySmsProvider.name:
            # Settled: the code has no business staying readable in our database.
            sms.body = mask_codes(sms.body)
            sms.params = {key: mask_codes(str(value)) for key, value in sms.params.items()}
        sms.save(
            update_fields=[
                "attempts",
                "provider_message_id",
                "status",
                "sent_at",
                "error",
                "body",
                "params",
                "updated_at",
            ]
        )
    if failure is not None:
        log = logger.error if final_attempt else logger.warning
        log(
            "SMS %s to %s failed (attempt %s%s): %s",
            sms.pk,
            mask_phone(sms.phone),
            sms.attempts,
            ", giving up" if final_attempt else ", will retry",
            failure,
        )
        raise failure
    return sms


# --- JWT -------------------------------------------------------------------------------------


def _refresh_token_row(*, raw: str) -> OutstandingToken:
    """The locked outstanding-token row of a validly signed, unexpired refresh token."""
    try:
        payload = token_backend.decode(raw, verify=True)
    except TokenBackendError:
        raise ApiError(AccountError.REFRESH_TOKEN_INVALID) from None
    if payload.get(jwt_settings.TOKEN_TYPE_CLAIM) != "refresh":
        raise ApiError(AccountError.REFRESH_TOKEN_INVALID)
    # order_by(): the model's default ordering joins the user, and FOR UPDATE refuses outer joins.
    row = (
        OutstandingToken.objects.select_for_update()
        .filter(jti=payload.get(jwt_settings.JTI_CLAIM))
        .order_by()
        .first()
    )
    if row is None or row.user_id is None:
        raise ApiError(AccountError.REFRESH_TOKEN_INVALID)
    return row


def auth_token_refresh(*, refresh: str) -> TokenPair:
    """A new access token and a new refresh token; the presented one is blacklisted.

    The outstanding-token row is locked, so two refreshes racing with one token cannot both
    succeed (simplejwt's own serializer checks and blacklists without a lock).
    """
    with transaction.atomic():
        row = _refresh_token_row(raw=refresh)
        if BlacklistedToken.objects.filter(token=row).exists():
            raise ApiError(AccountError.REFRESH_TOKEN_INVALID)
        user = User.objects.filter(pk=row.user_id).first()
        if user is None or not jwt_settings.USER_AUTHENTICATION_RULE(user):
            raise ApiError(AccountError.REFRESH_TOKEN_INVALID)
        BlacklistedToken.objects.create(token=row)
        new_refresh = RefreshToken.for_user(user)
    return TokenPair(access=str(new_refresh.access_token), refresh=str(new_refresh))


def auth_logout(*, user: User, refresh: str) -> None:
    """Blacklists the user's refresh token. Access tokens live on until they expire (minutes)."""
    with transaction.atomic():
        try:
            row = _refresh_token_row(raw=refresh)
        except ApiError:
            raise ApiError(AccountError.LOGOUT_TOKEN_INVALID) from None
        if row.user_id != user.pk:
            raise ApiError(
                AccountError.LOGOUT_TOKEN_INVALID, "The refresh token does not belong to you."
            )
        # get_or_create: logging out twice is not an error.
        BlacklistedToken.objects.get_or_create(token=row)


# --- Profile ---------------------------------------------------------------------------------


def user_update(*, user: User, name: str) -> User:
    user.name = name.strip()
    user.save(update_fields=["name"])
    return user
