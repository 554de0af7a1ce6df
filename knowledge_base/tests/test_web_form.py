"""The help center's request form (web_form inboxes): rendering, submission through the ingest
spine, dedupe, spam protection, limits, CSRF, and the email reply that threads back."""

from __future__ import annotations

import logging
import time
import uuid
from email.message import EmailMessage
from typing import Any

import pytest
from django.core import mail as django_mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from channels_inbox.actions.inboxes import do_create_inbox, do_update_inbox_settings
from channels_inbox.actions.receive_email import do_receive_email
from channels_inbox.models import InboundEvent, InboundEventStatus, OutboundDelivery
from customers.models import Identity
from helpdesk.actions.replies import do_reply
from helpdesk.models import Attachment, DeliveryStatus, Direction, Message, Ticket
from knowledge_base.forms import new_token

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & <b>bold</b>'


@pytest.fixture
def email_inbox(db: Any) -> Any:
    inbox, _ = do_create_inbox(kind="email", name="Support mail", values={"address": "support@example.com"})
    return inbox


@pytest.fixture
def form_inbox(email_inbox: Any) -> Any:
    inbox, _ = do_create_inbox(
        kind="web_form",
        name="Contact form",
        slug="contact",
        values={"reply_email_inbox": email_inbox.slug, "title": "Write to us", "intro": "We answer within a day."},
    )
    return inbox


def token(inbox: Any, age: float = 60) -> str:
    """A form token as if the form had been shown `age` seconds ago."""
    return new_token(inbox, now=time.time() - age)


def data(inbox: Any, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "Jana Nováková",
        "email": "Jana@Example.com",
        "subject": "Parcel missing",
        "message": "My order #881 has not arrived.\nCan you check?",
        "website": "",
        "token": token(inbox),
    }
    values.update(overrides)
    return values


def post(client: Any, inbox: Any, values: dict[str, Any]) -> Any:
    return client.post(f"/help/{inbox.slug}/new/", data=values)


def nothing_stored() -> None:
    assert InboundEvent.objects.count() == 0
    assert Ticket.objects.count() == 0
    assert Message.objects.count() == 0


# --- rendering -------------------------------------------------------------------------------


def test_the_form_renders_with_its_settings_token_and_honeypot(client: Any, form_inbox: Any) -> None:
    resp = client.get("/help/contact/new/")
    assert resp.status_code == 200
    body = resp.content.decode()
    assert "<h1>Write to us</h1>" in body
    assert "We answer within a day." in body
    assert 'name="csrfmiddlewaretoken"' in body
    assert 'name="website"' in body
    assert 'class="help-hp" aria-hidden="true"' in body
    assert 'type="file" name="attachments" multiple' in body
    assert 'enctype="multipart/form-data"' in body
    assert "/static/help/help.css" in body
    assert "http://" not in body.replace("http://testserver", "")
    assert "https://" not in body
    assert resp.context["form"]["token"].value()
    # each rendering carries its own nonce
    again = client.get("/help/contact/new/")
    assert again.context["form"]["token"].value() != resp.context["form"]["token"].value()


def test_help_new_goes_to_the_first_active_web_form(client: Any, email_inbox: Any) -> None:
    assert client.get("/help/new/").status_code == 404
    first, _ = do_create_inbox(kind="web_form", name="First", values={"reply_email_inbox": email_inbox.slug})
    do_create_inbox(kind="web_form", name="Second", values={"reply_email_inbox": email_inbox.slug})
    resp = client.get("/help/new/")
    assert resp.status_code == 302
    assert resp["Location"] == f"/help/{first.slug}/new/"
    first.is_active = False
    first.save(update_fields=["is_active"])
    assert client.get("/help/new/")["Location"] == "/help/second/new/"
    assert client.get(f"/help/{first.slug}/new/").status_code == 404


def test_other_inbox_kinds_and_unknown_slugs_have_no_form(client: Any, email_inbox: Any) -> None:
    assert client.get(f"/help/{email_inbox.slug}/new/").status_code == 404
    assert client.get("/help/nope/new/").status_code == 404


def test_settings_are_validated(email_inbox: Any) -> None:
    with pytest.raises(ValueError, match="missing settings"):
        do_create_inbox(kind="web_form", name="F", values={})
    with pytest.raises(ValueError, match="no email inbox 'nope'"):
        do_create_inbox(kind="web_form", name="F", values={"reply_email_inbox": "nope"})
    with pytest.raises(ValueError, match="require_subject must be true or false"):
        do_create_inbox(
            kind="web_form", name="F", values={"reply_email_inbox": email_inbox.slug, "require_subject": "maybe"}
        )
    inbox, _ = do_create_inbox(
        kind="web_form",
        name="F",
        values={"reply_email_inbox": email_inbox.slug, "require_subject": "yes", "allow_attachments": "false"},
    )
    assert inbox.settings == {
        "reply_email_inbox": email_inbox.slug,
        "require_subject": True,
        "allow_attachments": False,
    }


