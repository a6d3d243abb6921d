"""Users are keyed by phone number; one person may be a customer, a rider and staff."""

import contextlib
import uuid

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from accounts.phone import normalize_phone, validate_e164


class UserManager(BaseUserManager):
    use_in_migrations = True

    def get_by_natural_key(self, phone):
        # The admin login accepts "98123 45678" as well as "+919812345678".
        with contextlib.suppress(ValidationError):  # an unparsable number matches nobody
            phone = normalize_phone(phone)
        return self.get(phone=phone)

    def create_user(self, phone, password=None, **fields):
        user = self.model(phone=normalize_phone(phone), **fields)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()  # customers and riders sign in with an OTP
        user.save(using=self._db)
        return user

    def create_superuser(self, phone, password=None, **fields):
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(phone, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    phone = models.CharField(
        max_length=16, unique=True, validators=[validate_e164], help_text="E.164, e.g. +9198..."
    )
    name = models.CharField(max_length=100, blank=True)
    is_customer = models.BooleanField(default=False)
    is_rider = models.BooleanField(default=False)
    is_staff = models.BooleanField(default=False, help_text="Can sign in to the admin.")
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    USERNAME_FIELD = "phone"
    REQUIRED_FIELDS = ["name"]

    objects = UserManager()

    class Meta:
        ordering = ["-date_joined"]

    def __str__(self):
        return f"{self.name or 'user'} ({self.phone})"

    @property
    def roles(self) -> list[str]:
        flags = {"customer": self.is_customer, "rider": self.is_rider, "staff": self.is_staff}
        return [role for role, held in flags.items() if held]
