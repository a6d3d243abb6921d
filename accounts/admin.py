from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm

from accounts.models import OtpChallenge, SmsMessage, User


class PhoneUserCreationForm(UserCreationForm):
    class Meta:
        model = User
        fields = ["phone", "name"]


class PhoneUserChangeForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = PhoneUserChangeForm
    add_form = PhoneUserCreationForm
    ordering = ["-date_joined"]
    list_display = ["phone", "name", "is_customer", "is_rider", "is_staff", "is_active"]
    list_filter = ["is_customer", "is_rider", "is_staff", "is_active"]
    search_fields = ["phone", "name"]
    readonly_fields = ["date_joined", "last_login"]
    fieldsets = [
        (None, {"fields": ["phone", "name", "password"]}),
        ("Roles", {"fields": ["is_customer", "is_rider", "is_staff", "is_active"]}),
        ("Permissions", {"fields": ["is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["date_joined", "last_login"]}),
    ]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["phone", "name", "password1", "password2"]}),
    ]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the login flow: staff look, nobody edits."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(OtpChallenge)
class OtpChallengeAdmin(ReadOnlyAdmin):
    # code_hmac is left out: it is useless to a person and only helps someone guessing offline.
    list_display = ["phone", "created_at", "expires_at", "attempts", "used_at", "burned_at", "ip"]
    list_filter = ["created_at"]
    search_fields = ["phone"]
    fields = ["phone", "created_at", "expires_at", "attempts", "used_at", "burned_at", "ip"]
    date_hierarchy = "created_at"


@admin.register(SmsMessage)
class SmsMessageAdmin(ReadOnlyAdmin):
    list_display = ["phone", "provider", "status", "attempts", "created_at", "sent_at"]
    list_filter = ["provider", "status", "created_at"]
    search_fields = ["phone", "provider_message_id"]
    fields = [
        "phone",
        "provider",
        "status",
        "attempts",
        "body",
        "provider_message_id",
        "error",
        "created_at",
        "sent_at",
    ]
    date_hierarchy = "created_at"
