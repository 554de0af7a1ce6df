"""Raw RFC 822 bytes → `ParsedEmail`: the one parser behind IMAP, the MTA pipe and ESP webhooks.

Never raises: whatever the bytes, the result says what could be read, and `error` says
what could not. The raw bytes are never changed or dropped here (the caller stored them).

The stdlib parser runs with `compat32` (several times faster than `policy.default`, see
docs/email.md) and everything is decoded by hand: RFC 2047 words, RFC 2231 parameters,
bodies in whatever charset they claim (or do not claim), with a fallback chain so a
wrong label never loses the text.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import hashlib
import html as html_lib
import quopri
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import errors
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from io import BytesIO
from urllib.parse import unquote


@dataclass
class EmailAddress:
    name: str
    address: str  # the addr-spec as written (not normalized)


@dataclass
class ParsedAttachment:
    filename: str
    content: bytes
    content_type: str
    content_id: str = ""  # without <>
    inline: bool = False


@dataclass
class RecipientReport:
    """One recipient's block of a delivery status notification (RFC 3464)."""

    address: str
    action: str  # failed, delayed, delivered, relayed, expanded
    status: str  # e.g. 5.1.1
    diagnostic: str = ""


@dataclass
class DeliveryReport:
    """A `multipart/report`: a bounce (delivery-status), a read receipt, a complaint."""

    report_type: str  # delivery-status, disposition-notification, feedback-report…
    original_message_id: str = ""
    recipients: list[RecipientReport] = field(default_factory=list)
    # False: a bounce recognised by its looks (sender, subject), not a multipart/report.
    standard: bool = True


@dataclass
class ParsedEmail:
    message_id: str = ""  # without <>
    in_reply_to: list[str] = field(default_factory=list)  # without <>
    references: list[str] = field(default_factory=list)  # without <>, oldest first
    subject: str = ""
    from_: EmailAddress | None = None
    reply_to: list[EmailAddress] = field(default_factory=list)
    to: list[EmailAddress] = field(default_factory=list)
    cc: list[EmailAddress] = field(default_factory=list)
    # Where it was delivered: Delivered-To, X-Original-To, Envelope-To (addresses only).
    delivered_to: list[str] = field(default_factory=list)
    # None: no Return-Path header; "": the null sender (<>).
    return_path: str | None = None
    date: datetime | None = None
    text: str = ""
    html: str = ""
    # The new part of a reply, without the quoted history and the signature.
    visible_text: str = ""
    # What visible_text left out (the signature and the quoted history), "" when nothing.
    quoted_text: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)
    # Why the mail is machine-made ("" for a person's mail), e.g. "Auto-Submitted: auto-replied".
    automatic: str = ""
    report: DeliveryReport | None = None
    # Headers worth keeping with the message (decoded), e.g. List-Id, Auto-Submitted.
    headers: dict[str, str] = field(default_factory=dict)
    defects: list[str] = field(default_factory=list)
    # Set when the message could not be read (the raw bytes are kept by the caller).
    error: str = ""
    sha256: str = ""


# --- limits -------------------------------------------------------------------------------
_MAX_DEPTH = 40  # MIME nesting deeper than this is not followed (its bytes stay in the raw mail)
_MAX_PARTS = 2_000
_MAX_REFERENCES_TAIL = 20
_KEPT_HEADERS = (
    "Auto-Submitted",
    "Precedence",
    "List-Id",
    "List-Unsubscribe",
    "List-Post",
    "X-Autoreply",
    "X-Autorespond",
    "X-Autoresponse",
    "X-Auto-Response-Suppress",
    "X-Failed-Recipients",
    "X-Spam-Flag",
    "X-Spam-Score",
    "X-Spam-Status",
    "X-Mailer",
    "User-Agent",
)
_AUTORESPONSE_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponse", "X-Auto-Response-Suppress")
_LIST_HEADERS = ("List-Id", "List-Unsubscribe", "List-Post")
_BULK_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
_DAEMON_LOCALS = {"mailer-daemon", "postmaster"}
_NOREPLY_LOCALS = {
    "noreply",
    "no-reply",
    "no_reply",
    "donotreply",
    "do-not-reply",
    "do_not_reply",
}

