from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm

from accounts.models import User


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
