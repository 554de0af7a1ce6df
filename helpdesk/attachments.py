"""Storing attachment bytes: sniffed type, size limit, safe names, content-addressed files."""

from __future__ import annotations

import hashlib
import re
import unicodedata

import filetype
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from helpdesk.models import Attachment, Message
from helpdesk.models.message import attachment_path

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
# Direction controls make "évil\u202egpj.exe" display as "éviexe.jpg": never part of a name.
_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")


class AttachmentTooLarge(ValueError):
    pass


def safe_filename(name: str) -> str:
    """A display name without paths, control or shell-special characters, at most 200 chars."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", _BIDI.sub("", name)).strip(" ._")
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[:190] + dot + ext[:9]) if dot and len(ext) <= 9 else name[:200]
    return name or "attachment"


def sniff_content_type(content: bytes, declared: str = "") -> str:
    """The type the bytes really are; a sender's claim only decides between text kinds."""
    kind = filetype.guess(content[:8192])
    if kind is not None:
        return str(kind.mime)
    try:
        content[:65536].decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    if declared in ("text/csv", "text/calendar", "application/json"):
        return declared
    return "text/plain"


def store_attachment(
    message: Message,
    filename: str,
    content: bytes,
    declared_type: str = "",
    *,
    content_id: str = "",
    inline: bool = False,
) -> Attachment:
    if len(content) > settings.ATTACHMENT_MAX_BYTES:
        raise AttachmentTooLarge(f"{filename!r} is over {settings.ATTACHMENT_MAX_BYTES} bytes")
    digest = hashlib.sha256(content).hexdigest()
    attachment = Attachment(
        message=message,
        filename=safe_filename(filename),
        content_type=sniff_content_type(content, declared_type),
        declared_content_type=declared_type[:127],
        size=len(content),
        sha256=digest,
        content_id=content_id.strip().strip("<>")[:255],
        inline=inline,
    )
    path = attachment_path(attachment, attachment.filename)
    # Content-addressed: the same bytes are stored once, whoever sends them again.
    if not default_storage.exists(path):
        path = default_storage.save(path, ContentFile(content))
    attachment.file.name = path
    attachment.save()
    return attachment