# --- charsets -----------------------------------------------------------------------------
# What a label really means on the wire: supersets first, so a mislabelled GB18030 or
# Windows-extended mail still decodes exactly.
_CHARSET_CHAINS: dict[str, tuple[str, ...]] = {
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "x-gbk": ("gb18030",),
    "cp936": ("gb18030",),
    "euc-cn": ("gb18030",),
    "gb_2312-80": ("gb18030",),
    "chinese": ("gb18030",),
    "gb18030": ("gb18030",),
    "big5": ("big5hkscs", "cp950"),
    "big5-hkscs": ("big5hkscs", "cp950"),
    "x-x-big5": ("big5hkscs", "cp950"),
    "cp950": ("cp950", "big5hkscs"),
    "shift_jis": ("cp932", "shift_jis_2004"),
    "shift-jis": ("cp932", "shift_jis_2004"),
    "sjis": ("cp932", "shift_jis_2004"),
    "x-sjis": ("cp932", "shift_jis_2004"),
    "ms_kanji": ("cp932",),
    "windows-31j": ("cp932",),
    "cp932": ("cp932",),
    "iso-2022-jp": ("iso2022_jp", "iso2022_jp_2", "iso2022_jp_ext"),
    "csiso2022jp": ("iso2022_jp", "iso2022_jp_2", "iso2022_jp_ext"),
    "euc-jp": ("euc_jp", "euc_jis_2004"),
    "euc-kr": ("cp949",),
    "ks_c_5601-1987": ("cp949",),
    "iso-2022-kr": ("iso2022_kr", "cp949"),
    "koi8-r": ("koi8_r",),
    "koi8-u": ("koi8_u",),
    "us-ascii": ("ascii",),
    "ascii": ("ascii",),
    "iso-8859-1": ("cp1252", "latin-1"),
    "latin1": ("cp1252", "latin-1"),
    "latin-1": ("cp1252", "latin-1"),
    "iso8859-1": ("cp1252", "latin-1"),
    "iso-8859-9": ("cp1254", "iso8859_9"),
    "iso-8859-8-i": ("iso8859_8",),
    "utf8": ("utf-8",),
    "utf-8": ("utf-8",),
    "unicode-1-1-utf-7": ("utf-7",),
}
# Labels that name a codec Python has but that no mail body really is (or that would
# turn escapes into characters): treated like an unknown charset.
_REFUSED_CODECS = {"undefined", "unicode_escape", "raw_unicode_escape", "punycode", "idna", "mbcs", "oem"}


_CP1252_FALLBACK = "switchboard-cp1252-fallback"


def _cp1252_fallback(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return error.object[error.start : error.end].decode("cp1252", errors="replace"), error.end


codecs.register_error(_CP1252_FALLBACK, _cp1252_fallback)


@functools.lru_cache(maxsize=512)
def _charset_chain(label: str) -> tuple[str, ...]:
    """Codecs to try, in order, for a declared charset label (unknown labels: none)."""
    name = label.strip().strip("\"'").strip().lower()
    if not name:
        return ()
    if name in _CHARSET_CHAINS:
        return _CHARSET_CHAINS[name]
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return ()
    if info.name in _REFUSED_CODECS or not getattr(info, "_is_text_encoding", True):
        return ()
    return _CHARSET_CHAINS.get(info.name, (info.name,))


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Text of `data` in its declared charset → utf-8 → windows-1252 (with replacement). No NUL."""
    text = _decode_bytes(data, charset or "")
    return text.replace("\x00", "") if "\x00" in text else text


def _decode_bytes(data: bytes, charset: str) -> str:
    if not data:
        return ""
    # ASCII bytes are ASCII in every charset mail uses, except ISO-2022 escapes and UTF-7/16
    # (still ASCII bytes): those must go through their codec.
    if data.isascii() and b"\x1b" not in data and "7" not in charset and "16" not in charset:
        return data.decode("ascii")
    for codec in _charset_chain(charset):
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Valid UTF-8 sequences stay, every other byte is read as windows-1252 (a stray Latin-1
    # byte in a UTF-8 mail, or an unlabelled windows-1252 mail, both come out readable).
    return data.decode("utf-8", errors=_CP1252_FALLBACK)


def _fix_8bit(value: str) -> str:
    """A header parsed from bytes keeps raw 8-bit bytes as surrogates: decode them (utf-8, then cp1252)."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value  # real characters, nothing to fix
    except UnicodeEncodeError:
        pass
    return _decode_bytes(value.encode("utf-8", "surrogateescape"), "")


# --- headers ------------------------------------------------------------------------------
_FOLD = re.compile(r"\r?\n[ \t]*")
_WS = re.compile(r"\s+")
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,60})\?([bBqQ])\?([^?]*?)\?=")
_ID = re.compile(r"<([^<>\s]{1,250})>")


def _q_bytes(text: str) -> bytes:
    # A Q-word is ASCII, but a broken one may hold anything (an 8-bit byte kept as a surrogate,
    # a replacement character from an inner message's header): kept as its UTF-8 bytes.
    raw = text.replace("_", " ").encode("utf-8", "surrogateescape")
    return quopri.decodestring(raw, header=False)


def _b_bytes(text: str) -> bytes:
    raw = re.sub(r"[^A-Za-z0-9+/=]", "", text).rstrip("=")
    raw = raw[: len(raw) - len(raw) % 4 if len(raw) % 4 == 1 else len(raw)]
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        return b""


