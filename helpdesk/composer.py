"""The reply composer's choices: which inbox and customer identity a reply goes out on, and
the files attached to a reply or note (validated before anything is stored or sent)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.template.defaultfilters import filesizeformat

from channels_inbox.adapters.base import IdentityRef
from helpdesk.models import Direction

if TYPE_CHECKING:
    from channels_inbox.models import Inbox
    from customers.models import Identity
    from helpdesk.models import Message, Ticket

# Control characters, direction overrides and NUL in an uploaded file's name: refused, not
# cleaned up — a name like "invoice\u202efdp.exe" is an attack, not a typo.
_HOSTILE_NAME = re.compile("[\x00-\x1f\x7f\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")
_TARGET = re.compile(r"^([0-9]{1,18}):([0-9]{1,18})$")


class InvalidTarget(ValueError):
    """The posted channel/identity choice is malformed or not one this ticket may use."""


class InvalidUpload(ValueError):
    """An attached file breaks a rule (count, size, empty, hostile name)."""


@dataclass(frozen=True)
class ReplyTarget:
    """One way to answer: through this inbox, to this identity of the ticket's customer."""

    inbox: Inbox
    identity: Identity
    recipient: str

    @property
    def value(self) -> str:
        return f"{self.inbox.pk}:{self.identity.pk}"

    @property
    def label(self) -> str:
        return target_label(self.inbox, self.identity)


@dataclass(frozen=True)
class OutgoingFile:
    """An attached file's bytes and the names its sender gave them."""

    filename: str
    content: bytes
    declared_type: str = ""


def target_label(inbox: Inbox, identity: Identity) -> str:
    """`Email · support@shop.example → jane@example.com`; inboxes without an address by name."""
    adapter = inbox.adapter
    where = str(inbox.settings.get("address") or "") or inbox.name
    return f"{adapter.label} · {where} → {identity.display_value}"


def reaches(inbox: Inbox, identity: Identity) -> str:
    """The recipient if `inbox` can send to `identity` ('' if it cannot, or has no adapter)."""
    try:
        adapter = inbox.adapter
        return str(adapter.recipient_for(inbox, [IdentityRef(identity.kind, identity.value)]) or "")
    except (LookupError, NotImplementedError):
        return ""


def active_inboxes() -> list[Inbox]:
    """Every active inbox a reply may go out through (one query)."""
    from channels_inbox.models import Inbox

    return list(Inbox.objects.filter(is_active=True).defer("secrets").order_by("name", "id"))


def reply_targets(inboxes: Iterable[Inbox], identities: Iterable[Identity]) -> list[ReplyTarget]:
    """Every (active inbox, identity) pair the inbox's adapter can send to, inbox by inbox."""
    identities = list(identities)
    targets = []
    for inbox in inboxes:
        if not inbox.is_active:
            continue
        for identity in identities:
            recipient = reaches(inbox, identity)
            if recipient:
                targets.append(ReplyTarget(inbox=inbox, identity=identity, recipient=recipient))
    return targets


def _sender_value(message: Message) -> str:
    """The address an inbound email came from (normalized; '' for other channels)."""
    from channels_inbox.email.outbound import sender_address

    summary = (message.metadata or {}).get("email") or {}
    return sender_address(str(summary.get("from") or "")) if isinstance(summary, dict) else ""


def default_target(targets: Sequence[ReplyTarget], ticket: Ticket, timeline: Iterable[Any]) -> ReplyTarget | None:
    """The inbox and identity of the ticket's last customer message; else the ticket's inbox;
    else the first choice. `timeline` is the page's (already loaded): no query here."""
    if not targets:
        return None
    last = None
    for item in timeline:
        if getattr(item, "direction", None) == Direction.INBOUND and getattr(item, "inbox_id", None):
            last = item
    if last is not None:
        on_inbox = [t for t in targets if t.inbox.pk == last.inbox_id]
        sender = _sender_value(last)
        for target in on_inbox:
            if sender and target.identity.value == sender:
                return target
        if on_inbox:
            return on_inbox[0]
    for target in targets:
        if target.inbox.pk == ticket.inbox_id:
            return target
    return targets[0]


def parse_target(raw: str, ticket: Ticket) -> tuple[Inbox, Identity]:
    """The posted `<inbox id>:<identity id>`: an identity of this ticket's customer and an
    existing inbox (whether that inbox is active and reaches it, do_reply checks)."""
    from channels_inbox.models import Inbox

    match = _TARGET.match(raw)
    if match is None:
        raise InvalidTarget(f"Unknown reply channel {raw[:40]!r}.")
    inbox = Inbox.objects.filter(pk=int(match[1])).first()
    if inbox is None:
        raise InvalidTarget("That inbox does not exist (any more).")
    identity = ticket.customer.identities.filter(pk=int(match[2])).first()
    if identity is None:
        raise InvalidTarget("That address is not one of this ticket's customer.")
    return inbox, identity


