"""The new part of a reply: what the sender wrote, without the quoted history and the signature.

Two detectors, the earlier cut wins:
- our own line patterns: `-- ` signature delimiters, "On … wrote:" (and its German, Czech,
  Russian, Chinese… forms, also wrapped over two lines), Gmail's "<date> <name> <addr>:",
  Outlook's "From: … Sent: …" header blocks, "-----Original Message-----" separators, and
  a trailing block of `>` lines;
- mail-parser-reply (languages en, de, cs, zh — it has no Russian, our patterns cover it),
  for the header forms and signature greetings it knows.

The full text always stays available: `split_reply` returns (new part, the rest), and when
nothing would be left of the new part the whole text is the new part.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from mailparser_reply import EmailMessage
from mailparser_reply.constants import MAIL_LANGUAGES

logger = logging.getLogger(__name__)

# Of en, de, cs, ru, zh mail-parser-reply 1.36 knows all but ru.
LIBRARY_LANGUAGES = ("en", "de", "cs", "zh")

_WROTE = re.compile(
    r"(?:wrote|writes|schrieb|napsal\(a\)|napsala|napsal|написал\(а\)|написала|написал|пишет|写道|寫道"
    r"|a écrit|escribió|ha scritto|schreef|skrev|napisał\(a\)|napisała|napisał)\s*[:：]\s*$",
    re.I,
)
# Gmail in many locales: "<date>, <name> <addr>:" (no verb), e.g. Russian or old English Gmail.
_GMAIL_ADDRESS = re.compile(r"\S\s+<[^\s<>@]+@[^\s<>@]+>\s*[:：]\s*$")
_ORIGINAL = re.compile(
    r"^[-_=*\s]{3,}\s*(?:original message|ursprüngliche nachricht|originalnachricht|původní zpráva"
    r"|původní e-mail|исходное сообщение|пересланное сообщение|原始邮件|原始郵件|message d'origine"
    r"|forwarded message|weitergeleitete nachricht|přeposlaná zpráva)\s*[-_=*\s]{3,}$",
    re.I,
)
_FROM_LINE = re.compile(r"^\s*\*?(?:from|von|od|от|发件人|寄件者|de|van|fra|från|da)\s*\*?\s*[:：]\s*\S", re.I)
_SENT_LINE = re.compile(
    r"^\s*\*?(?:sent|date|gesendet|datum|odesláno|datum odeslání|отправлено|дата|发送时间|日期|寄件日期|envoyé"
    r"|enviado|verzonden|sendt|skickat|inviato|to|an|komu|кому|收件人|subject|betreff|předmět|тема|主题)"
    r"\s*\*?\s*[:：]",
    re.I,
)
_DATE = re.compile(r"\b\d{1,2}:\d{2}\b|\b(?:19|20)\d{2}\b")
_UNDERSCORES = re.compile(r"^\s*[_\-]{20,}\s*$")
_SENT_FROM = re.compile(
    r"^(?:sent from my|sent from outlook|get outlook for|gesendet von meinem|von meinem .* gesendet"
    r"|odesláno z|отправлено с|从我的.*发送)",
    re.I,
)
_HTML_QUOTE_MARKERS = (
    'class="gmail_quote',
    "class='gmail_quote",
    '<blockquote type="cite"',
    'id="divRplyFwdMsg"',
    'id="appendonsend"',
    'class="moz-cite-prefix"',
    'class="yahoo_quoted"',
)
# A signature found by the library counts only this close to the end of the new part:
# greeting words earlier on ("Thanks, that fixed it") are the message itself.
_SIGNATURE_TAIL_LINES = 8
_HEADER_WORD = re.compile(
    r"(?:from|sent|to|subject|date|cc|von|gesendet|an|betreff|datum|od|odesláno|komu|předmět|kopie"
    r"|发件人|发送时间|收件人|主题|抄送)[ *]*[:：]",
    re.I,
)
_LIBRARY_MAX_CHARS = 20_000


def split_reply(text: str, html: str = "", *, is_reply: bool | None = None) -> tuple[str, str]:
    """(the new part, the rest: signature and quoted history). Never empty when `text` is not.

    `is_reply=False` says the mail has no In-Reply-To/References: the library then only
    runs when a quote marker was found (our own patterns are cheap, it is not).
    """
    source = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    if not source.strip():
        if html:
            from channels_inbox.email.parse import html_to_text

            source = html_to_text(html)
        if not source.strip():
            return "", ""
    lines = source.split("\n")
    cut, marked = _own_quote_cut(lines)
    # The library only reads what our patterns left as the new part, and only when a line of it
    # could be a quote header at all: its header regexes cost about 0.15 ms per KB of text.
    if (is_reply is not False or marked or ">" in source) and _could_be_header(lines[:cut]):
        library = _library("\n".join(lines[:cut]))
        if library is not None:
            cut = min(cut, _library_cut(library, lines, cut))
    if cut == len(lines) and html:
        html_part = _html_new_part(html)
        if html_part and html_part.strip():
            after = _line_after(lines, html_part)
            if after is None:
                return html_part.strip(), ""
            cut = after
    end = _signature_cut(lines[:cut])
    new = "\n".join(lines[:end]).strip()
    if not new:
        return source.strip(), ""
    rest = "\n".join(lines[end:]).strip()
    return new, rest


def _line_after(lines: list[str], part: str) -> int | None:
    """The index after the line of `lines` that ends `part` (None: not found)."""
    last = next((line.strip() for line in reversed(part.split("\n")) if line.strip()), "")
    if not last:
        return None
    for index, line in enumerate(lines):
        if line.strip() == last:
            return index + 1
    return None


def _own_quote_cut(lines: list[str]) -> tuple[int, bool]:
    """Index of the first line of quoted history by our patterns (len(lines): none), and whether one matched."""
    count = len(lines)
    quotes_from = _trailing_quotes_start(lines)
    ends = [line.rstrip().endswith((":", "：")) for line in lines]
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        first = stripped[0]
        if first == ">":
            if index >= quotes_from:
                return index, True
            continue
        # Cheap tests first: almost every line of a mail is none of these.
        if first in "-_=*" and _ORIGINAL.match(stripped):
            return _back_over_separator(lines, index), True
        colon = ":" in stripped or "：" in stripped
        if (
            colon
            and _FROM_LINE.match(stripped)
            and any(_SENT_LINE.match(lines[j]) for j in range(index + 1, min(index + 5, count)))
        ):
            return _back_over_separator(lines, index), True
        if colon and len(stripped) < 400 and ends[index]:
            if _wrote(stripped) and (_has_date(stripped) or "@" in stripped or len(stripped) < 120):
                return index, True
            if "@" in stripped and _GMAIL_ADDRESS.search(stripped[-200:]) and _has_date(stripped):
                return index, True
        if ((index + 1 < count and ends[index + 1]) or (index + 2 < count and ends[index + 2])) and _wrapped_header(
            lines, index
        ):
            return index, True
    return count, False


def _wrapped_header(lines: list[str], index: int) -> bool:
    """ "On Mon, 1 Jan 2024 at 10:00, John Doe <john@example.com>\nwrote:" wrapped over 2-3 lines."""
    for extra in (1, 2):
        if index + extra >= len(lines):
            return False
        last = lines[index + extra].strip()
        if not last:
            return False
        if not _ends_with_colon(last):
            continue
        if _wrote(last) and _has_date(last):
            return False  # that line is a whole header by itself
        joined = " ".join(s.strip() for s in lines[index : index + extra + 1])
        return len(joined) < 400 and _wrote(joined) and _has_date(joined)
    return False


def _ends_with_colon(line: str) -> bool:
    tail = line.rstrip()
    return tail.endswith((":", "："))


def _trailing_quotes_start(lines: list[str]) -> int:
    """Index from which every non-blank line is `>`-quoted (len(lines): the mail does not end in a quote)."""
    start = len(lines)
    for index in range(len(lines) - 1, -1, -1):
        stripped = lines[index].lstrip()
        if not stripped:
            continue
        if stripped[0] != ">":
            break
        start = index
    return start


def _wrote(line: str) -> bool:
    """Ends with "wrote:" or one of its translations (only the end is searched: lines can be long)."""
    return bool(_WROTE.search(line[-40:]))


def _has_date(line: str) -> bool:
    return bool(_DATE.search(line))


def _back_over_separator(lines: list[str], index: int) -> int:
    """Include an Outlook underscore line (and blank lines) just above a header block in the quote."""
    j = index - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j >= 0 and _UNDERSCORES.match(lines[j]):
        return j
    return index


class _Library:
    """mail-parser-reply with its regexes compiled once (it builds them for every message otherwise)."""

    compiled: dict[str, Any] | None = None

    @classmethod
    def patterns(cls) -> dict[str, Any]:
        if cls.compiled is None:
            probe = EmailMessage(text="", languages=list(LIBRARY_LANGUAGES), keep_hyphen_lists=True)
            cls.compiled = {
                "_header_regex": probe.HEADER_REGEX,
                "_disclaimers_regex": probe.DISCLAIMERS_REGEX,
                "_signature_regex": probe.SIGNATURE_REGEX,
            }
        return cls.compiled

    @classmethod
    def read(cls, text: str) -> EmailMessage:
        return EmailMessage(
            text=text, languages=list(LIBRARY_LANGUAGES), keep_hyphen_lists=True, **cls.patterns()
        ).read()


def _library(source: str) -> EmailMessage | None:
    try:
        return _Library.read(source[:_LIBRARY_MAX_CHARS])
    except Exception:
        logger.debug("mail-parser-reply failed", exc_info=True)
        return None


def _library_cut(message: EmailMessage, lines: list[str], limit: int) -> int:
    """Where mail-parser-reply sees the first quoted header, mapped back onto our lines."""
    if len(message.replies) < 2:
        return len(lines)
    header = (message.replies[1].headers or "").strip()
    first = header.split("\n", 1)[0].strip().lstrip("> ").strip() if header else ""
    if not first:
        return len(lines)
    for index, line in enumerate(lines[:limit]):
        candidate = line.strip().lstrip("> ").strip()
        if candidate and (candidate == first or candidate.startswith(first)):
            return index
    return len(lines)


def _signature_cut(lines: list[str]) -> int:
    """Index where the signature starts in the new part (len(lines): none)."""
    count = len(lines)
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    if not nonblank:
        return count
    for index in nonblank:
        if lines[index].rstrip() == "--" or lines[index] == "-- ":
            return index
    tail = nonblank[-_SIGNATURE_TAIL_LINES:]
    for index in tail:
        if _SENT_FROM.match(lines[index].strip()):
            return index
    if len(tail) < 2:
        return count
    # The library's signature greetings ("Best regards,", "Mit freundlichen Grüßen", "S pozdravem,"…)
    # on the last lines only, never on the first line of the new part.
    for index in tail[1:]:
        if _signature_words().match(lines[index].strip().lstrip("> ")):
            return index
    return count


@functools.cache
def _signature_words() -> re.Pattern[str]:
    words: list[str] = []
    for language in LIBRARY_LANGUAGES:
        entry = MAIL_LANGUAGES.get(language, {})
        listed = entry.get("signatures", [])
        words += [listed] if isinstance(listed, str) else list(listed)
    words += [r"S pozdravem", r"С уважением", r"С наилучшими пожеланиями", r"Спасибо,", r"Díky,"]
    return re.compile("(?:" + "|".join(w for w in words if w) + ")", re.I)


def _could_be_header(lines: list[str]) -> bool:
    """Whether any line looks like the start of a quote header the library knows (a colon where one goes)."""
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.endswith((":", "：")):
            return True
        head = stripped.lstrip("> *")[:16]
        if (":" in head or "：" in head) and _HEADER_WORD.match(head):
            return True
    return False


def _html_new_part(html: str) -> str | None:
    """The text before an HTML quote container (Gmail, Apple Mail, Outlook, Thunderbird, Yahoo)."""
    positions = [html.find(marker) for marker in _HTML_QUOTE_MARKERS]
    found = [p for p in positions if p > 0]
    if not found:
        return None
    from channels_inbox.email.parse import html_to_text

    head = html[: min(found)]
    start = head.rfind("<")
    return html_to_text(head[:start] if start > 0 else head)
