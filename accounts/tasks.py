"""Celery tasks for accounts: sending SMS on the high queue."""

from celery import shared_task

from accounts.services import sms_deliver
from accounts.sms import SmsTemporaryError

SEND_SMS_MAX_RETRIES = 3


@shared_task(
    bind=True,
    autoretry_for=(SmsTemporaryError,),
    max_retries=SEND_SMS_MAX_RETRIES,
    # 2, 4, 8 s (with jitter): a login code is useless after OTP_EXPIRY_SECONDS, so no long waits.
    retry_backoff=2,
    retry_backoff_max=30,
    retry_jitter=True,
    ignore_result=True,
)
def send_sms(self, sms_id: int) -> None:
    """Takes the id of a queued SmsMessage; a refused message is recorded, not retried."""
    sms_deliver(sms_id=sms_id, final_attempt=self.request.retries >= self.max_retries)
