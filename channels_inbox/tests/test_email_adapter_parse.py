"""EmailAdapter.parse on the corpus: what the email inbox makes of each kind of mail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from channels_inbox.actions.inboxes import do_create_inbox
from channels_inbox.adapters import get_adapter
from channels_inbox.adapters.base import ChannelEvent, DeliveryStatusUpdate, InboundMessage
from channels_inbox.email import parse as parse_module
from channels_inbox.email.tokens import reply_address
from customers.models import IdentityKind

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "email_corpus"


@pytest.fixture
def inbox(db: Any) -> Any:
    inbox, _ = do_create_inbox(
        kind="email", name="Support", values={"address": "support@example.com", "aliases": "help@example.com"}
    )
    return inbox


def raw(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def parse(inbox: Any, data: bytes) -> InboundMessage | DeliveryStatusUpdate | None:
    parsed = get_adapter("email").parse(inbox, data, {})
    assert not isinstance(parsed, ChannelEvent)
    return parsed


def test_plain_mail_becomes_an_inbound_message(inbox: Any) -> None:
    # when
    result = parse(inbox, raw("plain.eml"))
    # then
    assert isinstance(result, InboundMessage)
    assert result.external_id == "plain.1@customer.test"
    assert [(i.kind, i.value) for i in result.sender.identities] == [(IdentityKind.EMAIL, "jana@customer.test")]
    assert result.sender.name == "Jana Novak"
    assert result.subject == "Printer is offline"
    assert "floor 3 is offline" in result.text
    assert result.automatic is False
    assert result.thread_by_customer is False
    assert result.metadata["email"]["visible_text"].startswith("Hello,")


def test_standard_bounce_marks_the_original_delivery_failed(inbox: Any) -> None:
    # when
    result = parse(inbox, raw("bounce_postfix_dsn.eml"))
    # then
    assert isinstance(result, DeliveryStatusUpdate)
    assert result.status == "failed"
    assert result.provider_id == "t1001.abc@switchboard.test"
    assert "gone@customer.test" in result.error
    assert "5.1.1" in result.error


@pytest.mark.parametrize(
    ("name", "original", "recipient"),
    [
        ("bounce_gmail_nonstandard.eml", "t1003.ghi@switchboard.test", "nobody@gmail.test"),
        ("bounce_exchange_nonstandard.eml", "t1004.jkl@switchboard.test", "left.company@customer.test"),
    ],
)
def test_nonstandard_bounces_mark_the_delivery_failed(inbox: Any, name: str, original: str, recipient: str) -> None:
    # when
    result = parse(inbox, raw(name))
    # then
    assert isinstance(result, DeliveryStatusUpdate)
    assert (result.status, result.provider_id) == ("failed", original)
    assert recipient in result.error


def test_delayed_delivery_report_changes_nothing(inbox: Any) -> None:
    # when
    result = parse(inbox, raw("bounce_rfc822_headers_delayed.eml"))
    # then
    assert result is None


def test_bounce_without_an_original_is_automatic_mail(inbox: Any) -> None:
    # when
    result = parse(inbox, raw("bounce_unmatched.eml"))
    # then
    assert isinstance(result, InboundMessage)
    assert result.automatic is True


def test_read_receipt_is_dropped(inbox: Any) -> None:
    # when
    result = parse(inbox, raw("read_receipt.eml"))
    # then
    assert result is None


@pytest.mark.parametrize("name", ["auto_auto_submitted.eml", "auto_precedence_bulk.eml", "auto_sender_noreply.eml"])
def test_auto_reply_is_automatic(inbox: Any, name: str) -> None:
    # when
    result = parse(inbox, raw(name))
    # then
    assert isinstance(result, InboundMessage)
    assert result.automatic is True
    assert result.metadata["email"]["automatic"]


def test_person_with_auto_submitted_no_is_not_automatic(inbox: Any) -> None:
    # when
    result = parse(inbox, raw("auto_auto_submitted_no.eml"))
    # then
    assert isinstance(result, InboundMessage)
    assert result.automatic is False


@pytest.mark.parametrize(
    "sender", ["support@example.com", "Support <SUPPORT@example.com>", "help@example.com", "support+7-x@example.com"]
)
def test_mail_from_our_own_addresses_is_ignored(inbox: Any, sender: str) -> None:
    # given
    data = raw("plain.eml").replace(b"From: Jana Novak <jana@customer.test>", f"From: {sender}".encode())
    # when
    result = parse(inbox, data)
    # then
    assert result is None


@pytest.mark.parametrize("name", ["broken_binary_garbage.eml", "broken_no_headers.eml"])
def test_mail_without_a_sender_is_kept_as_unreadable(inbox: Any, name: str) -> None:
    # when
    result = parse(inbox, raw(name))
    # then
    assert isinstance(result, InboundMessage)
    assert "could not be read (the mail has no usable From address)" in result.text
    assert result.sender.identities[0].kind == IdentityKind.EXTERNAL
    assert result.external_id.startswith("sha256:")


def test_a_failing_parse_stage_is_named_on_the_unreadable_ticket(inbox: Any, monkeypatch: Any) -> None:
    # given: the body stage fails (as a parser bug would); the headers were read
    def broken_body(msg: Any, result: Any) -> None:
        raise RuntimeError("boom in the body")

    monkeypatch.setattr(parse_module, "_read_body", broken_body)
    # when
    result = parse(inbox, raw("plain.eml"))
    # then
    assert isinstance(result, InboundMessage)
    assert "body: RuntimeError: boom in the body" in result.text
    assert result.subject == "Printer is offline"
    assert result.sender.identities[0].value == "jana@customer.test"
    assert result.metadata["email"]["parse_error"].startswith("body: RuntimeError")


def test_co_recipients_become_cc_without_our_addresses(inbox: Any) -> None:
    # when
    result = parse(inbox, raw("cc_and_several_to.eml"))
    # then
    assert isinstance(result, InboundMessage)
    assert [(c.identities[0].value, c.name) for c in result.cc] == [
        ("petr@customer.test", "Petr Svoboda"),
        ("lucie@customer.test", "Lucie Dvořáková"),
    ]


def test_subject_token_and_signed_plus_address_are_ticket_candidates(inbox: Any) -> None:
    # given
    signed = reply_address(inbox, 1042)
    data = (
        raw("plain.eml")
        .replace(b"To: support@example.com", f"To: Support <{signed}>".encode())
        .replace(b"Subject: Printer is offline", b"Subject: Re: Printer is offline [#1001]")
    )
    # when
    result = parse(inbox, data)
    # then
    assert isinstance(result, InboundMessage)
    assert result.ticket_candidates == [1001, 1042]


def test_tampered_plus_address_is_no_candidate(inbox: Any) -> None:
    # given
    signed = reply_address(inbox, 1042)
    local, _, domain = signed.partition("@")
    tampered_number = local.replace("+1042-", "+1043-") + "@" + domain
    tampered_signature = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain
    data = raw("plain.eml").replace(b"To: support@example.com", f"To: {tampered_number}, {tampered_signature}".encode())
    # when
    result = parse(inbox, data)
    # then
    assert isinstance(result, InboundMessage)
    assert result.ticket_candidates == []


def test_plus_address_in_delivered_to_counts(inbox: Any) -> None:
    # given
    signed = reply_address(inbox, 77)
    data = raw("plain.eml").replace(
        b"To: support@example.com", f"To: support@example.com\nDelivered-To: {signed}".encode()
    )
    # when
    result = parse(inbox, data)
    # then
    assert isinstance(result, InboundMessage)
    assert result.ticket_candidates == [77]


def test_reply_carries_its_ids_and_visible_text(inbox: Any) -> None:
    # when
    result = parse(inbox, raw("reply_outlook.eml"))
    # then
    assert isinstance(result, InboundMessage)
    assert result.in_reply_to[0] == "first.1@customer.test"
    assert "t1001.abc@switchboard.test" in result.in_reply_to
    assert result.metadata["email"]["visible_text"] == "Still broken on floor 4 – can you check?\n\nRegards\nJana"
    assert "From: Support" in result.text


def test_inline_image_and_attachments_are_passed_on(inbox: Any) -> None:
    # when
    related = parse(inbox, raw("related_cid_image.eml"))
    mixed = parse(inbox, raw("mixed_attachments.eml"))
    # then
    assert isinstance(related, InboundMessage)
    assert isinstance(mixed, InboundMessage)
    [image] = related.attachments
    assert (image.filename, image.content_id, image.inline) == ("screenshot.png", "shot1@customer.test", True)
    assert [a.filename for a in mixed.attachments] == ["contract.pdf", "attachment.png", "meeting.ics"]
    assert mixed.attachments[0].declared_type == "application/pdf"


def test_attachments_over_the_limit_are_listed_not_passed(inbox: Any, settings: Any) -> None:
    # given
    settings.ATTACHMENT_MAX_BYTES = 100
    # when
    result = parse(inbox, raw("mixed_attachments.eml"))
    # then
    assert isinstance(result, InboundMessage)
    assert [a.filename for a in result.attachments] == ["attachment.png", "meeting.ics"]
    assert result.metadata["email"]["attachments_over_limit"] == [{"filename": "contract.pdf", "size": 191}]


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.eml")), ids=lambda p: p.name)
def test_every_corpus_file_gives_a_result_without_raising(inbox: Any, path: Path) -> None:
    # when
    result = parse(inbox, path.read_bytes())
    # then
    assert result is None or isinstance(result, InboundMessage | DeliveryStatusUpdate)


def test_hostile_filenames_are_stored_under_safe_names(inbox: Any) -> None:
    from channels_inbox.actions.process import do_process_inbound_event
    from channels_inbox.actions.receive_email import do_receive_email
    from channels_inbox.models import InboundEvent
    from helpdesk.models import Attachment

    # given a mail whose attachments are named to escape paths and fool the eye
    receipt = do_receive_email(inbox, raw("hostile_filenames.eml"), source="test")
    # when it is processed
    do_process_inbound_event(receipt.event_id)
    message = InboundEvent.objects.get(pk=receipt.event_id).message
    # then no stored name has a path, a control or a direction character, or is over 200 characters
    names = list(Attachment.objects.filter(message=message).values_list("filename", "file"))
    assert names
    for name, path in names:
        assert "/" not in name
        assert "\\" not in name
        assert ".." not in name.split(".")[:1]
        assert not any(ord(c) < 32 or c in "\u202e\u202d\u200e\u200f\u2066\u2067\u2068\u2069" for c in name), name
        assert len(name) <= 200
        # the file on disk is named by its content hash, never by the sender
        assert path.startswith("attachments/")
        assert name not in path
    assert any(name.endswith(".exe") for name, _ in names)  # "évil\u202egpj.exe" shows as what it is