def decode_header_value(value: str | None) -> str:
    """A header as text: unfolded, RFC 2047 words decoded (also broken or adjacent ones), no NUL."""
    if not value:
        return ""
    text = str(value)
    if "\n" in text:
        text = _FOLD.sub(" ", text)
    text = _decode_words(text) if "=?" in text else _fix_8bit(text)
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text.strip()


def _decode_words(text: str) -> str:
    # pieces: (charset, bytes) for encoded words (adjacent ones in the same charset joined, so a
    # character split across two words survives), ("", text) for the literal text between.
    pieces: list[tuple[str, bytes | str]] = []
    position = 0
    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        previous_encoded = bool(pieces) and pieces[-1][0] != ""
        if between and not (previous_encoded and not between.strip()):
            pieces.append(("", between))
        charset = match.group(1).split("*", 1)[0].lower()
        data = _b_bytes(match.group(3)) if match.group(2) in "bB" else _q_bytes(match.group(3))
        last = pieces[-1][1] if pieces else ""
        if pieces and pieces[-1][0] == charset and isinstance(last, bytes):
            pieces[-1] = (charset, last + data)
        else:
            pieces.append((charset, data))
        position = match.end()
    if position < len(text):
        pieces.append(("", text[position:]))
    out = []
    for charset, value in pieces:
        out.append(_decode_bytes(value, charset) if isinstance(value, bytes) else _fix_8bit(value))
    return "".join(out)


def _ids(value: str) -> list[str]:
    found = _ID.findall(value or "")
    if not found and value and value.strip() and " " not in value.strip():
        found = [value.strip().strip("<>")]
    return [i for i in found if i.isprintable()]


def _valid_address(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain and len(address) <= 320 and address.isprintable() and " " not in address)


_SIMPLE_ADDRESS = re.compile(r"\s*(?:([^<>,]*?)\s*<([^<>\s,]+@[^<>\s,]+)>|([^<>\s,]+@[^<>\s,]+))\s*")