# --- submission ------------------------------------------------------------------------------


def test_a_valid_request_becomes_a_ticket_and_the_page_shows_its_number(client: Any, form_inbox: Any) -> None:
    upload = SimpleUploadedFile("../../etc/receipt.pdf", b"%PDF-1.4 receipt", content_type="application/pdf")
    resp = post(client, form_inbox, data(form_inbox, attachments=[upload]))
    assert resp.status_code == 302, resp.content
    event = InboundEvent.objects.get()
    assert event.status == InboundEventStatus.PROCESSED
    assert event.dedupe_key.startswith("web_form:")
    ticket = Ticket.objects.get()
    assert (ticket.channel, ticket.inbox_id, ticket.subject) == ("web_form", form_inbox.pk, "Parcel missing")
    assert ticket.customer.name == "Jana Nováková"
    assert [(i.kind, i.value) for i in Identity.objects.filter(customer=ticket.customer)] == [
        ("email", "jana@example.com")
    ]
    message = ticket.messages.get()
    assert message.direction == Direction.INBOUND
    assert message.text == "My order #881 has not arrived.\nCan you check?"
    assert message.html == ""
    assert message.external_id == event.dedupe_key
    assert event.message == message
    attachment = Attachment.objects.get()
    assert (attachment.message_id, attachment.filename, attachment.size) == (message.pk, "receipt.pdf", 16)
    with attachment.file.open("rb") as handle:
        assert handle.read() == b"%PDF-1.4 receipt"
    # the confirmation page (after a redirect: a reload never posts again) names the request
    page = client.get(resp["Location"])
    assert page.status_code == 200
    assert f"<strong>#{ticket.number}</strong>" in page.content.decode()
    assert 'http-equiv="refresh"' not in page.content.decode()


def test_without_a_subject_the_first_line_names_the_ticket(client: Any, form_inbox: Any) -> None:
    assert post(client, form_inbox, data(form_inbox, subject="")).status_code == 302
    assert Ticket.objects.get().subject == "My order #881 has not arrived."


def test_a_required_subject_is_required(client: Any, form_inbox: Any) -> None:
    do_update_inbox_settings(form_inbox, values={"require_subject": True})
    resp = post(client, form_inbox, data(form_inbox, subject=""))
    assert resp.status_code == 400
    assert resp.context["form"].errors == {"subject": ["This field is required."]}
    nothing_stored()


def test_attachments_can_be_switched_off(client: Any, form_inbox: Any) -> None:
    do_update_inbox_settings(form_inbox, values={"allow_attachments": False})
    assert 'name="attachments"' not in client.get("/help/contact/new/").content.decode()
    upload = SimpleUploadedFile("a.txt", b"hello", content_type="text/plain")
    assert post(client, form_inbox, data(form_inbox, attachments=[upload])).status_code == 302
    assert Ticket.objects.count() == 1
    assert Attachment.objects.count() == 0


def test_each_submission_is_a_new_request(client: Any, form_inbox: Any) -> None:
    assert post(client, form_inbox, data(form_inbox)).status_code == 302
    assert post(client, form_inbox, data(form_inbox, message="Another question")).status_code == 302
    assert Ticket.objects.count() == 2
    assert Ticket.objects.values("customer").distinct().count() == 1


def test_a_double_submit_of_one_form_creates_one_ticket(client: Any, form_inbox: Any) -> None:
    values = data(form_inbox)
    first = post(client, form_inbox, values)
    second = post(client, form_inbox, values)
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    assert InboundEvent.objects.count() == 1
    assert Ticket.objects.count() == 1
    assert Message.objects.count() == 1


def test_the_sent_page_refuses_forged_tokens(client: Any, form_inbox: Any) -> None:
    assert client.get("/help/contact/sent/forged/").status_code == 404


# --- spam protection -------------------------------------------------------------------------


def test_a_filled_honeypot_pretends_success_and_stores_nothing(
    client: Any, form_inbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="knowledge_base.views"):
        resp = post(client, form_inbox, data(form_inbox, website="http://spam.example"))
    assert resp.status_code == 302
    page = client.get(resp["Location"])
    assert page.status_code == 200
    assert "Thank you, we received your request" in page.content.decode()
    nothing_stored()
    assert [r.getMessage() for r in caplog.records if r.name == "knowledge_base.views"] == [
        "help form contact: honeypot filled, submission dropped"
    ]


