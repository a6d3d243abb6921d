"""SMS providers behind one interface; SMS_PROVIDER picks dummy, msg91 or twilio."""

import logging
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import httpx
from django.conf import settings

from accounts.phone import mask_phone

logger = logging.getLogger(__name__)

_CODE = re.compile(r"\d{4,}")


def mask_codes(text: str) -> str:
    """'Your code is 123456' -> 'Your code is ******': safe for logs and settled records."""
    return _CODE.sub(lambda match: "*" * len(match.group()), text)


class SmsError(Exception):
    """The provider did not take the message. Messages never carry the SMS text."""


class SmsTemporaryError(SmsError):
    """Worth retrying: a timeout, a connection failure, a 5xx or a 429."""


class SmsRejectedError(SmsError):
    """Retrying will not help: bad credentials, a refused number or template, a 4xx."""


@dataclass(frozen=True)
class OutgoingSms:
    phone: str
    body: str
    params: dict[str, str] = field(default_factory=dict)


class SmsProvider(ABC):
    name: ClassVar[str]

    @abstractmethod
    def send(self, sms: OutgoingSms) -> str:
        """Hands the message over; returns the provider's message id ("" if it has none)."""


class DummySmsProvider(SmsProvider):
    """Sends nothing: the SmsMessage row is the outbox that `manage.py sms_outbox` prints."""

    name = "dummy"

    def send(self, sms: OutgoingSms) -> str:
        logger.info("dummy SMS to %s: %s", mask_phone(sms.phone), mask_codes(sms.body))
        return ""


class HttpSmsProvider(SmsProvider):
    def _post(self, url: str, **kwargs) -> httpx.Response:
        try:
            response = httpx.post(url, timeout=settings.SMS_HTTP_TIMEOUT_SECONDS, **kwargs)
        except httpx.TimeoutException as error:
            raise SmsTemporaryError(f"{self.name} timed out ({type(error).__name__})") from None
        except httpx.TransportError as error:
            raise SmsTemporaryError(f"{self.name} unreachable ({type(error).__name__})") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise SmsTemporaryError(f"{self.name} answered HTTP {response.status_code}")
        if response.status_code >= 400:
            # Providers' error bodies are short JSON; digits are masked in case one echoes the text.
            detail = mask_codes(response.text[:200])
            raise SmsRejectedError(f"{self.name} refused: HTTP {response.status_code} {detail}")
        return response

    @staticmethod
    def _json(response: httpx.Response) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise SmsRejectedError(f"unexpected answer: HTTP {response.status_code}, not JSON")
        return body


class Msg91SmsProvider(HttpSmsProvider):
    """MSG91's flow API: India's DLT rules only let registered templates through, so the text
    lives in the MSG91 template (MSG91_OTP_TEMPLATE_ID, using ##otp##) and we send variables."""

    name = "msg91"

    def send(self, sms: OutgoingSms) -> str:
        response = self._post(
            f"{settings.MSG91_BASE_URL.rstrip('/')}/api/v5/flow",
            headers={"authkey": settings.MSG91_AUTH_KEY, "accept": "application/json"},
            json={
                "template_id": settings.MSG91_OTP_TEMPLATE_ID,
                "short_url": "0",
                # MSG91 wants the number with its country code and without the plus.
                "recipients": [{"mobiles": sms.phone.lstrip("+"), **sms.params}],
            },
        )
        body = self._json(response)
        if body.get("type") != "success":
            raise SmsRejectedError(f"msg91 refused: {mask_codes(str(body.get('message')))[:200]}")
        return str(body.get("message", ""))


class TwilioSmsProvider(HttpSmsProvider):
    """Twilio's Messages resource: form-encoded, HTTP basic auth with the account SID."""

    name = "twilio"

    def send(self, sms: OutgoingSms) -> str:
        account = settings.TWILIO_ACCOUNT_SID
        response = self._post(
            f"{settings.TWILIO_BASE_URL.rstrip('/')}/2010-04-01/Accounts/{account}/Messages.json",
            auth=(account, settings.TWILIO_AUTH_TOKEN),
            data={"To": sms.phone, "From": settings.TWILIO_FROM_NUMBER, "Body": sms.body},
        )
        return str(self._json(response).get("sid", ""))


PROVIDERS: dict[str, type[SmsProvider]] = {
    provider.name: provider for provider in (DummySmsProvider, Msg91SmsProvider, TwilioSmsProvider)
}


def get_sms_provider(name: str | None = None) -> SmsProvider:
    """The provider called `name`, or the configured one (settings are read on every call)."""
    return PROVIDERS[name or settings.SMS_PROVIDER]()
