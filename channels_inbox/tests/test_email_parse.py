"""The email parser on the corpus (tests/email_corpus), mutated mail and CPython's own test mail.

`parse_email` is the boundary between raw bytes and everything else: it must never raise,
and what it reads must be right for each case the corpus names.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels_inbox.email.parse import (
    ParsedAttachment,
    ParsedEmail,
    decode_bytes,
    decode_header_value,
    html_to_text,
    parse_email,
)
from channels_inbox.email.quotes import split_reply

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "email_corpus"
CPYTHON_DATA = Path("/root/.pyenv/versions/3.11.7/lib/python3.11/test/test_email/data")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def corpus(name: str) -> ParsedEmail:
    return parse_email((CORPUS / name).read_bytes())


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.eml"))


def attachment(mail: ParsedEmail, filename: str) -> ParsedAttachment:
    matches = [a for a in mail.attachments if a.filename == filename]
    assert matches, [a.filename for a in mail.attachments]
    return matches[0]


# --- the corpus as a whole -----------------------------------------------------------------
def test_corpus_is_small_and_documented() -> None:
    # given
    files = corpus_files()
    readme = (CORPUS / "README.md").read_text()
    # then
    assert len(files) >= 50
    assert sum(f.stat().st_size for f in files) < 300_000
    missing = [f.name for f in files if f"`{f.name}`" not in readme]
    assert missing == []


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_every_corpus_file_parses(path: Path) -> None:
    # given
    raw = path.read_bytes()
    # when
    mail = parse_email(raw)
    # then
    assert isinstance(mail, ParsedEmail)
    assert mail.error == ""
    assert len(mail.sha256) == 64
    for text in (mail.text, mail.html, mail.visible_text, mail.subject, *(a.filename for a in mail.attachments)):
        assert "\x00" not in text
    if mail.text.strip():
        assert mail.visible_text.strip()


# --- bodies --------------------------------------------------------------------------------
def test_plain_mail() -> None:
    # when
    mail = corpus("plain.eml")
    # then
    assert mail.subject == "Printer is offline"
    assert mail.from_ is not None
    assert (mail.from_.name, mail.from_.address) == ("Jana Novak", "jana@customer.test")
    assert mail.message_id == "plain.1@customer.test"
    assert "floor 3 is offline" in mail.text
    assert mail.html == ""
    assert mail.attachments == []
    assert mail.automatic == ""
    assert mail.date == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_html_only_mail_gets_text_from_the_html() -> None:
    # when
    mail = corpus("html_only.eml")
    # then
    assert "<b>#42</b>" in mail.html
    assert mail.text.splitlines()[0] == "Hello team,"
    assert "invoice #42 shows €120 & VAT.\nSecond line" in mail.text
    assert "color:red" not in mail.text
    assert "Café regards" in mail.text


def test_alternative_picks_both_bodies_in_the_declared_charset() -> None:
    # when
    mail = corpus("alternative.eml")
    # then
    assert mail.text == 'The reset link says "expired". Grüße'
    assert mail.html.startswith("<p>The reset link")
    assert mail.attachments == []


def test_related_inline_image_is_marked_inline_by_its_cid() -> None:
    # when
    mail = corpus("related_cid_image.eml")
    # then
    assert mail.text == "See the screenshot below."
    assert 'src="cid:shot1@customer.test"' in mail.html
    image = attachment(mail, "screenshot.png")
    assert image.content_id == "shot1@customer.test"
    assert image.inline is True
    assert image.content.startswith(PNG_MAGIC)


def test_mixed_attachments_are_decoded_and_named() -> None:
    # when
    mail = corpus("mixed_attachments.eml")
    # then
    assert mail.text == "Contract and logo attached."
    assert [a.filename for a in mail.attachments] == ["contract.pdf", "attachment.png", "meeting.ics"]
    pdf, png, ics = mail.attachments
    assert pdf.content.startswith(b"%PDF-1.4")
    assert pdf.content_type == "application/pdf"
    assert not pdf.inline
    assert png.content.startswith(PNG_MAGIC)
    assert png.content_type == "image/png"
    assert ics.content.startswith(b"BEGIN:VCALENDAR")
    assert ics.content_type == "text/calendar"


def test_forwarded_message_is_an_eml_attachment_named_after_its_subject() -> None:
    # when
    mail = corpus("forwarded_message.eml")
    # then
    assert mail.text == "See the forwarded complaint below."
    forwarded = attachment(mail, "Broken order – again.eml")
    assert forwarded.content_type == "message/rfc822"
    assert b"Message-ID: <angry.1@elsewhere.test>" in forwarded.content
    assert parse_email(forwarded.content).attachments[0].content.startswith(PNG_MAGIC)


# --- charsets and encoded words ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "subject", "sender"),
    [
        ("subject_gb2312.eml", "发票问题请回复", "客户"),
        ("subject_big5.eml", "帳單查詢，謝謝", "客户"),
        ("subject_iso2022jp.eml", "請求書について", "客户"),
        ("subject_koi8r.eml", "Проблема с заказом", "Клиент"),
        ("subject_windows1250.eml", "Žádost o vrácení peněz", "Zákazník"),
        ("subject_windows1251.eml", "Запрос на возврат", "Клиент"),
    ],
)
def test_encoded_subjects_and_bodies(name: str, subject: str, sender: str) -> None:
    # when
    mail = corpus(name)
    # then
    assert mail.subject == subject
    assert mail.from_ is not None
    assert mail.from_.name == sender
    assert mail.text.strip() == subject


def test_gbk_characters_labelled_gb2312_and_split_across_encoded_words() -> None:
    # when
    mail = corpus("charset_gbk_labelled_gb2312.eml")
    # then: 镕 and 喆 are not in GB2312 but in GBK/GB18030; the subject's bytes are split mid-character
    assert mail.subject == "镕基 and 喆"
    assert mail.text == "镕基 and 喆"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("charset_shift_jis.eml", "ご確認ください①"),
        ("charset_koi8u_body.eml", "Ґанок і їжак"),
        ("charset_unknown_label.eml", "Grüße aus Köln"),
        ("charset_mislabelled_utf8_as_ascii.eml", "Příliš žluťoučký kůň"),
        ("charset_8bit_no_charset.eml", "Un café crème, s'il vous plaît."),
        ("broken_bad_charset.eml", "Dobrý den é =XX"),
    ],
)
def test_body_charsets_and_fallbacks(name: str, text: str) -> None:
    # when
    mail = corpus(name)
    # then
    assert mail.text.strip() == text


def test_8bit_header_without_encoding_is_read_as_utf8_or_windows_1252() -> None:
    # when
    mail = corpus("charset_8bit_no_charset.eml")
    # then
    assert mail.subject == "Café crème"
    assert "\x00" not in mail.text


def test_an_8bit_byte_inside_an_inner_messages_encoded_word_is_kept_not_fatal() -> None:
    # given: a forwarded message/rfc822 whose Subject's Q-word got a raw 8-bit byte
    raw = (
        b"From: Jana <jana@customer.test>\nTo: support@example.com\nSubject: Fwd\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="FW"\n\n--FW\nContent-Type: text/plain\n\nSee below.\n'
        b"--FW\nContent-Type: message/rfc822\n\nFrom: A <a@elsewhere.test>\n"
        b"Subject: =?utf-8?Q?Broken_\x80order?=\n\nMy order arrived broken.\n--FW--\n"
    )
    # when
    mail = parse_email(raw)
    # then: the mail is read whole; the broken word decodes as far as it can
    assert mail.error == ""
    assert "See below." in mail.text


def test_shift_jis_subject_uses_the_windows_superset() -> None:
    # when
    mail = corpus("charset_shift_jis.eml")
    # then: ① exists in cp932 only
    assert mail.subject == "お問い合わせ①"


def test_broken_encoded_words_keep_what_can_be_read() -> None:
    # when
    mail = corpus("charset_broken_encoded_words.eml")
    # then
    assert mail.subject.startswith("[ACME] žádost plain café")
    assert "bad q=ZZ" in mail.subject
    assert mail.from_ is not None
    assert mail.from_.name == "Jiří"
    assert mail.date is None


def test_rfc2231_and_rfc2047_filenames() -> None:
    # when
    mail = corpus("rfc2231_filenames.eml")
    # then
    assert [a.filename for a in mail.attachments] == [
        "Smlouva_příloha_č.1.pdf",
        "发票清单.pdf",
        "Zpráva ředitele.txt",
    ]
    assert mail.attachments[0].content.startswith(b"%PDF")


def test_decode_helpers() -> None:
    # then
    assert decode_header_value("=?utf-8?q?a?= =?utf-8?q?b?=") == "ab"
    assert decode_header_value("=?utf-8?q?a?= x =?utf-8?q?b?=") == "a x b"
    assert decode_header_value("=?UTF-8*en?B?xb5sdQ==?=") == "žlu"  # RFC 2231 language tag
    assert decode_header_value("Fwd:\r\n\tsomething") == "Fwd: something"
    assert decode_bytes("Grüße".encode("cp1252"), "utf-8") == "Grüße"
    assert decode_bytes("абв".encode("cp1251"), "windows-1251") == "абв"
    assert decode_bytes("中文".encode("big5"), "big5") == "中文"
    assert decode_bytes(b"a\x00b", None) == "ab"
    assert decode_bytes("tschüß".encode(), "x-no-such-charset") == "tschüß"
    assert html_to_text("<p>a&amp;b</p><script>x()</script><p>c<br>d</p>") == "a&b\n\nc\nd"


# --- hostile content -----------------------------------------------------------------------------
def test_hostile_html_is_kept_for_the_sanitizer_but_its_text_is_clean() -> None:
    # when
    mail = corpus("hostile_html.eml")
    # then: the parser keeps the HTML as sent (nh3 cleans it for display); its text has no code
    assert "<script>" in mail.html
    assert "Visible words" in mail.text
    assert "Click here" in mail.text
    assert "alert" not in mail.text
    assert "javascript" not in mail.text


def test_hostile_filenames_are_decoded_without_control_characters() -> None:
    # when
    mail = corpus("hostile_filenames.eml")
    names = [a.filename for a in mail.attachments]
    # then: path parts and bidi tricks are left for safe_filename at storage; controls are gone here
    assert names[0] == "../../etc/passwd"
    assert names[1] == "évil\u202egpj.exe"
    assert names[2] == "nulbyte.txt"
    assert names[3] == "a" * 396 + ".pdf"
    assert all(ch >= " " for name in names for ch in name)


# --- broken MIME -----------------------------------------------------------------------------------
def test_multipart_without_boundary_recovers_its_parts() -> None:
    # when
    mail = corpus("broken_missing_boundary.eml")
    # then
    assert mail.text == "Text inside a multipart without boundary."
    assert attachment(mail, "lost.pdf").content.startswith(b"%PDF")
    assert any("parts recovered" in d for d in mail.defects)


def test_multipart_without_boundary_or_parts_is_read_as_text() -> None:
    # when
    mail = corpus("broken_no_boundary_plain.eml")
    # then
    assert mail.text.strip() == "Just some words."
    assert any("read as text" in d for d in mail.defects)


def test_truncated_base64_keeps_best_effort_bytes_and_a_defect() -> None:
    # when
    mail = corpus("broken_truncated_base64.eml")
    # then
    assert mail.text.startswith("Text in base64 that was")
    image = attachment(mail, "cut.png")
    assert image.content.startswith(PNG_MAGIC)
    assert any("invalid base64" in d for d in mail.defects)
    # the last part: a made-up transfer encoding (kept raw), cut off without its closing boundary
    assert attachment(mail, "bogus-cte.pdf").content == b"%PD"


def test_mail_without_headers_and_binary_garbage() -> None:
    # when
    headless = corpus("broken_no_headers.eml")
    garbage = corpus("broken_binary_garbage.eml")
    # then
    assert headless.from_ is None
    assert headless.subject == ""
    assert "no headers at all" in headless.text
    assert garbage.from_ is None
    assert "\x00" not in garbage.text


def test_deep_nesting_stops_with_a_defect() -> None:
    # when
    mail = corpus("broken_deep_nesting.eml")
    # then
    assert mail.subject == "Deep"
    assert any("nesting too deep" in d for d in mail.defects)


# --- headers -------------------------------------------------------------------------------------
def test_addresses_cc_reply_to_and_delivered_to() -> None:
    # when
    mail = corpus("cc_and_several_to.eml")
    # then
    assert [a.address for a in mail.to] == ["support@example.com", "petr@customer.test", "help@example.com"]
    assert mail.to[1].name == "Petr Svoboda"
    assert [(a.name, a.address) for a in mail.cc] == [
        ("Lucie Dvořáková", "lucie@customer.test"),
        ("Support", "SUPPORT@example.com"),
    ]
    assert [a.address for a in mail.reply_to] == ["jana.private@customer.test"]
    assert mail.delivered_to == ["support@example.com", "support+1001-zzzzzzzzzz@example.com"]
    assert mail.return_path is None
    assert mail.date == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # no zone: read as UTC
    assert mail.headers["X-Mailer"] == "Thunderbird 128"
    assert mail.headers["X-Spam-Score"] == "0.1"


def test_reply_ids_without_brackets_oldest_first() -> None:
    # when
    mail = corpus("reply_gmail.eml")
    # then
    assert mail.in_reply_to == ["t1001.abc@switchboard.test"]
    assert mail.references == ["first.1@customer.test", "t1001.abc@switchboard.test"]


def test_long_references_keep_the_first_and_the_last_twenty() -> None:
    # given
    ids = " ".join(f"<r{i}@x.test>" for i in range(40))
    raw = f"From: a@x.test\nReferences: {ids}\nDate: Tue, 01 Dec 2026 10:00:00 +0100\n\nhi\n".encode()
    # when
    mail = parse_email(raw)
    # then
    assert mail.references == ["r0@x.test", *[f"r{i}@x.test" for i in range(20, 40)]]
    assert mail.date is not None
    assert mail.date.utcoffset() == timedelta(hours=1)


# --- automatic mail ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("auto_auto_submitted.eml", "Auto-Submitted: auto-replied"),
        ("auto_x_autoreply.eml", "X-Autoreply: yes"),
        ("auto_x_autorespond.eml", "X-Autorespond: vacation"),
        ("auto_x_autoresponse.eml", "X-Autoresponse: 1"),
        ("auto_x_auto_response_suppress.eml", "X-Auto-Response-Suppress: All"),
        ("auto_precedence_bulk.eml", "Precedence: bulk"),
        ("auto_precedence_junk.eml", "Precedence: junk"),
        ("auto_precedence_list.eml", "Precedence: list"),
        ("auto_precedence_auto_reply.eml", "Precedence: auto_reply"),
        ("auto_list_id.eml", "List-Id present"),
        ("auto_list_unsubscribe.eml", "List-Unsubscribe present"),
        ("auto_list_post.eml", "List-Post present"),
        ("auto_null_return_path.eml", "Return-Path: <> (null sender)"),
        ("auto_sender_mailer_daemon.eml", "sender MAILER-DAEMON@mx.customer.test"),
        ("auto_sender_postmaster.eml", "sender postmaster@customer.test"),
        ("auto_sender_noreply.eml", "sender noreply@shop.test"),
        ("auto_sender_no_reply.eml", "sender no-reply@shop.test"),
        ("auto_sender_do_not_reply.eml", "sender do-not-reply@bank.test"),
        ("auto_x_failed_recipients.eml", "X-Failed-Recipients present"),
        ("read_receipt.eml", "report: disposition-notification"),
    ],
)
def test_automatic_reasons(name: str, reason: str) -> None:
    # when
    mail = corpus(name)
    # then
    assert mail.automatic == reason


def test_auto_submitted_no_is_a_person() -> None:
    # when
    mail = corpus("auto_auto_submitted_no.eml")
    # then
    assert mail.automatic == ""
    assert mail.headers["Auto-Submitted"] == "no"


def test_null_return_path_is_empty_not_none() -> None:
    # then
    assert corpus("auto_null_return_path.eml").return_path == ""
    assert corpus("plain.eml").return_path is None


# --- reports and bounces --------------------------------------------------------------------------
def test_standard_dsn_from_a_postfix_like_mta() -> None:
    # when
    mail = corpus("bounce_postfix_dsn.eml")
    # then
    assert mail.report is not None
    assert mail.report.report_type == "delivery-status"
    assert mail.report.standard is True
    assert mail.report.original_message_id == "t1001.abc@switchboard.test"
    [recipient] = mail.report.recipients
    assert (recipient.address, recipient.action, recipient.status) == ("gone@customer.test", "failed", "5.1.1")
    assert "User unknown in local recipient table" in recipient.diagnostic
    assert mail.automatic
    assert mail.return_path == ""


def test_delayed_dsn_with_rfc822_headers() -> None:
    # when
    mail = corpus("bounce_rfc822_headers_delayed.eml")
    # then
    assert mail.report is not None
    assert mail.report.original_message_id == "t1002.def@switchboard.test"
    assert [(r.address, r.action, r.status) for r in mail.report.recipients] == [
        ("slow@customer.test", "delayed", "4.4.7")
    ]


@pytest.mark.parametrize(
    ("name", "original", "recipient", "status"),
    [
        ("bounce_gmail_nonstandard.eml", "t1003.ghi@switchboard.test", "nobody@gmail.test", "5.1.1"),
        ("bounce_exchange_nonstandard.eml", "t1004.jkl@switchboard.test", "left.company@customer.test", "5.1.10"),
    ],
)
def test_nonstandard_bounces(name: str, original: str, recipient: str, status: str) -> None:
    # when
    mail = corpus(name)
    # then
    assert mail.report is not None
    assert mail.report.standard is False
    assert mail.report.report_type == "delivery-status"
    assert mail.report.original_message_id == original
    assert [(r.address, r.action, r.status) for r in mail.report.recipients] == [(recipient, "failed", status)]
    assert mail.automatic


def test_bounce_without_an_original_is_automatic_but_no_report() -> None:
    # when
    mail = corpus("bounce_unmatched.eml")
    # then
    assert mail.report is None
    assert mail.automatic == "sender MAILER-DAEMON@old.customer.test"
    assert any("no original Message-ID" in d for d in mail.defects)


def test_read_receipt_report() -> None:
    # when
    mail = corpus("read_receipt.eml")
    # then
    assert mail.report is not None
    assert mail.report.report_type == "disposition-notification"
    assert mail.report.original_message_id == "t1001.abc@switchboard.test"
    assert [(r.address, r.action) for r in mail.report.recipients] == [("jana@customer.test", "displayed")]


# --- quotes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "visible", "quoted_marker"),
    [
        ("reply_gmail.eml", "It works again, thank you!", "We restarted the print server."),
        ("reply_outlook.eml", "Still broken on floor 4 – can you check?\n\nRegards\nJana", "Sent: Tuesday"),
        ("reply_original_message.eml", "Please close the ticket.", "-----Original Message-----"),
        ("reply_german.eml", "Vielen Dank, jetzt funktioniert es wieder.", "Druckserver neu gestartet"),
        ("reply_czech.eml", "Děkuji, už to funguje.", "Restartovali jsme"),
        ("reply_russian.eml", "Спасибо, теперь всё работает.", "Мы перезапустили"),
        ("reply_gmail_date_name_addr.eml", "Да, адрес правильный.", "Подтвердите адрес"),
    ],
)
def test_visible_text_excludes_the_quote(name: str, visible: str, quoted_marker: str) -> None:
    # when
    mail = corpus(name)
    # then
    assert mail.visible_text == visible
    assert quoted_marker in mail.text
    assert quoted_marker not in mail.visible_text
    assert quoted_marker in mail.quoted_text


def test_signatures_are_cut_from_the_visible_text() -> None:
    # then
    assert "Jana Nováková" not in corpus("reply_czech.eml").visible_text  # "-- " delimiter
    assert "Hans Müller" not in corpus("reply_german.eml").visible_text  # "Mit freundlichen Grüßen"


def test_split_reply_never_leaves_nothing() -> None:
    # given
    only_quote = "On Mon, 1 Jan 2026 at 10:00, A <a@x.test> wrote:\n> hello\n"
    # when
    visible, rest = split_reply(only_quote)
    # then
    assert visible == only_quote.strip()
    assert rest == ""


def test_split_reply_keeps_inline_answers_between_quotes() -> None:
    # given
    text = "> question one?\nanswer one\n> question two?\nanswer two\n"
    # when
    visible, _ = split_reply(text, is_reply=True)
    # then
    assert "answer two" in visible
    assert "answer one" in visible


def test_split_reply_uses_the_html_quote_container_when_the_text_has_no_marker() -> None:
    # given
    html = '<div>New words here</div><div class="gmail_quote"><blockquote>old words</blockquote></div>'
    # when
    visible, _ = split_reply(html_to_text(html), html)
    # then
    assert visible == "New words here"


def test_hostile_sizes_stay_fast() -> None:
    # given: shapes that make naive regexes quadratic (unclosed tags, comments, long colon lines)
    html = "<script>" * 30_000 + "<" * 100_000 + "<!--" * 30_000
    raw = b"From: a@x.test\nSubject: " + b"=?utf-8?q?" * 30_000 + b"\nContent-Type: text/html\n\n" + html.encode()
    colon_lines = ("x: " * 100 + ":\n") * 2_000
    # when
    started = time.perf_counter()
    mail = parse_email(raw)
    visible, _ = split_reply(colon_lines, is_reply=True)
    elapsed = time.perf_counter() - started
    # then
    assert mail.error == ""
    assert visible
    assert elapsed < 5, elapsed


def test_html_to_text_drops_invisible_elements_even_unclosed() -> None:
    # then
    assert html_to_text("a<!-- hidden -->b<STYLE>p{}</Style >c<script>never closed") == "abc"
    assert html_to_text("<title>T</title><p>x</p>") == "x"


# --- mutations ------------------------------------------------------------------------------------
_SEEDS = [p.read_bytes() for p in corpus_files()]
_CHARSETS = ["utf-8", "gb2312", "big5", "iso-2022-jp", "koi8-r", "x-bogus", "utf-16", "utf-7", "", "\x00", "a" * 300]


def _mutate(raw: bytes, choice: int, position: float, payload: bytes, charset: str) -> bytes:
    index = int(position * len(raw))
    if choice == 0:  # bit flips
        data = bytearray(raw)
        for offset in range(0, len(payload), 2):
            if data:
                where = (index + payload[offset] * 31) % len(data)
                data[where] ^= 1 << (payload[offset + 1] % 8 if offset + 1 < len(payload) else 0)
        return bytes(data)
    if choice == 1:  # truncation
        return raw[:index]
    if choice == 2:  # an inserted header line
        line = b"X-" + payload[:20] + b": " + payload[20:] + b"\n"
        return raw[:index] + line + raw[index:]
    if choice == 3:  # a deleted line
        lines = raw.split(b"\n")
        del lines[int(position * (len(lines) - 1))]
        return b"\n".join(lines)
    if choice == 4:  # boundary damage
        return raw.replace(b"boundary=", b"boundary=" + payload[:5], 1).replace(b"--", payload[:2] or b"-", 3)
    if choice == 5:  # a random charset everywhere
        return raw.replace(b"charset=", b"charset=" + charset.encode("utf-8", "replace") + b";x=")
    # spliced bytes
    return raw[:index] + payload + raw[index:]


@settings(
    max_examples=int(os.environ.get("EMAIL_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.sampled_from(_SEEDS),
    choice=st.integers(min_value=0, max_value=6),
    position=st.floats(min_value=0, max_value=1),
    payload=st.binary(max_size=200),
    charset=st.sampled_from(_CHARSETS),
)
def test_mutated_mail_never_raises(seed: bytes, choice: int, position: float, payload: bytes, charset: str) -> None:
    # given
    raw = _mutate(seed, choice, position, payload, charset)
    # when
    mail = parse_email(raw)
    # then
    assert isinstance(mail, ParsedEmail)
    assert mail.sha256 == hashlib.sha256(raw).hexdigest()
    assert mail.error == ""  # every stage copes: broken parts become defects, not failures
    assert "\x00" not in mail.text
    assert "\x00" not in mail.subject
    assert all(isinstance(a.content, bytes) for a in mail.attachments)


def test_random_bytes_never_raise() -> None:
    # given
    rng = random.Random(20261201)
    # when / then
    for size in (0, 1, 2, 10, 100, 1000, 10_000):
        mail = parse_email(rng.randbytes(size))
        assert isinstance(mail, ParsedEmail)


def test_a_failing_reply_split_leaves_the_mail_readable(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    def broken_split(*args: object, **kwargs: object) -> tuple[str, str]:
        raise RuntimeError("split failed")

    monkeypatch.setattr("channels_inbox.email.quotes.split_reply", broken_split)
    # when
    mail = corpus("reply_gmail.eml")
    # then
    assert mail.error == ""
    assert mail.visible_text == mail.text.strip()
    assert "quotes: RuntimeError: split failed" in mail.defects


def test_not_bytes_at_all_sets_error_instead_of_raising() -> None:
    # when
    mail = parse_email(None)  # type: ignore[arg-type]
    # then
    assert mail.error.startswith("unreadable message")


# --- CPython's email test corpus -----------------------------------------------------------------
_CPYTHON_FILES = sorted(CPYTHON_DATA.glob("msg_*.txt")) if CPYTHON_DATA.is_dir() else []


@pytest.mark.skipif(not _CPYTHON_FILES, reason="CPython's test_email data is not installed here")
def test_cpython_email_corpus_parses_with_attachments() -> None:
    # when
    results = {path.name: parse_email(path.read_bytes()) for path in _CPYTHON_FILES}
    # then
    assert len(results) >= 40
    assert {name: mail.error for name, mail in results.items() if mail.error} == {}
    # The nested multiparts that break naive iter_attachments()/get_content():
    assert [a.filename for a in results["msg_13.txt"].attachments] == ["dingusfish.gif"]
    assert results["msg_13.txt"].attachments[0].content.startswith(b"GIF8")
    assert len(results["msg_02.txt"].attachments) == 5  # a digest: five forwarded messages
    assert all(a.content_type == "message/rfc822" for a in results["msg_02.txt"].attachments)
    assert "It's never too late" in results["msg_39.txt"].text
    assert len(results["msg_39.txt"].attachments) == 2
    assert sum(len(m.attachments) for m in results.values()) >= 30