def test_a_form_sent_back_too_fast_is_refused_with_the_same_token(client: Any, form_inbox: Any) -> None:
    fresh = token(form_inbox, age=1)
    resp = post(client, form_inbox, data(form_inbox, token=fresh))
    assert resp.status_code == 400
    assert "That was quick! Please check your request and send it again." in resp.content.decode()
    assert resp.context["form"]["token"].value() == fresh
    assert resp.context["form"]["message"].value() == "My order #881 has not arrived.\nCan you check?"
    nothing_stored()


def test_an_expired_form_is_shown_again_with_the_text_and_a_fresh_token(client: Any, form_inbox: Any) -> None:
    old = token(form_inbox, age=86400 + 5)
    resp = post(client, form_inbox, data(form_inbox, token=old, message=HOSTILE))
    assert resp.status_code == 400
    body = resp.content.decode()
    assert "The form expired, please send it again." in body
    form = resp.context["form"]
    assert form["message"].value() == HOSTILE
    assert form["email"].value() == "Jana@Example.com"
    # the entered text is shown back escaped, never as markup
    assert "<script>" not in body
    assert "&lt;script&gt;" in body
    nothing_stored()
    renewed = form["token"].value()
    assert renewed != old
    # the renewed form goes through once a person could have read it
    values = data(form_inbox, token=new_token(form_inbox, now=time.time() - 5))
    assert post(client, form_inbox, values).status_code == 302


@pytest.mark.parametrize("bad", ["", "garbage", "e30:1abc:xyz"])
def test_a_missing_or_forged_token_is_refused(client: Any, form_inbox: Any, bad: str) -> None:
    resp = post(client, form_inbox, data(form_inbox, token=bad))
    assert resp.status_code == 400
    assert "We could not verify the form." in resp.content.decode()
    nothing_stored()


def test_a_token_of_another_form_is_refused(client: Any, form_inbox: Any, email_inbox: Any) -> None:
    other, _ = do_create_inbox(kind="web_form", name="Other", values={"reply_email_inbox": email_inbox.slug})
    resp = post(client, form_inbox, data(form_inbox, token=token(other)))
    assert resp.status_code == 400
    nothing_stored()


def test_too_many_submissions_from_one_address_get_429(client: Any, form_inbox: Any, settings: Any) -> None:
    settings.HELP_FORM_PER_IP_PER_HOUR = 2
    assert post(client, form_inbox, data(form_inbox)).status_code == 302
    assert post(client, form_inbox, data(form_inbox)).status_code == 302
    resp = post(client, form_inbox, data(form_inbox))
    assert resp.status_code == 429
    assert "Too many requests" in resp.content.decode()
    assert Ticket.objects.count() == 2
    # another address is not limited
    other = client.post("/help/contact/new/", data=data(form_inbox), REMOTE_ADDR="198.51.100.7")
    assert other.status_code == 302
    assert Ticket.objects.count() == 3


# --- limits ----------------------------------------------------------------------------------


def test_an_oversize_file_is_refused_and_nothing_stored(client: Any, form_inbox: Any, settings: Any) -> None:
    settings.ATTACHMENT_MAX_BYTES = 10
    upload = SimpleUploadedFile("big.bin", b"x" * 11, content_type="application/octet-stream")
    resp = post(client, form_inbox, data(form_inbox, attachments=[upload]))
    assert resp.status_code == 400
    assert resp.context["form"].errors == {"attachments": ["big.bin is too large (at most 10\xa0bytes per file)."]}
    assert "big.bin is too large" in resp.content.decode()
    nothing_stored()


def test_too_many_files_and_too_many_bytes_in_all_are_refused(client: Any, form_inbox: Any, settings: Any) -> None:
    settings.REPLY_ATTACHMENTS_MAX_FILES = 2
    settings.REPLY_ATTACHMENTS_MAX_TOTAL_BYTES = 15
    files = [SimpleUploadedFile(f"f{i}.txt", b"12345678", content_type="text/plain") for i in range(3)]
    resp = post(client, form_inbox, data(form_inbox, attachments=files))
    assert resp.status_code == 400
    assert resp.context["form"].errors == {"attachments": ["Too many files (3; at most 2)."]}
    files = [SimpleUploadedFile(f"f{i}.txt", b"12345678", content_type="text/plain") for i in range(2)]
    resp = post(client, form_inbox, data(form_inbox, attachments=files))
    assert resp.status_code == 400
    assert resp.context["form"].errors == {
        "attachments": ["The files are too large together (at most 15\xa0bytes in all)."]
    }
    nothing_stored()