def _simple_addresses(values: list[str]) -> list[tuple[str, str]] | None:
    """`a@b`, `Name <a@b>` lists without quotes, comments, groups or encoded words: split here
    (the stdlib's address parser is pure Python and the slowest part of reading headers)."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        if any(c in value for c in '"()\\:;['):
            return None
        if "=?" in value and any("," in word.group(0) for word in _ENCODED_WORD.finditer(value)):
            return None
        for item in value.split(","):
            if not item.strip():
                continue
            match = _SIMPLE_ADDRESS.fullmatch(item)
            if match is None:
                return None
            if match.group(3):
                pairs.append(("", match.group(3)))
            else:
                pairs.append((match.group(1) or "", match.group(2)))
    return pairs


def _addresses(values: list[str]) -> list[EmailAddress]:
    """Addresses of one or more address headers; garbage entries are skipped."""
    result: list[EmailAddress] = []
    if not values:
        return result
    unfolded = [_FOLD.sub(" ", v) if "\n" in v else v for v in values]
    pairs = _simple_addresses(unfolded)
    if pairs is None:
        pairs = getaddresses(unfolded)
    if not any(_valid_address(a) for _, a in pairs) and any("=?" in v for v in unfolded):
        # A sender that encoded the whole header, address and all.
        pairs = getaddresses([decode_header_value(v) for v in unfolded])
    for display, addr in pairs:
        addr = _fix_8bit(addr.strip())
        if not _valid_address(addr):
            continue
        name = decode_header_value(display) if display else ""
        result.append(EmailAddress(name=_WS.sub(" ", name).strip().strip("\"'").strip(), address=addr))
    return result


def _return_path(value: str) -> str:
    value = _FOLD.sub(" ", value).replace("\x00", "").strip()
    if "<" in value:
        inner = value[value.find("<") + 1 :]
        return inner.split(">", 1)[0].strip()
    return value


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(_FOLD.sub(" ", value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


# --- body ---------------------------------------------------------------------------------
# Every pattern stops at the next "<" so that hostile HTML (thousands of unclosed tags) stays linear.
_BR = re.compile(r"<br[^<>]*>|</(?:p|div|tr|li|h[1-6]|blockquote|pre|table|ul|ol|dl|dt|dd)\s*>", re.I)
_BLOCK_START = re.compile(r"<(?:p|div|tr|li|h[1-6]|blockquote|pre|table|hr)\b[^<>]*>", re.I)
_INVISIBLE_START = re.compile(r"<(script|style|head|title|template)\b|<!--", re.I)
_TAG = re.compile(r"<[^<>]*>")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_CID = re.compile(r"""cid:([^"'\s>)]+)""", re.I)


def _drop_invisible(html: str) -> str:
    """Without <script>, <style>, <head>, <title>, <template> elements and comments (an unclosed one: to the end)."""
    match = _INVISIBLE_START.search(html)
    if match is None:
        return html
    lower = html.lower()
    pieces = []
    position = 0
    while match is not None:
        pieces.append(html[position : match.start()])
        name = match.group(1)
        closing = "-->" if name is None else f"</{name.lower()}"
        end = lower.find(closing, match.end())
        if end < 0:
            return "".join(pieces)
        position = end + len(closing)
        if name is not None:
            close = lower.find(">", position)
            position = len(html) if close < 0 else close + 1
        match = _INVISIBLE_START.search(html, position)
    pieces.append(html[position:])
    return "".join(pieces)


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: tags stripped, line breaks kept, entities unescaped."""
    if not html:
        return ""
    text = _drop_invisible(html)
    text = text.replace("\r\n", "\n").replace("\n", " ")
    text = _BR.sub("\n", text)
    text = _BLOCK_START.sub("\n", text)
    text = _TAG.sub("", text)
    text = html_lib.unescape(text).replace("\x00", "")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


_BASE64_DEFECTS = (
    errors.InvalidBase64PaddingDefect,
    errors.InvalidBase64CharactersDefect,
    errors.InvalidBase64LengthDefect,
)


def _part_bytes(part: Message, defects: list[str]) -> bytes:
    """The decoded payload of a leaf; best-effort bytes (and a defect) when the encoding is broken."""
    seen = len(part.defects)
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - an undecodable payload is read as its raw text below
        data = None
    if not isinstance(data, bytes):
        payload = _raw_payload(part)
        if isinstance(payload, list):
            return b"\n".join(_serialize(p) for p in payload if isinstance(p, Message))
        return _to_bytes(payload) if isinstance(payload, str) else b""
    new_defects = part.defects[seen:]
    if any(isinstance(d, _BASE64_DEFECTS) for d in new_defects):
        defects.append(f"{part.get_content_type()}: invalid base64, decoded as far as possible")
        if any(isinstance(d, errors.InvalidBase64LengthDefect) for d in new_defects):
            # The stdlib gives up and returns the encoded text: decode the longest valid prefix.
            cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
            try:
                return binascii.a2b_base64(cleaned[: len(cleaned) - len(cleaned) % 4])
            except (binascii.Error, ValueError):
                return data
    return data


def _raw_payload(part: Message) -> object:
    """The payload as parsed: a list of parts, or the body text with raw bytes as surrogates.

    `get_payload()` without decode would re-decode those bytes in the declared charset (and
    raise on a charset name with a NUL in it), so the parsed value is read directly.
    """
    return part.__dict__.get("_payload")


def _to_bytes(value: str) -> bytes:
    try:
        return value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


def _serialize(message: Message) -> bytes:
    """Bytes of a nested message (a forwarded mail, a report block) as it would be sent."""
    buffer = BytesIO()
    try:
        BytesGenerator(buffer, mangle_from_=False, policy=compat32).flatten(message)
        return buffer.getvalue()
    except Exception:  # noqa: BLE001 - a nested message we cannot re-serialize is kept as text
        try:
            return message.as_string().encode("utf-8", "surrogateescape")
        except Exception:  # noqa: BLE001
            return b""


def _param(part: Message, name: str, header: str) -> str:
    """A Content-Type/-Disposition parameter, RFC 2231 (charset, continuations) and RFC 2047 decoded."""
    try:
        value = part.get_param(name, None, header)
    except Exception:  # noqa: BLE001 - a mangled parameter list means: no such parameter
        return ""
    if value is None:
        return ""
    if isinstance(value, tuple):
        charset, _language, text = value
        text = unquote(text, encoding="latin-1") if "%" in text else text
        raw = text.encode("latin-1", "replace") if not text.isascii() else text.encode("ascii")
        # The stdlib already joined and %-decoded the pieces into latin-1 characters.
        decoded = _decode_bytes(raw, charset or "")
    else:
        decoded = str(value)
        if decoded.startswith('"') and decoded.endswith('"') and len(decoded) > 1:
            decoded = decoded[1:-1]
    return decode_header_value(decoded)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EXTENSIONS = {
    "text/plain": "txt",
    "text/html": "html",
    "text/calendar": "ics",
    "text/csv": "csv",
    "text/rfc822-headers": "txt",
    "message/rfc822": "eml",
    "message/delivery-status": "txt",
    "message/disposition-notification": "txt",
    "message/feedback-report": "txt",
    "application/pdf": "pdf",
    "application/octet-stream": "bin",
    "application/zip": "zip",
    "application/json": "json",
    "application/msword": "doc",
    "application/pkcs7-signature": "p7s",
    "application/x-pkcs7-signature": "p7s",
    "application/pgp-signature": "asc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/svg+xml": "svg",
}


def _default_filename(content_type: str) -> str:
    ext = _EXTENSIONS.get(content_type)
    if ext is None:
        subtype = content_type.partition("/")[2]
        ext = re.sub(r"[^a-z0-9]", "", subtype.split("+")[-1].removeprefix("x-"))[:10] or "bin"
    return f"attachment.{ext}"


def _clean_filename(name: str) -> str:
    return _CONTROL.sub("", name).strip()


class _Collector:
    """Walks a MIME tree once: the body alternatives, every other leaf as an attachment."""

    def __init__(self, defects: list[str]) -> None:
        self.text: str | None = None
        self.html: str | None = None
        self.attachments: list[ParsedAttachment] = []
        self.defects = defects
        self.parts = 0
        self.forwarded: list[Message] = []
        self.reports: list[Message] = []

    def walk(self, part: Message, depth: int = 0) -> None:
        self.parts += 1
        if depth > _MAX_DEPTH:
            self.defects.append("MIME nesting too deep: the deepest parts were not read")
            return
        if self.parts > _MAX_PARTS:
            if self.parts == _MAX_PARTS + 1:
                self.defects.append(f"more than {_MAX_PARTS} MIME parts: the rest were not read")
            return
        ctype = part.get_content_type()
        maintype = ctype.partition("/")[0]
        payload = _raw_payload(part)
        if maintype == "message":
            self._message(part, ctype, payload, depth)
            return
        if isinstance(payload, list):
            children = [child for child in payload if isinstance(child, Message)]
            if ctype == "multipart/alternative":
                self._alternative(children, depth)
            else:
                for child in children:
                    self.walk(child, depth + 1)
            return
        if maintype == "multipart":
            recovered = _recover_multipart(part, payload)
            if recovered is not None:
                self.defects.append(f"{ctype} without a usable boundary: parts recovered")
                self.walk(recovered, depth + 1)
                return
            self.defects.append(f"{ctype} without a boundary: read as text")
            ctype = "text/plain"
        self._leaf(part, ctype)

    def _leaf(self, part: Message, ctype: str) -> None:
        disposition, filename = _disposition_and_filename(part)
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            text = decode_bytes(_part_bytes(part, self.defects), _charset(part))
            if ctype == "text/plain":
                self.text = text if self.text is None else f"{self.text}\n{text}"
            else:
                self.html = text if self.html is None else f"{self.html}\n{text}"
            return
        content = _part_bytes(part, self.defects)
        self._attach(part, ctype, content, filename, disposition)

    def _attach(self, part: Message, ctype: str, content: bytes, filename: str, disposition: str) -> None:
        content_id = str(part.get("Content-ID", "") or "")
        content_id = _FOLD.sub("", content_id).strip().strip("<>").strip()
        self.attachments.append(
            ParsedAttachment(
                filename=_clean_filename(filename) or _default_filename(ctype),
                content=content,
                content_type=ctype,
                content_id=content_id if content_id.isprintable() else "",
                inline=disposition == "inline",
            )
        )

    def _alternative(self, children: list[Message], depth: int) -> None:
        # The last alternative a sender lists is the one it prefers (RFC 2046 §5.1.4).
        chosen_text: _Collector | None = None
        chosen_html: _Collector | None = None
        others: list[_Collector] = []
        for child in reversed(children):
            sub = _Collector(self.defects)
            sub.parts = self.parts
            sub.walk(child, depth + 1)
            self.parts = sub.parts
            used = False
            if sub.text is not None and chosen_text is None:
                chosen_text, used = sub, True
            if sub.html is not None and chosen_html is None:
                chosen_html, used = sub, True
            if used or (sub.text is None and sub.html is None):
                others.append(sub)
        if chosen_text is not None and chosen_text.text is not None:
            self.text = chosen_text.text if self.text is None else f"{self.text}\n{chosen_text.text}"
        if chosen_html is not None and chosen_html.html is not None:
            self.html = chosen_html.html if self.html is None else f"{self.html}\n{chosen_html.html}"
        for sub in reversed(others):
            self.attachments.extend(sub.attachments)
            self.forwarded.extend(sub.forwarded)
            self.reports.extend(sub.reports)

    def _message(self, part: Message, ctype: str, payload: object, depth: int) -> None:
        disposition, filename = _disposition_and_filename(part)
        if ctype == "message/delivery-status":
            self.reports.append(part)
            content = (
                b"\n".join(_serialize(b) for b in payload if isinstance(b, Message))
                if isinstance(payload, list)
                else _part_bytes(part, self.defects)
            )
            self._attach(part, ctype, content, filename or "delivery-status.txt", disposition)
            return
        inner = payload[0] if isinstance(payload, list) and payload and isinstance(payload[0], Message) else None
        if inner is None:
            self._attach(part, ctype, _part_bytes(part, self.defects), filename, disposition)
            return
        if ctype in ("message/rfc822", "message/global"):
            self.forwarded.append(inner)
            if not filename:
                subject = _WS.sub(" ", decode_header_value(str(inner.get("Subject", "") or ""))).strip()
                subject = re.sub(r"[\\/:*?\"<>|]", "_", subject)[:150].strip(" ._")
                filename = f"{subject or 'forwarded message'}.eml"
        elif ctype == "message/disposition-notification" or ctype == "message/feedback-report":
            self.reports.append(part)
        self._attach(part, ctype, _serialize(inner), filename, disposition)


_SIMPLE_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([^\";\s]*)", re.I)


def _charset(part: Message) -> str:
    header = str(part.get("Content-Type", "") or "")
    if "*" not in header:
        match = _SIMPLE_CHARSET.search(header)
        return match.group(1) if match else ""
    value = part.get_param("charset")
    if isinstance(value, tuple):
        value = value[2]
    return str(value or "")


def _disposition_and_filename(part: Message) -> tuple[str, str]:
    disposition_header = str(part.get("Content-Disposition", "") or "")
    disposition = disposition_header.split(";", 1)[0].strip().lower()
    filename = ""
    if "name" in disposition_header.lower():
        filename = _param(part, "filename", "content-disposition")
    if not filename and "name" in str(part.get("Content-Type", "") or "").lower():
        filename = _param(part, "name", "content-type")
    return disposition, filename


_BOUNDARY_LINE = re.compile(r"^--([^\s]{1,200}?)(?:--)?\s*$", re.M)


def _recover_multipart(part: Message, payload: object) -> Message | None:
    """A multipart without (or with the wrong) boundary: guess it from the body's `--x` lines."""
    if not isinstance(payload, str):
        return None
    counts: dict[str, int] = {}
    for match in _BOUNDARY_LINE.finditer(payload):
        counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    if not counts:
        return None
    boundary, seen = max(counts.items(), key=lambda item: item[1])
    if seen < 2 or '"' in boundary:
        return None
    head = f'Content-Type: {part.get_content_type()}; boundary="{boundary}"\n\n'
    raw = _to_bytes(head) + _to_bytes(payload)
    try:
        recovered = BytesParser(policy=compat32).parsebytes(raw)
    except Exception:  # noqa: BLE001 - could not recover: the caller reads the body as text
        return None
    return recovered if recovered.is_multipart() else None


# --- reports and bounces ------------------------------------------------------------------
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|delivery (status notification|failure|has failed|failed)|mail delivery failed"
    r"|failure notice|delivery notification|nondeliverable|non-delivery|could not be delivered"
    r"|unzustellbar|nicht zugestellt|nedoručitelné|не доставлено|недоставлен|退信|无法投递|系统退信",
    re.I,
)
_STATUS_CODE = re.compile(r"\b([45]\.\d{1,3}\.\d{1,3})\b")
_SMTP_CODE = re.compile(r"\b([45]\d\d)[ -]")
_TEXT_MESSAGE_ID = re.compile(r"^\s*>?\s*Message-ID:\s*<([^<>\s]{1,250})>", re.I | re.M)
_TEXT_ADDRESS = re.compile(r"<?([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63})>?")


