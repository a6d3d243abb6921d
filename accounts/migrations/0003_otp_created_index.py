"""An index on the login codes' creation time, for SMS_HOURLY_BUDGET (the hour's codes, all
numbers). CONCURRENTLY, outside a transaction: sign-ins keep arriving while it is built."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("accounts", "0002_otp_challenge_and_sms_outbox"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="otpchallenge",
            index=models.Index(fields=["created_at"], name="otp_created"),
        ),
    ]
