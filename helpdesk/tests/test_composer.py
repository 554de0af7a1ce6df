"""The reply composer: the channel and identity a reply goes out on, and files on replies and notes.

Email tickets come from real raw mail (`do_receive_email`); sent mail lands in Django's
locmem outbox, API callbacks in a recorded fake of `httpx.post`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, cast

import pytest
from django.core import mail as django_mail
from django.core import signing
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from channels_inbox.actions.inboxes import do_create_inbox
from channels_inbox.actions.receive_email import do_receive_email
from channels_inbox.adapters.api import ATTACHMENT_URL_SALT, external_identity
from channels_inbox.models import InboundEvent, Inbox, OutboundDelivery
from customers.models import Identity, IdentityKind
from helpdesk.actions.replies import NoRecipient, do_add_note, do_reply
from helpdesk.composer import OutgoingFile
from helpdesk.models import Attachment, Direction, Message, Ticket
from helpdesk.tests.conftest import ingest, logged_in
from tests.factories import IdentityFactory

pytestmark = pytest.mark.django_db

SUPPORT = "support@example.com"
SALES = "sales@example.com"
JANA = "jana@example.org"
JANA_WORK = "jana.work@example.org"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture
def support(db: Any) -> Inbox:
    inbox, _ = do_create_inbox(kind="email", name="Support", values={"address": SUPPORT})
    return inbox


@pytest.fixture
def sales(db: Any) -> Inbox:
    inbox, _ = do_create_inbox(kind="email", name="Sales", values={"address": SALES})
    return inbox


def mail(*, sender: str = f"Jana <{JANA}>", to: str = SUPPORT, in_reply_to: str = "", body: str = "Hello") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = "Order 881 is late"
    msg["Date"] = format_datetime(timezone.now())
    msg["Message-ID"] = make_msgid(domain="mail.example.org")
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
        msg["References"] = f"<{in_reply_to}>"
    msg.set_content(body)
    return msg.as_bytes()


def receive(inbox: Inbox, raw: bytes, capture: Any) -> Message:
    with capture(execute=True):
        receipt = do_receive_email(inbox, raw, source="test")
    event = InboundEvent.objects.get(pk=receipt.event_id)
    assert event.message is not None, (event.status, event.last_error)
    return event.message


@pytest.fixture
def email_ticket(support: Inbox, django_capture_on_commit_callbacks: Any) -> Ticket:
    """Jana's ticket on Support; she also has a work address, and wrote last from it."""
    first = receive(support, mail(), django_capture_on_commit_callbacks)
    IdentityFactory(customer=first.ticket.customer, kind=IdentityKind.EMAIL, value=JANA_WORK)
    second = receive(
        support,
        mail(sender=f"Jana <{JANA_WORK}>", in_reply_to=first.external_id, body="Any news?"),
        django_capture_on_commit_callbacks,
    )
    assert second.ticket_id == first.ticket_id
    return first.ticket


def identity(value: str) -> Identity:
    return Identity.objects.get(value=value)


def stranger_identity() -> Identity:
    """An address of another customer."""
    return cast(Identity, IdentityFactory(kind=IdentityKind.EMAIL, value="mallory@example.net"))


def post_reply(client: Client, ticket: Ticket, **data: Any) -> Any:
    return client.post(f"/desk/tickets/{ticket.number}/reply/", {"mode": "reply", "text": "Here you go.", **data})


def sent_mail() -> Any:
    assert len(django_mail.outbox) == 1
    return message_from_bytes(django_mail.outbox[0].message().as_bytes(), policy=policy.default)


# --- the channel and identity choice ---------------------------------------------------------