def _field(block: Message, name: str) -> str:
    return _WS.sub(" ", decode_header_value(str(block.get(name, "") or ""))).strip()


def _typed_address(value: str) -> str:
    """`rfc822; a@b` → `a@b`."""
    _, _, address = value.rpartition(";")
    return address.strip().strip("<>").strip()


def _status_blocks(part: Message) -> list[Message]:
    payload = _raw_payload(part)
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, Message)]
    # Encoded (base64) or unparsed: split the text into header blocks ourselves.
    text = decode_bytes(_part_bytes(part, []), "utf-8").replace("\r\n", "\n")
    return [HeaderParser(policy=compat32).parsestr(chunk) for chunk in re.split(r"\n\s*\n", text) if chunk.strip()]


def _original_message_id(collector: _Collector, attachments: list[ParsedAttachment]) -> str:
    for inner in collector.forwarded:
        ids = _ids(str(inner.get("Message-ID", "") or ""))
        if ids:
            return ids[0]
    for attachment in attachments:
        if attachment.content_type == "text/rfc822-headers":
            headers = HeaderParser(policy=compat32).parsestr(decode_bytes(attachment.content, "utf-8"))
            ids = _ids(str(headers.get("Message-ID", "") or ""))
            if ids:
                return ids[0]
    return ""


