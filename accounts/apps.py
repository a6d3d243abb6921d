from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from accounts.services import otp_challenge_purge
        from core import purges

        purges.register("OTP challenges", otp_challenge_purge)