def test_composer_offers_every_reachable_pair_and_defaults_to_the_last_customer_message(
    agent: Any, email_ticket: Ticket, sales: Inbox, api_inbox: Any
) -> None:
    # given: an inactive inbox, and an API identity of Jana's
    old, _ = do_create_inbox(kind="email", name="Old", values={"address": "old@example.com"})
    Inbox.objects.filter(pk=old.pk).update(is_active=False)
    IdentityFactory(
        customer=email_ticket.customer, kind=IdentityKind.EXTERNAL, value=external_identity(api_inbox, "u-7")
    )
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{email_ticket.number}/")
    # then: every active inbox with every identity it can reach, none of the inactive one
    assert resp.status_code == 200, resp.content
    labels = [t.label for t in resp.context["reply_targets"]]
    assert labels == [
        f"Email · {SALES} → {JANA}",
        f"Email · {SALES} → {JANA_WORK}",
        "API · Shop API → u-7",
        f"Email · {SUPPORT} → {JANA}",
        f"Email · {SUPPORT} → {JANA_WORK}",
    ]
    # the default: the inbox and the address of her last message
    chosen = resp.context["reply_target"]
    assert chosen == f"{email_ticket.inbox_id}:{identity(JANA_WORK).pk}"
    body = resp.content.decode()
    assert f'<option value="{chosen}" selected>Email · {SUPPORT} → {JANA_WORK}</option>' in body
    assert 'enctype="multipart/form-data"' in body


def test_default_falls_back_to_the_tickets_inbox(agent: Any, api_inbox: Any, support: Inbox) -> None:
    # given: an API ticket (its messages' inbox is the API inbox), the customer also has an email
    ticket = ingest(api_inbox)
    IdentityFactory(customer=ticket.customer, kind=IdentityKind.EMAIL, value=JANA)
    Message.objects.filter(ticket=ticket).update(inbox=None)  # no customer message with an inbox left
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{ticket.number}/")
    # then
    target = next(t for t in resp.context["reply_targets"] if t.value == resp.context["reply_target"])
    assert (target.inbox.pk, target.recipient) == (api_inbox.pk, "user-42")