def _read_report(msg: Message, collector: _Collector, result: ParsedEmail) -> DeliveryReport | None:
    report_type = str(msg.get_param("report-type", "") or "").strip().lower()
    report = DeliveryReport(report_type=report_type or "unknown")
    report.original_message_id = _original_message_id(collector, result.attachments)
    for part in collector.reports:
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            report.report_type = report_type or "delivery-status"
            for block in _status_blocks(part)[1:]:
                address = _typed_address(_field(block, "Final-Recipient") or _field(block, "Original-Recipient"))
                diagnostic = _field(block, "Diagnostic-Code")
                if ";" in diagnostic[:12]:
                    diagnostic = diagnostic.split(";", 1)[1].strip()
                report.recipients.append(
                    RecipientReport(
                        address=address,
                        action=_field(block, "Action").lower(),
                        status=_field(block, "Status").split(" ", 1)[0],
                        diagnostic=diagnostic[:1000],
                    )
                )
        elif ctype == "message/disposition-notification":
            payload = _raw_payload(part)
            fields = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(fields, Message):  # the MDN fields, parsed as one header block
                if not report.original_message_id:
                    report.original_message_id = next(iter(_ids(_field(fields, "Original-Message-ID"))), "")
                report.recipients.append(
                    RecipientReport(
                        address=_typed_address(_field(fields, "Final-Recipient")),
                        action=_field(fields, "Disposition").rpartition(";")[2].strip().lower(),
                        status="",
                    )
                )
    return report


