"""The help center's request form, its signed per-render token and its spam checks.

Every rendering of the form carries a `token`: a signed {inbox, nonce, issued-at}. The nonce is
the submission's dedupe key (channels_inbox/adapters/web_form.py), so a double submit of one
rendered form creates one ticket; the time refuses a form sent back faster than a person
types (HELP_FORM_MIN_SECONDS) and one older than HELP_FORM_MAX_AGE_SECONDS. A hidden
`website` field (the honeypot) is left empty by people and filled by naive bots.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.core import signing
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from channels_inbox.actions.receive_web_form import WebFormSubmission
from channels_inbox.adapters.web_form import setting_flag
from channels_inbox.models import Inbox

TOKEN_SALT = "switchboard.help-form"  # noqa: S105 - a signing salt, not a secret
SENT_SALT = "switchboard.help-form-sent"
HONEYPOT = "website"
MAX_NAME_CHARS = 200
MAX_SUBJECT_CHARS = 300
MAX_FILENAME_CHARS = 200


@dataclass(frozen=True)
class FormToken:
    nonce: str
    issued_at: float


class TokenProblem(Exception):
    """The token is missing or forged (`forged`), expired (`expired`) or too fresh (`too_fast`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_token(inbox: Inbox, *, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    return signing.dumps({"i": inbox.pk, "n": secrets.token_hex(16), "t": issued}, salt=TOKEN_SALT)


def read_token(inbox: Inbox, value: str, *, now: float | None = None) -> FormToken:
    """The token's nonce and time, if it was issued for this inbox and is neither too fresh nor too old."""
    try:
        data = signing.loads(value or "", salt=TOKEN_SALT)
    except signing.BadSignature:
        raise TokenProblem("forged") from None
    if not (
        isinstance(data, dict)
        and data.get("i") == inbox.pk
        and isinstance(data.get("n"), str)
        and isinstance(data.get("t"), int)
    ):
        raise TokenProblem("forged")
    now = time.time() if now is None else now
    age = now - data["t"]
    if age > settings.HELP_FORM_MAX_AGE_SECONDS:
        raise TokenProblem("expired")
    if age < settings.HELP_FORM_MIN_SECONDS:
        raise TokenProblem("too_fast")
    return FormToken(nonce=data["n"], issued_at=float(data["t"]))


def sent_token(nonce: str) -> str:
    """What the confirmation page's address carries: the nonce, signed."""
    return signing.dumps(nonce, salt=SENT_SALT)


def read_sent_token(value: str) -> str | None:
    try:
        nonce = signing.loads(value, salt=SENT_SALT, max_age=settings.HELP_FORM_MAX_AGE_SECONDS)
    except signing.BadSignature:
        return None
    return nonce if isinstance(nonce, str) else None


TOKEN_MESSAGES = {
    "forged": _("We could not verify the form. Please check your request and send it again."),
    "expired": _("The form expired, please send it again. Your text is still here."),
    "too_fast": _("That was quick! Please check your request and send it again."),
}


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        if not data:
            return []
        files = data if isinstance(data, (list, tuple)) else [data]
        return [super(MultipleFileField, self).clean(f, initial) for f in files]


class RequestForm(forms.Form):
    name = forms.CharField(label=_("Your name"), max_length=MAX_NAME_CHARS)
    email = forms.EmailField(label=_("Email address"), max_length=320)
    subject = forms.CharField(label=_("Subject"), max_length=MAX_SUBJECT_CHARS, required=False)
    message = forms.CharField(label=_("How can we help?"), widget=forms.Textarea(attrs={"rows": 8}))
    attachments = MultipleFileField(label=_("Attachments"), required=False)
    # The honeypot: hidden from people (CSS and aria-hidden), so only a bot fills it.
    website = forms.CharField(
        required=False,
        label=_("Leave this field empty"),
        widget=forms.TextInput(attrs={"autocomplete": "off", "tabindex": "-1"}),
    )
    token = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, inbox: Inbox, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox = inbox
        # The limit is a setting: the field is made per form, so a changed setting applies.
        self.fields["message"] = forms.CharField(
            label=_("How can we help?"),
            max_length=settings.HELP_FORM_MAX_MESSAGE_CHARS,
            widget=forms.Textarea(attrs={"rows": 8}),
        )
        if setting_flag(inbox, "require_subject", False):
            self.fields["subject"].required = True
        if not setting_flag(inbox, "allow_attachments", True):
            del self.fields["attachments"]

    @property
    def attachment_limits(self) -> str:
        return str(
            _("Up to %(files)s files, %(each)s each, %(total)s in all.")
            % {
                "files": settings.REPLY_ATTACHMENTS_MAX_FILES,
                "each": filesizeformat(settings.ATTACHMENT_MAX_BYTES),
                "total": filesizeformat(settings.REPLY_ATTACHMENTS_MAX_TOTAL_BYTES),
            }
        )

    def clean_name(self) -> str:
        return " ".join(str(self.cleaned_data["name"]).replace("\x00", "").split())

    def clean_subject(self) -> str:
        return " ".join(str(self.cleaned_data["subject"]).replace("\x00", "").split())

    def clean_message(self) -> str:
        return str(self.cleaned_data["message"]).replace("\x00", "")

    def clean_attachments(self) -> list[UploadedFile]:
        files: list[UploadedFile] = self.cleaned_data.get("attachments") or []
        if len(files) > settings.REPLY_ATTACHMENTS_MAX_FILES:
            raise forms.ValidationError(
                _("Too many files (%(count)s; at most %(max)s).")
                % {"count": len(files), "max": settings.REPLY_ATTACHMENTS_MAX_FILES}
            )
        for upload in files:
            if (upload.size or 0) > settings.ATTACHMENT_MAX_BYTES:
                raise forms.ValidationError(
                    _("%(name)s is too large (at most %(max)s per file).")
                    % {"name": upload.name, "max": filesizeformat(settings.ATTACHMENT_MAX_BYTES)}
                )
        if sum(upload.size or 0 for upload in files) > settings.REPLY_ATTACHMENTS_MAX_TOTAL_BYTES:
            raise forms.ValidationError(
                _("The files are too large together (at most %(max)s in all).")
                % {"max": filesizeformat(settings.REPLY_ATTACHMENTS_MAX_TOTAL_BYTES)}
            )
        return files

    def submission(self, nonce: str) -> WebFormSubmission:
        data = self.cleaned_data
        attachments = []
        for upload in data.get("attachments") or []:
            filename = os.path.basename(str(upload.name or "").replace("\\", "/")).replace("\x00", "")
            content_type = str(upload.content_type or "application/octet-stream")[:127]
            attachments.append((filename[-MAX_FILENAME_CHARS:] or "attachment", content_type, upload.read()))
        return WebFormSubmission(
            nonce=nonce,
            name=data["name"],
            email=data["email"],
            subject=data.get("subject") or "",
            message=data["message"],
            attachments=attachments,
        )
