"""Sign-in and sign-up messages in both languages (the app's convention; Django's own are
Chinese only under LANGUAGE_CODE zh-hans): the password validators AUTH_PASSWORD_VALIDATORS
names, and the forms the sign-in and sign-up pages use."""
from __future__ import annotations

from django import forms
from django.contrib.auth import password_validation as stock
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import ValidationError


class _Bilingual:
    """Django's own check, its failure said in both languages (`message` and `help` may name the
    validator's settings, e.g. {v.min_length})."""

    message: str
    code: str
    help: str

    def validate(self, password, user=None):
        try:
            super().validate(password, user)
        except ValidationError as exc:
            raise ValidationError(self.message.format(v=self), code=self.code) from exc

    def get_help_text(self):
        return self.help.format(v=self)


class MinimumLengthValidator(_Bilingual, stock.MinimumLengthValidator):
    message = "密码太短，至少 {v.min_length} 个字符。 The password is too short: it needs at least {v.min_length} characters."
    code = "password_too_short"
    help = "至少 {v.min_length} 个字符。 At least {v.min_length} characters."


class UserAttributeSimilarityValidator(_Bilingual, stock.UserAttributeSimilarityValidator):
    message = "密码和用户名太像。 The password is too similar to the username."
    code = "password_too_similar"
    help = "不能和用户名太像。 Not too similar to the username."


class CommonPasswordValidator(_Bilingual, stock.CommonPasswordValidator):
    message = "这个密码太常见。 This password is too common."
    code = "password_too_common"
    help = "不能是常见密码。 Not a commonly used password."


class NumericPasswordValidator(_Bilingual, stock.NumericPasswordValidator):
    message = "密码不能全是数字。 The password cannot be entirely numeric."
    code = "password_entirely_numeric"
    help = "不能全是数字。 Not entirely numeric."


USERNAME_ERRORS = {
    "required": "请填写用户名。 The username is required.",
    "unique": "这个用户名已被使用。 That username is taken.",
    "invalid": "用户名只能包含字母、数字和 @/./+/-/_。 A username may contain only letters, digits and @/./+/-/_.",
    "max_length": "用户名最多 %(limit_value)d 个字符（现在 %(show_value)d 个）。 "
                  "A username may have at most %(limit_value)d characters (it has %(show_value)d).",
}


class SignUpForm(UserCreationForm):
    error_messages = {"password_mismatch": "两次输入的密码不一致。 The two passwords do not match."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        username = self.fields["username"]
        username.label = "用户名 Username"
        username.help_text = "最多 150 个字符：字母、数字和 @/./+/-/_。 Up to 150 characters: letters, digits and @/./+/-/_."
        username.error_messages.update(USERNAME_ERRORS)
        for validator in username.validators:  # the model's validators carry their own message
            if getattr(validator, "code", None) == "invalid":
                validator.message = USERNAME_ERRORS["invalid"]
        self.fields["password1"].label = "密码 Password"
        self.fields["password1"].help_text = stock.password_validators_help_text_html()
        self.fields["password2"].label = "确认密码 Password again"
        self.fields["password2"].help_text = "再输入一次，以便核对。 The same password again, to check it."
        for name in ("password1", "password2"):
            self.fields[name].error_messages["required"] = "请填写密码。 The password is required."

    def clean_username(self):
        try:
            return super().clean_username()
        except ValidationError as exc:
            raise ValidationError(USERNAME_ERRORS["unique"], code="unique") from exc


class SignInForm(AuthenticationForm):
    error_messages = {
        "invalid_login": "用户名或密码不对（区分大小写）。 The username or password is wrong (both are case-sensitive).",
        "inactive": "这个账户已停用。 This account is inactive.",
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].label = "用户名 Username"
        self.fields["password"].label = "密码 Password"
        self.fields["username"].error_messages["required"] = USERNAME_ERRORS["required"]
        self.fields["password"].error_messages["required"] = "请填写密码。 The password is required."