def _looks_like_bounce(result: ParsedEmail) -> bool:
    local = (result.from_.address.rpartition("@")[0].lower() if result.from_ else "").split("+", 1)[0]
    daemon = local in _DAEMON_LOCALS or local.startswith("microsoftexchange")
    subject_says = bool(_BOUNCE_SUBJECT.search(result.subject))
    return (
        (daemon and subject_says)
        or (subject_says and result.return_path == "")
        or (daemon and "X-Failed-Recipients" in result.headers)
    )


def _nonstandard_bounce(collector: _Collector, result: ParsedEmail) -> DeliveryReport | None:
    original = _original_message_id(collector, result.attachments)
    text = result.text or html_to_text(result.html)
    if not original:
        own = result.message_id
        for match in _TEXT_MESSAGE_ID.finditer(text):
            if match.group(1) != own:
                original = match.group(1)
                break
    if not original:
        return None
    # The report part of the text: before the copy of the original message.
    cut = len(text)
    for marker in ("Message-ID:", "Message-Id:", "-----", "Original message", "Received:", "From:"):
        index = text.find(marker)
        if 0 <= index < cut:
            cut = index
    head = text[:cut] if cut > 40 else text
    failed = [a.strip() for a in result.headers.get("X-Failed-Recipients", "").split(",") if "@" in a]
    sender = result.from_.address.lower() if result.from_ else ""
    if not failed:
        for match in _TEXT_ADDRESS.finditer(head):
            address = match.group(1)
            if address.lower() != sender and address not in failed:
                failed.append(address)
    status_match = _STATUS_CODE.search(head)
    if status_match:
        status = status_match.group(1)
    else:
        smtp = _SMTP_CODE.search(head)
        status = f"{smtp.group(1)[0]}.0.0" if smtp else "5.0.0"
    diagnostic = ""
    for line in head.splitlines():
        if _STATUS_CODE.search(line) or _SMTP_CODE.search(line):
            diagnostic = line.strip()[:1000]
            break
    report = DeliveryReport(report_type="delivery-status", original_message_id=original, standard=False)
    for address in failed[:20] or [""]:
        report.recipients.append(
            RecipientReport(address=address, action="failed", status=status, diagnostic=diagnostic)
        )
    return report


def _automatic(msg_headers: dict[str, list[str]], result: ParsedEmail) -> str:
    def first(name: str) -> str | None:
        values = msg_headers.get(name.lower())
        return decode_header_value(values[0]) if values else None

    auto_submitted = first("Auto-Submitted")
    if auto_submitted is not None and auto_submitted.split(";", 1)[0].strip().lower() != "no":
        return f"Auto-Submitted: {auto_submitted}"[:200]
    for name in _AUTORESPONSE_HEADERS:
        value = first(name)
        if value is not None:
            return f"{name}: {value}"[:200]
    precedence = first("Precedence")
    if precedence is not None and precedence.strip().lower() in _BULK_PRECEDENCE:
        return f"Precedence: {precedence}"[:200]
    for name in _LIST_HEADERS:
        if first(name) is not None:
            return f"{name} present"
    if result.return_path == "":
        return "Return-Path: <> (null sender)"
    if result.from_ is not None:
        local = result.from_.address.rpartition("@")[0].lower().split("+", 1)[0]
        if local in _DAEMON_LOCALS or local in _NOREPLY_LOCALS:
            return f"sender {result.from_.address}"[:200]
    if first("X-Failed-Recipients") is not None:
        return "X-Failed-Recipients present"
    if result.report is not None:
        return f"report: {result.report.report_type}"
    return ""