def limits_text() -> str:
    """The attachment limits as the composer states them."""
    return (
        f"Up to {settings.REPLY_ATTACHMENTS_MAX_FILES} files, "
        f"each at most {filesizeformat(settings.ATTACHMENT_MAX_BYTES)}, "
        f"{filesizeformat(settings.REPLY_ATTACHMENTS_MAX_TOTAL_BYTES)} in all."
    )


def check_files(files: Sequence[OutgoingFile]) -> None:
    """Refuse a set of files that breaks a rule; the message says which file and why."""
    if len(files) > settings.REPLY_ATTACHMENTS_MAX_FILES:
        raise InvalidUpload(f"Too many files ({len(files)}; at most {settings.REPLY_ATTACHMENTS_MAX_FILES}).")
    total = 0
    for file in files:
        name = file.filename
        if not name.strip(" ._"):
            raise InvalidUpload("A file has no name.")
        if _HOSTILE_NAME.search(name) or "/" in name or "\\" in name:
            raise InvalidUpload(f"The file name {name[:80]!r} contains characters that are not allowed.")
        if len(name) > 255:
            raise InvalidUpload(f"The file name {name[:40]!r}… is longer than 255 characters.")
        if not file.content:
            raise InvalidUpload(f"{name!r} is empty.")
        if len(file.content) > settings.ATTACHMENT_MAX_BYTES:
            raise InvalidUpload(
                f"{name!r} is {filesizeformat(len(file.content))}; "
                f"each file may be at most {filesizeformat(settings.ATTACHMENT_MAX_BYTES)}."
            )
        total += len(file.content)
    if total > settings.REPLY_ATTACHMENTS_MAX_TOTAL_BYTES:
        raise InvalidUpload(
            f"The files are {filesizeformat(total)} together; "
            f"at most {filesizeformat(settings.REPLY_ATTACHMENTS_MAX_TOTAL_BYTES)} in all."
        )


def over_limit_error() -> InvalidUpload:
    return InvalidUpload(
        f"The files are more than {filesizeformat(settings.REPLY_ATTACHMENTS_MAX_TOTAL_BYTES)} together; "
        f"at most {filesizeformat(settings.REPLY_ATTACHMENTS_MAX_TOTAL_BYTES)} in all."
    )


def read_uploads(uploads: Sequence[Any]) -> list[OutgoingFile]:
    """The request's uploaded files (Django UploadedFile), checked; sizes first, so an
    oversized file is refused before its bytes are read into memory. (Django has already cut
    each name to its last path part, dropped non-printable characters and kept it under 256
    characters; `check_files` refuses such names from any other caller.)"""
    if len(uploads) > settings.REPLY_ATTACHMENTS_MAX_FILES:
        raise InvalidUpload(f"Too many files ({len(uploads)}; at most {settings.REPLY_ATTACHMENTS_MAX_FILES}).")
    for upload in uploads:
        if (upload.size or 0) > settings.ATTACHMENT_MAX_BYTES:
            raise InvalidUpload(
                f"{str(upload.name)!r} is {filesizeformat(upload.size)}; "
                f"each file may be at most {filesizeformat(settings.ATTACHMENT_MAX_BYTES)}."
            )
    total = sum(upload.size or 0 for upload in uploads)
    if total > settings.REPLY_ATTACHMENTS_MAX_TOTAL_BYTES:
        raise InvalidUpload(
            f"The files are {filesizeformat(total)} together; "
            f"at most {filesizeformat(settings.REPLY_ATTACHMENTS_MAX_TOTAL_BYTES)} in all."
        )
    files = [
        OutgoingFile(filename=str(upload.name or ""), content=upload.read(), declared_type=upload.content_type or "")
        for upload in uploads
    ]
    check_files(files)
    return files


class BoundedUploadHandler(FileUploadHandler):
    """Stops taking a request's files once they pass `limit` bytes together: an oversized
    upload is refused (the view sees `request.upload_over_limit`) without being stored in
    full. Installed before anything reads the body (see views/desk.py, ticket_reply)."""

    def __init__(self, request: Any, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.seen = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.seen += len(raw_data)
        if self.seen > self.limit:
            self.request.upload_over_limit = True  # type: ignore[union-attr]
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None