def test_too_long_text_is_refused_and_nothing_stored(client: Any, form_inbox: Any, settings: Any) -> None:
    settings.HELP_FORM_MAX_MESSAGE_CHARS = 50
    resp = post(client, form_inbox, data(form_inbox, message="x" * 51))
    assert resp.status_code == 400
    assert resp.context["form"].errors == {"message": ["Ensure this value has at most 50 characters (it has 51)."]}
    nothing_stored()


def test_an_invalid_email_is_refused(client: Any, form_inbox: Any) -> None:
    resp = post(client, form_inbox, data(form_inbox, email="not-an-address"))
    assert resp.status_code == 400
    assert resp.context["form"].errors == {"email": ["Enter a valid email address."]}
    nothing_stored()


def test_hostile_markup_stays_inert_text(client: Any, form_inbox: Any, agent: Any) -> None:
    resp = post(client, form_inbox, data(form_inbox, name=HOSTILE[:60], subject=HOSTILE, message=HOSTILE))
    assert resp.status_code == 302
    ticket = Ticket.objects.get()
    message = ticket.messages.get()
    assert (message.text, message.html) == (HOSTILE, "")
    assert ticket.subject == HOSTILE
    assert ticket.customer.name == HOSTILE[:60]
    # and the desk shows it as text
    desk = Client()
    desk.force_login(agent)
    page = desk.get(f"/desk/tickets/{ticket.number}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert '<script>alert("x")</script>' not in body
    assert "<img src=x onerror" not in body
    assert "&lt;script&gt;" in body


def test_csrf_is_enforced(form_inbox: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    resp = browser.post("/help/contact/new/", data=data(form_inbox))
    assert resp.status_code == 403
    nothing_stored()
    # a real browser: the page sets the cookie and carries the token
    page = browser.get("/help/contact/new/")
    csrf = page.context["csrf_token"]
    resp = browser.post("/help/contact/new/", data={**data(form_inbox), "csrfmiddlewaretoken": str(csrf)})
    assert resp.status_code == 302
    assert Ticket.objects.count() == 1


# --- replies ---------------------------------------------------------------------------------


def test_the_reply_goes_out_by_email_and_the_customer_answer_lands_on_the_ticket(
    client: Any, form_inbox: Any, email_inbox: Any, agent: Any
) -> None:
    assert post(client, form_inbox, data(form_inbox)).status_code == 302
    ticket = Ticket.objects.get()
    # when an agent answers
    reply = do_reply(ticket, actor=agent, text="Your parcel left today.")
    # then it is sent by email through the reply inbox
    delivery = OutboundDelivery.objects.get(message=reply)
    assert (delivery.inbox_id, delivery.recipient, delivery.status) == (
        form_inbox.pk,
        "jana@example.com",
        DeliveryStatus.SENT,
    )
    assert len(django_mail.outbox) == 1
    sent = django_mail.outbox[0]
    assert sent.to == ["jana@example.com"]
    assert sent.from_email == '"Ada Agent (Support mail)" <support@example.com>'
    assert sent.subject == f"Re: Parcel missing [#{ticket.number}]"
    assert sent.reply_to[0].startswith(f"support+{ticket.number}-")
    assert sent.reply_to[0].endswith("@example.com")
    reply.refresh_from_db()
    assert sent.extra_headers["Message-ID"] == f"<{reply.external_id}>"
    assert delivery.provider_id == reply.external_id
    assert "Your parcel left today." in sent.body
    # and the customer's email answer joins the same ticket
    answer = EmailMessage()
    answer["From"] = "Jana <jana@example.com>"
    answer["To"] = sent.reply_to[0]
    answer["Subject"] = f"Re: {sent.subject}"
    answer["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example>"
    answer["In-Reply-To"] = sent.extra_headers["Message-ID"]
    answer.set_content("Thanks! Where can I track it?")
    do_receive_email(email_inbox, answer.as_bytes(), source="test")
    inbound = Message.objects.get(direction=Direction.INBOUND, channel="email")
    assert inbound.ticket_id == ticket.pk
    assert inbound.text.startswith("Thanks! Where can I track it?")
    assert Ticket.objects.count() == 1


def test_a_reply_without_an_active_reply_inbox_fails_clearly(
    client: Any, form_inbox: Any, email_inbox: Any, agent: Any
) -> None:
    assert post(client, form_inbox, data(form_inbox)).status_code == 302
    email_inbox.is_active = False
    email_inbox.save(update_fields=["is_active"])
    reply = do_reply(Ticket.objects.get(), actor=agent, text="Hello")
    delivery = OutboundDelivery.objects.get(message=reply)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error == "web form inbox contact: reply_email_inbox is not an active email inbox"
    assert django_mail.outbox == []