# --- the boundary -------------------------------------------------------------------------
def parse_email(raw: bytes) -> ParsedEmail:
    """Parse raw mail; never raises. A stage that fails adds to `error` (the reply split: to `defects`)
    and the other stages still run."""
    result = ParsedEmail()
    try:
        raw = bytes(raw)
        result.sha256 = hashlib.sha256(raw).hexdigest()
        msg = BytesParser(policy=compat32).parsebytes(raw)
    except Exception as exc:  # noqa: BLE001 - the boundary: a mail that cannot be read is kept raw
        result.error = f"unreadable message ({exc.__class__.__name__}: {exc})"[:2000]
        return result
    headers: dict[str, list[str]] = {}
    stages = (
        ("headers", lambda: _read_headers(msg, headers, result)),
        ("body", lambda: _read_body(msg, result)),
        ("quotes", lambda: _read_quotes(result)),
        ("classification", lambda: _classify(headers, result)),
    )
    failures = []
    for name, stage in stages:
        try:
            stage()
        except Exception as exc:  # noqa: BLE001 - the boundary: keep what the other stages read
            if name == "quotes":
                # Only the reply split failed: the mail is readable, its visible part is all of it.
                result.visible_text, result.quoted_text = result.text.strip(), ""
                result.defects.append(f"quotes: {exc.__class__.__name__}: {exc}"[:300])
                continue
            failures.append(f"{name}: {exc.__class__.__name__}: {exc}")
    if failures:
        result.error = "; ".join(failures)[:2000]
    return result


def _read_headers(msg: Message, headers: dict[str, list[str]], result: ParsedEmail) -> None:
    for name, value in msg.raw_items():
        headers.setdefault(str(name).strip().lower(), []).append(str(value))
    for defect in msg.defects[:20]:
        result.defects.append(defect.__class__.__name__)

    def first(name: str) -> str:
        values = headers.get(name)
        return values[0] if values else ""

    result.message_id = next(iter(_ids(_FOLD.sub(" ", first("message-id")))), "")
    result.in_reply_to = _ids(_FOLD.sub(" ", first("in-reply-to")))
    references: list[str] = []
    for ref in _ids(_FOLD.sub(" ", " ".join(headers.get("references", [])))):
        if ref not in references:
            references.append(ref)
    if len(references) > _MAX_REFERENCES_TAIL + 1:
        references = [references[0], *references[-_MAX_REFERENCES_TAIL:]]
    result.references = references
    result.subject = _WS.sub(" ", decode_header_value(first("subject"))).strip()
    senders = _addresses(headers.get("from", []))
    if not senders:
        senders = _addresses(headers.get("sender", []))
    result.from_ = senders[0] if senders else None
    result.reply_to = _addresses(headers.get("reply-to", []))
    result.to = _addresses(headers.get("to", []))
    result.cc = _addresses(headers.get("cc", []))
    delivered: list[str] = []
    for name in ("delivered-to", "x-original-to", "envelope-to"):
        for address in _addresses(headers.get(name, [])):
            if address.address not in delivered:
                delivered.append(address.address)
    result.delivered_to = delivered
    if "return-path" in headers:
        result.return_path = _return_path(headers["return-path"][0])
    result.date = _date(first("date"))
    for name in _KEPT_HEADERS:
        values = headers.get(name.lower())
        if values:
            result.headers[name] = _WS.sub(" ", decode_header_value(values[0]))[:300]


def _read_body(msg: Message, result: ParsedEmail) -> None:
    collector = _Collector(result.defects)
    collector.walk(msg)
    result.text = collector.text or ""
    result.html = collector.html or ""
    result.attachments = collector.attachments
    if not result.text and result.html:
        result.text = html_to_text(result.html)
    if result.html and result.attachments:
        referenced = {unquote(cid).strip("<>").lower() for cid in _CID.findall(result.html)}
        for attachment in result.attachments:
            if attachment.content_id and attachment.content_id.lower() in referenced:
                attachment.inline = True
    if msg.get_content_type() == "multipart/report":
        result.report = _read_report(msg, collector, result)
    elif _looks_like_bounce(result):
        result.report = _nonstandard_bounce(collector, result)
        if result.report is None:
            result.defects.append("looks like a bounce, but names no original Message-ID")
            result.headers.setdefault("X-Bounce", "unmatched")


def _read_quotes(result: ParsedEmail) -> None:
    from channels_inbox.email.quotes import split_reply

    if not result.text:
        return
    is_reply = bool(result.in_reply_to or result.references)
    visible, rest = split_reply(result.text, result.html, is_reply=is_reply)
    result.visible_text = visible
    result.quoted_text = rest


def _classify(headers: dict[str, list[str]], result: ParsedEmail) -> None:
    reason = _automatic(headers, result)
    if not reason and "X-Bounce" in result.headers:
        reason = "bounce without a delivery report"
    result.automatic = reason