def test_reply_on_another_address_keeps_the_threading_headers(
    agent: Any, email_ticket: Ticket, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    latest = Message.objects.filter(ticket=email_ticket, direction=Direction.INBOUND).order_by("-id").first()
    assert latest is not None
    target = f"{email_ticket.inbox_id}:{identity(JANA).pk}"
    # when: answered on her first address, not the one she wrote last from
    with django_capture_on_commit_callbacks(execute=True):
        resp = post_reply(logged_in(agent), email_ticket, target=target)
    # then
    assert resp.status_code == 302, resp.content
    sent = sent_mail()
    assert sent["To"] == JANA
    assert sent["In-Reply-To"] == f"<{latest.external_id}>"
    assert f"<{latest.external_id}>" in sent["References"]
    assert f"[#{email_ticket.number}]" in sent["Subject"]
    reply = Message.objects.get(direction=Direction.OUTBOUND)
    assert reply.metadata["reply_identity"] == {"id": identity(JANA).pk, "kind": "email"}
    assert OutboundDelivery.objects.get(message=reply).recipient == JANA


def test_reply_through_another_inbox_is_sent_from_it(
    agent: Any, email_ticket: Ticket, sales: Inbox, django_capture_on_commit_callbacks: Any
) -> None:
    # when
    with django_capture_on_commit_callbacks(execute=True):
        resp = post_reply(logged_in(agent), email_ticket, target=f"{sales.pk}:{identity(JANA_WORK).pk}")
    # then
    assert resp.status_code == 302, resp.content
    sent = sent_mail()
    assert (sent["To"], sent["From"].addresses[0].addr_spec) == (JANA_WORK, SALES)
    assert Message.objects.get(direction=Direction.OUTBOUND).inbox == sales


def test_no_choice_posted_keeps_the_default_behaviour(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    # when
    resp = post_reply(logged_in(agent), ticket)
    # then
    assert resp.status_code == 302, resp.content
    assert OutboundDelivery.objects.get().recipient == "user-42"
    assert Message.objects.get(direction=Direction.OUTBOUND).metadata == {}


def _refused(resp: Any, text: str) -> None:
    assert resp.status_code == 400, resp.content
    body = resp.content.decode()
    assert text in body
    assert "Here you go." in body  # the draft comes back
    assert not Message.objects.filter(direction=Direction.OUTBOUND).exists()
    assert not OutboundDelivery.objects.exists()
    assert not Attachment.objects.filter(message__direction__in=[Direction.OUTBOUND, Direction.NOTE]).exists()


def test_an_identity_of_another_customer_is_refused(agent: Any, email_ticket: Ticket) -> None:
    # given
    stranger = stranger_identity()
    # when
    resp = post_reply(logged_in(agent), email_ticket, target=f"{email_ticket.inbox_id}:{stranger.pk}")
    # then
    _refused(resp, "That address is not one of this ticket&#x27;s customer.")


def test_the_action_refuses_a_foreign_identity_too(agent: Any, email_ticket: Ticket) -> None:
    stranger = stranger_identity()
    with pytest.raises(NoRecipient, match="not one of this ticket's customer"):
        do_reply(email_ticket, actor=agent, text="x", identity=stranger)
    assert not OutboundDelivery.objects.exists()


def test_an_inactive_inbox_is_refused(agent: Any, email_ticket: Ticket, sales: Inbox) -> None:
    # given: the page offered Sales, then it was switched off
    Inbox.objects.filter(pk=sales.pk).update(is_active=False)
    # when
    resp = post_reply(logged_in(agent), email_ticket, target=f"{sales.pk}:{identity(JANA).pk}")
    # then
    _refused(resp, "the inbox Sales is not active")
    assert resp.context["reply_target"] != f"{sales.pk}:{identity(JANA).pk}"


def test_an_inbox_that_cannot_reach_the_identity_is_refused(agent: Any, email_ticket: Ticket, api_inbox: Any) -> None:
    # when: the API inbox has no way to send to an email address
    resp = post_reply(logged_in(agent), email_ticket, target=f"{api_inbox.pk}:{identity(JANA).pk}")
    # then
    _refused(resp, f"Shop API cannot send to {JANA}")


@pytest.mark.parametrize("value", ["abc", "1:", ":1", "1:2:3", "9" * 30 + ":1", "-1:1", "1 :2", "１:２"])
def test_malformed_choices_are_refused(agent: Any, email_ticket: Ticket, value: str) -> None:
    resp = post_reply(logged_in(agent), email_ticket, target=value)
    _refused(resp, "Unknown reply channel")


def test_an_unknown_inbox_is_refused(agent: Any, email_ticket: Ticket) -> None:
    resp = post_reply(logged_in(agent), email_ticket, target=f"987654:{identity(JANA).pk}")
    _refused(resp, "That inbox does not exist")


def test_a_held_back_api_draft_keeps_its_channel(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox, "First")
    ticket.refresh_from_db()
    seen = ticket.last_event_seq
    ingest(api_inbox, "Second")
    chosen = f"{api_inbox.pk}:{ticket.customer.identities.get().pk}"
    # when
    resp = post_reply(
        logged_in(agent), ticket, seen_seq=seen, target=chosen, files=[SimpleUploadedFile("a.txt", b"hello")]
    )
    # then
    assert resp.status_code == 409, resp.content
    assert resp.context["reply_target"] == chosen
    assert resp.context["dropped_files"] == ["a.txt"]
    assert "Attach your files again" in resp.content.decode()
    assert not Message.objects.filter(direction=Direction.OUTBOUND).exists()


# --- attachments -------------------------------------------------------------------------------


def test_reply_attachments_go_out_as_mime_parts(
    agent: Any, email_ticket: Ticket, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    files = [SimpleUploadedFile("invoice.pdf", PDF, "application/pdf"), SimpleUploadedFile("Účtenka.png", PNG)]
    # when
    with django_capture_on_commit_callbacks(execute=True):
        resp = post_reply(
            logged_in(agent), email_ticket, target=f"{email_ticket.inbox_id}:{identity(JANA).pk}", files=files
        )
    # then: multipart/mixed = [multipart/alternative = [text/plain, text/html], pdf, png]
    assert resp.status_code == 302, resp.content
    sent = sent_mail()
    assert sent.get_content_type() == "multipart/mixed"
    parts = list(sent.iter_parts())
    assert [p.get_content_type() for p in parts] == ["multipart/alternative", "application/pdf", "image/png"]
    assert [p.get_content_type() for p in parts[0].iter_parts()] == ["text/plain", "text/html"]
    assert "Here you go." in parts[0].get_body(("plain",)).get_content()
    assert [(p.get_content_disposition(), p.get_filename(), p.get_content()) for p in parts[1:]] == [
        ("attachment", "invoice.pdf", PDF),
        ("attachment", "Účtenka.png", PNG),
    ]
    stored = list(Message.objects.get(direction=Direction.OUTBOUND).attachments.order_by("id"))
    assert [(a.filename, a.content_type, a.size) for a in stored] == [
        ("invoice.pdf", "application/pdf", len(PDF)),
        ("Účtenka.png", "image/png", len(PNG)),
    ]


def test_reply_attachments_show_in_the_timeline(agent: Any, api_inbox: Any, monkeypatch: Any) -> None:
    # given
    monkeypatch.setattr("channels_inbox.adapters.api.httpx.post", _FakeCallback())
    ticket = ingest(api_inbox)
    client = logged_in(agent)
    # when
    post_reply(client, ticket, files=[SimpleUploadedFile("notes.txt", b"step 1\nstep 2\n")])
    # then
    attachment = Attachment.objects.get(message__direction=Direction.OUTBOUND)
    body = client.get(f"/desk/tickets/{ticket.number}/").content.decode()
    assert f'<a href="/desk/attachments/{attachment.pk}/">notes.txt</a>' in body
    assert client.get(f"/desk/attachments/{attachment.pk}/").getvalue() == b"step 1\nstep 2\n"


def test_note_attachments_are_stored_and_shown(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    client = logged_in(agent)
    # when
    resp = client.post(
        f"/desk/tickets/{ticket.number}/reply/",
        {"mode": "note", "text": "Screenshot attached", "files": [SimpleUploadedFile("shot.png", PNG)]},
    )
    # then
    assert resp.status_code == 302, resp.content
    note = Message.objects.get(direction=Direction.NOTE)
    attachment = note.attachments.get()
    assert (attachment.filename, attachment.content_type, attachment.sha256) == (
        "shot.png",
        "image/png",
        hashlib.sha256(PNG).hexdigest(),
    )
    assert not OutboundDelivery.objects.exists()
    body = client.get(f"/desk/tickets/{ticket.number}/").content.decode()
    assert f'<a href="/desk/attachments/{attachment.pk}/">shot.png</a>' in body


def test_the_composer_states_the_limits(agent: Any, api_inbox: Any, settings: Any) -> None:
    settings.REPLY_ATTACHMENTS_MAX_FILES = 4
    settings.ATTACHMENT_MAX_BYTES = 2 * 1024 * 1024
    settings.REPLY_ATTACHMENTS_MAX_TOTAL_BYTES = 5 * 1024 * 1024
    ticket = ingest(api_inbox)
    body = logged_in(agent).get(f"/desk/tickets/{ticket.number}/").content.decode()
    assert 'type="file" name="files" id="composer-files" multiple' in body
    assert "Up to 4 files, each at most 2.0\xa0MB, 5.0\xa0MB in all." in body


@pytest.mark.parametrize("mode", ["reply", "note"])
@pytest.mark.parametrize(
    ("files", "error"),
    [
        ([("a.txt", b"1"), ("b.txt", b"2"), ("c.txt", b"3")], "Too many files (3; at most 2)."),
        ([("big.bin", b"x" * 101)], "&#x27;big.bin&#x27; is 101\xa0bytes; each file may be at most 100\xa0bytes."),
        ([("a.bin", b"x" * 90), ("b.bin", b"y" * 90)], "at most 150\xa0bytes in all"),
        ([("empty.txt", b"")], "&#x27;empty.txt&#x27; is empty."),
    ],
)
def test_files_breaking_a_rule_are_refused_and_nothing_is_sent(
    agent: Any, api_inbox: Any, settings: Any, mode: str, files: list[tuple[str, bytes]], error: str
) -> None:
    # given
    settings.REPLY_ATTACHMENTS_MAX_FILES = 2
    settings.ATTACHMENT_MAX_BYTES = 100
    settings.REPLY_ATTACHMENTS_MAX_TOTAL_BYTES = 150
    ticket = ingest(api_inbox)
    uploads = [SimpleUploadedFile(name, content) for name, content in files]
    # when
    resp = logged_in(agent).post(
        f"/desk/tickets/{ticket.number}/reply/", {"mode": mode, "text": "Here you go.", "files": uploads}
    )
    # then
    _refused(resp, error)
    assert not Message.objects.filter(direction=Direction.NOTE).exists()
    assert "Attach your files again" in resp.content.decode()


def test_hostile_names_from_the_browser_are_neutralized(agent: Any, api_inbox: Any) -> None:
    # given: a path, a direction override, markup
    ticket = ingest(api_inbox)
    names = ["../../etc/passwd", "invoice\u202efdp.exe", '<img src=x onerror="alert(1)">.txt']
    client = logged_in(agent)
    # when
    resp = client.post(
        f"/desk/tickets/{ticket.number}/reply/",
        {"mode": "note", "text": "x", "files": [SimpleUploadedFile(n, b"data %d" % i) for i, n in enumerate(names)]},
    )
    # then: no path, no override, no markup; stored by content hash only
    assert resp.status_code == 302, resp.content
    stored = list(Attachment.objects.filter(message__direction=Direction.NOTE).order_by("id"))
    assert [a.filename for a in stored] == ["passwd", "invoicefdp.exe", "img src=x onerror=_alert(1)_.txt"]
    assert all(a.file.name == f"attachments/{a.sha256[:2]}/{a.sha256}" for a in stored)
    body = client.get(f"/desk/tickets/{ticket.number}/").content.decode()
    assert "<img src=x" not in body


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("invoice\u202efdp.exe", "contains characters that are not allowed"),
        ("line\nbreak.txt", "contains characters that are not allowed"),
        ("nul\x00.txt", "contains characters that are not allowed"),
        ("../etc/passwd", "contains characters that are not allowed"),
        ("..", "has no name"),
        ("a" * 300 + ".txt", "is longer than 255 characters"),
    ],
)
def test_the_actions_refuse_hostile_names(agent: Any, api_inbox: Any, name: str, error: str) -> None:
    ticket = ingest(api_inbox)
    for write in (do_reply, do_add_note):
        with pytest.raises(ValueError, match=error):
            write(ticket, actor=agent, text="x", attachments=[OutgoingFile(name, b"x")])
    assert Message.objects.filter(ticket=ticket).count() == 1


def test_the_action_checks_files_too(agent: Any, api_inbox: Any, settings: Any) -> None:
    settings.REPLY_ATTACHMENTS_MAX_FILES = 1
    ticket = ingest(api_inbox)
    files = [OutgoingFile("a.txt", b"a"), OutgoingFile("b.txt", b"b")]
    with pytest.raises(ValueError, match="Too many files"):
        do_reply(ticket, actor=agent, text="x", attachments=files)
    assert not Message.objects.filter(direction=Direction.OUTBOUND).exists()


# --- the API channel's callback ----------------------------------------------------------------


class _FakeCallback:
    """Stands in for httpx.post: records each callback, answers 200."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, url: str, *, content: bytes, headers: dict[str, str], timeout: float) -> Any:
        import httpx

        self.bodies.append(json.loads(content))
        return httpx.Response(200, json={"id": "cb-1"})


def test_api_callback_describes_files_with_signed_urls(
    agent: Any, api_inbox: Any, monkeypatch: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    settings.SITE_URL = "https://desk.example.com"
    callback = _FakeCallback()
    monkeypatch.setattr("channels_inbox.adapters.api.httpx.post", callback)
    ticket = ingest(api_inbox)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        resp = post_reply(logged_in(agent), ticket, files=[SimpleUploadedFile("invoice.pdf", PDF)])
    # then: described, not embedded
    assert resp.status_code == 302, resp.content
    (body,) = callback.bodies
    (entry,) = body["message"]["attachments"]
    assert set(entry) == {"filename", "content_type", "size", "sha256", "url"}
    assert (entry["filename"], entry["content_type"], entry["size"], entry["sha256"]) == (
        "invoice.pdf",
        "application/pdf",
        len(PDF),
        hashlib.sha256(PDF).hexdigest(),
    )
    assert entry["url"].startswith("https://desk.example.com/files/api/")
    # the URL works without a session, and only as signed
    path = entry["url"].removeprefix("https://desk.example.com")
    download = Client().get(path)
    assert download.status_code == 200
    assert download.getvalue() == PDF
    assert download["Content-Type"] == "application/octet-stream"
    assert download["X-Content-Type-Options"] == "nosniff"
    assert Client().get(path[:-3] + ("A/" if path[-2] != "A" else "B/")).status_code == 404
    assert Client().post(path).status_code == 405


def test_api_file_urls_expire_and_name_only_outbound_api_files(agent: Any, api_inbox: Any, settings: Any) -> None:
    # given: a customer's inbound file and an agent's outbound one
    ticket = ingest(api_inbox, attachments=[("photo.png", PNG)])
    inbound = Attachment.objects.get()
    reply = do_reply(ticket, actor=agent, text="ok", attachments=[OutgoingFile("a.txt", b"hello")])
    outbound = reply.attachments.get()
    signer = signing.TimestampSigner(salt=ATTACHMENT_URL_SALT)
    # when / then: a validly signed token for an inbound file names nothing
    assert Client().get(f"/files/api/{signer.sign(f'{inbound.pk}.{inbound.sha256}')}/").status_code == 404
    # a token for the outbound file works, until it is too old
    token = signer.sign(f"{outbound.pk}.{outbound.sha256}")
    assert Client().get(f"/files/api/{token}/").status_code == 200
    # a forged or malformed token
    assert Client().get("/files/api/1.abc:xyz:forged/").status_code == 404
    assert Client().get(f"/files/api/{signer.sign('x.y')}/").status_code == 404
    # too old
    settings.API_ATTACHMENT_URL_MAX_AGE_SECONDS = -1
    expired = Client().get(f"/files/api/{token}/")
    assert (expired.status_code, expired.json()) == (410, {"error": "this download link has expired"})


def test_an_upload_over_the_total_is_cut_off_while_it_is_read(agent: Any, api_inbox: Any, settings: Any) -> None:
    # given: a file within the per-file limit but over the total
    settings.ATTACHMENT_MAX_BYTES = 10_000
    settings.REPLY_ATTACHMENTS_MAX_TOTAL_BYTES = 1_000
    ticket = ingest(api_inbox)
    # when
    resp = logged_in(agent).post(
        f"/desk/tickets/{ticket.number}/reply/",
        {"mode": "reply", "text": "Here you go.", "files": [SimpleUploadedFile("big.bin", b"x" * 5_000)]},
    )
    # then: refused by the upload handler, before the file was taken in full
    _refused(resp, "The files are more than 1000\xa0bytes together")
    assert resp.context["dropped_files"] == []


def test_the_reply_form_still_checks_csrf(agent: Any, api_inbox: Any) -> None:
    ticket = ingest(api_inbox)
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent)
    resp = client.post(f"/desk/tickets/{ticket.number}/reply/", {"mode": "note", "text": "forged"})
    assert resp.status_code == 403
    assert not Message.objects.filter(direction=Direction.NOTE).exists()
    assert client.get(f"/desk/tickets/{ticket.number}/reply/").status_code == 405
