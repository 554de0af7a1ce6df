"""Email on the agent desk: the timeline, the sandboxed HTML view, the raw download, held mail.

Tickets come from real raw mail through `do_receive_email` on an email inbox; the
processing task runs eagerly once the receiving transaction commits.
"""

from __future__ import annotations

import base64
import re
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, cast

import pytest
from django.test import Client
from django.utils import timezone

from channels_inbox.actions.inboxes import do_create_inbox, do_update_inbox_settings
from channels_inbox.actions.receive_email import do_receive_email
from channels_inbox.actions.review import do_discard_held_events, do_release_held_events
from channels_inbox.models import InboundEvent, InboundEventStatus, Inbox
from helpdesk.models import Attachment, DeliveryStatus, Direction, Message, Ticket, TicketCC, User
from helpdesk.tests.conftest import logged_in
from tests.chromium import CHROMIUM, CHROMIUM_FLAGS, browser_test
from tests.factories import InboxFactory, MessageFactory

pytestmark = pytest.mark.django_db

SUPPORT = "support@example.com"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
HTML_CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; sandbox allow-popups allow-popups-to-escape-sandbox"
)
HOSTILE_HTML = (
    "<p>Where is my <b>order</b>?</p>"
    '<img src="cid:logo@example.org" onerror="alert(1)" alt="logo">'
    '<img src="cid:invoice@example.org" alt="not an image">'
    '<img src="cid:nobody@example.org" alt="unknown">'
    '<img src="https://tracker.example.net/pixel.gif" alt="pixel">'
    "<script>alert(2)</script>"
    '<a href="javascript:alert(3)">click</a> <a href="https://shop.example.org/orders/881">order</a>'
    '<iframe src="https://evil.example.net/"></iframe>'
    '<form action="https://evil.example.net/steal"><input name="password"></form>'
    '<div style="background:url(https://tracker.example.net/bg.png)">styled</div>'
    '<blockquote type="cite">We shipped it on Monday.</blockquote>'
)
REPLY_TEXT = (
    "Where is my order? It was due on Friday.\n"
    "\n"
    "On Mon, 5 Jan 2026 at 10:00, Shop Support <support@example.com> wrote:\n"
    "> We shipped it on Monday.\n"
    "> Tracking follows.\n"
)
# Ticket page of email tickets: session, user, role, teams, the ticket, messages (with
# whether a raw original is kept), their attachments, their deliveries, the shown events,
# the customer's identities, the CCs (with their customers), the CCs' email identities,
# the assignable agents, the ticket's tags, the teams, the canned responses the agent may insert,
# the customer's other tickets (one window query), the active inboxes a reply may go out through,
# the macros the agent may apply (the macro picker).
# the ticket's calls and its channel events (calls, edits, reactions: helpdesk/views/calls.py
# channel_timeline).
EMAIL_DETAIL_QUERIES = 21


@pytest.fixture
def inbox(db: Any) -> Inbox:
    created, _ = do_create_inbox(kind="email", name="Support", values={"address": SUPPORT})
    return created


def receive(inbox: Inbox, raw: bytes, capture: Any) -> InboundEvent:
    """Store a raw mail as the MTA pipe does; the processing task runs (eagerly) after commit."""
    with capture(execute=True):
        receipt = do_receive_email(inbox, raw, source="test")
    return InboundEvent.objects.get(pk=receipt.event_id)


def plain(
    *,
    sender: str = "Jana Nováková <jana@example.org>",
    subject: str = "Order 881 is late",
    body: str = "Hello, order 881 is a week late.\n",
    cc: str = "",
    in_reply_to: str = "",
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = f"Shop Support <{SUPPORT}>"
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = format_datetime(timezone.now())
    msg["Message-ID"] = make_msgid(domain="mail.example.org")
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
        msg["References"] = f"<{in_reply_to}>"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


def part(msg: EmailMessage, index: int) -> EmailMessage:
    payload = msg.get_payload()
    assert isinstance(payload, list)
    return cast(EmailMessage, payload[index])


def rich_mail() -> bytes:
    """A reply with text + hostile HTML, an inline PNG by cid, a PDF (with a cid of its own), a Cc."""
    msg = EmailMessage()
    msg["From"] = "Jana Nováková <jana@example.org>"
    msg["To"] = f"Shop Support <{SUPPORT}>"
    msg["Cc"] = "Petr Svoboda <petr@example.org>"
    msg["Subject"] = "Re: Order 881 is late"
    msg["Date"] = format_datetime(timezone.now())
    msg["Message-ID"] = make_msgid(domain="mail.example.org")
    msg["In-Reply-To"] = "<earlier.thread@shop.example.com>"
    msg.set_content(REPLY_TEXT)
    msg.add_alternative(HOSTILE_HTML, subtype="html")
    part(msg, 1).add_related(PNG, "image", "png", cid="<logo@example.org>", filename="logo.png")
    msg.add_attachment(PDF, "application", "pdf", filename="invoice.pdf")
    part(msg, -1)["Content-ID"] = "<invoice@example.org>"
    return msg.as_bytes()


def made(**fields: Any) -> Message:
    """A message straight from the factory (no inbound event behind it), typed as a Message."""
    return cast(Message, MessageFactory(**fields))


def message_of(event: InboundEvent) -> Message:
    event.refresh_from_db()
    assert event.message is not None, (event.status, event.last_error)
    return event.message


@pytest.fixture
def rich(inbox: Inbox, django_capture_on_commit_callbacks: Any) -> tuple[Message, bytes]:
    raw = rich_mail()
    return message_of(receive(inbox, raw, django_capture_on_commit_callbacks)), raw


def iframe_tag(body: str, message: Message) -> str:
    found = re.search(rf'<iframe[^>]*src="/desk/messages/{message.pk}/html/"[^>]*>', body)
    assert found, body
    return found.group(0)


# --- the timeline ----------------------------------------------------------------------------


def test_email_shows_addresses_the_new_part_and_the_quote_behind_details(
    agent: Any, rich: tuple[Message, bytes]
) -> None:
    # given
    message, _ = rich
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{message.ticket.number}/")
    # then
    assert resp.status_code == 200, resp.content
    body = resp.content.decode()
    assert "<dt>From</dt><dd>Jana Nováková &lt;jana@example.org&gt;</dd>" in body
    assert "<dt>To</dt><dd>Shop Support &lt;support@example.com&gt;</dd>" in body
    assert "<dt>Cc</dt><dd>Petr Svoboda &lt;petr@example.org&gt;</dd>" in body
    # the subject is the ticket's (give or take Re:): not repeated
    assert "<dt>Subject</dt>" not in body
    visible, _, rest = body.partition("<summary>Show quoted text</summary>")
    assert '<div class="body">Where is my order? It was due on Friday.' in visible
    assert "We shipped it on Monday." not in visible.split('class="msg inbound email"', 1)[1]
    assert "&gt; We shipped it on Monday." in rest.split("</details>", 1)[0]


def test_email_html_is_only_in_a_sandboxed_lazy_iframe(agent: Any, rich: tuple[Message, bytes]) -> None:
    # given
    message, _ = rich
    # when
    body = logged_in(agent).get(f"/desk/tickets/{message.ticket.number}/").content.decode()
    # then
    tag = iframe_tag(body, message)
    assert " sandbox=" in tag
    assert 'loading="lazy"' in tag
    assert "allow-scripts" not in tag
    assert "allow-same-origin" not in tag
    assert "<summary>View original formatting</summary>" in body
    assert (
        f'<a href="/desk/messages/{message.pk}/html/?remote=1" target="mail-html-{message.pk}">Load remote images</a>'
        in body
    )
    assert f'name="mail-html-{message.pk}"' in tag
    # the customer's HTML itself is never part of the page
    assert "tracker.example.net" not in body
    assert "<b>order</b>" not in body


def test_inline_images_are_not_listed_again_but_files_are(agent: Any, rich: tuple[Message, bytes]) -> None:
    # given
    message, _ = rich
    logo = Attachment.objects.get(message=message, filename="logo.png")
    invoice = Attachment.objects.get(message=message, filename="invoice.pdf")
    assert (logo.inline, logo.content_id, logo.content_type) == (True, "logo@example.org", "image/png")
    # when
    body = logged_in(agent).get(f"/desk/tickets/{message.ticket.number}/").content.decode()
    # then
    assert f'<a href="/desk/attachments/{invoice.pk}/">invoice.pdf</a>' in body
    assert f"/desk/attachments/{logo.pk}/" not in body
    assert f'<a href="/desk/messages/{message.pk}/raw/" download>Download original (.eml)</a>' in body


def test_ticket_side_panel_lists_the_ccs(agent: Any, rich: tuple[Message, bytes]) -> None:
    # given
    message, _ = rich
    assert TicketCC.objects.filter(ticket=message.ticket).count() == 1
    # when
    body = logged_in(agent).get(f"/desk/tickets/{message.ticket.number}/").content.decode()
    # then
    side = body.split('<aside class="side">', 1)[1]
    assert '<ul class="ccs"><li><strong>Petr Svoboda</strong> <span class="address">petr@example.org</span>' in side


def test_a_subject_other_than_the_tickets_is_shown(
    agent: Any, inbox: Inbox, django_capture_on_commit_callbacks: Any
) -> None:
    # given: a reply that renamed the thread
    first = message_of(receive(inbox, plain(), django_capture_on_commit_callbacks))
    reply = plain(subject="Re: Order 881 — now also a refund question", in_reply_to=first.external_id)
    second = message_of(receive(inbox, reply, django_capture_on_commit_callbacks))
    assert second.ticket_id == first.ticket_id
    # when
    body = logged_in(agent).get(f"/desk/tickets/{first.ticket.number}/").content.decode()
    # then
    assert body.count("<dt>Subject</dt>") == 1
    assert "<dt>Subject</dt><dd>Re: Order 881 — now also a refund question</dd>" in body


def test_unreadable_email_shows_an_error_box_with_the_original(
    agent: Any, inbox: Inbox, django_capture_on_commit_callbacks: Any
) -> None:
    # given: a mail without a usable From address
    raw = b"To: support@example.com\r\nSubject: broken\r\nMessage-ID: <broken.1@example.org>\r\n\r\nwho am I?\r\n"
    message = message_of(receive(inbox, raw, django_capture_on_commit_callbacks))
    # when
    body = logged_in(agent).get(f"/desk/tickets/{message.ticket.number}/").content.decode()
    # then
    box = re.search(r'<div class="error-box" role="alert">(.*?)</div>', body, re.S)
    assert box, body
    assert box.group(1).startswith("This email could not be read: the mail has no usable From address.")
    assert f'The original is kept — <a href="/desk/messages/{message.pk}/raw/">download it</a>.' in box.group(1)
    assert logged_in(agent).get(f"/desk/messages/{message.pk}/raw/").getvalue() == raw


def test_attachments_over_the_limit_are_named_as_not_stored(
    agent: Any, inbox: Inbox, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    settings.ATTACHMENT_MAX_BYTES = 1000
    msg = EmailMessage()
    msg["From"] = "jana@example.org"
    msg["To"] = SUPPORT
    msg["Subject"] = "Logs"
    msg["Message-ID"] = make_msgid(domain="mail.example.org")
    msg.set_content("The logs are attached.\n")
    msg.add_attachment(b"x" * 5000, "application", "octet-stream", filename="huge.log")
    msg.add_attachment(b"small", "text", "plain", filename="small.txt")
    message = message_of(receive(inbox, msg.as_bytes(), django_capture_on_commit_callbacks))
    # when
    body = logged_in(agent).get(f"/desk/tickets/{message.ticket.number}/").content.decode()
    # then
    assert "<li>huge.log <small>4.9\xa0KB — not stored: over the size limit</small></li>" in body
    assert "small.txt</a>" in body
    assert list(message.attachments.values_list("filename", flat=True)) == ["small.txt"]


def test_automatic_reply_is_badged(agent: Any, inbox: Inbox, django_capture_on_commit_callbacks: Any) -> None:
    # given: Jana's ticket, then her out-of-office reply to it
    first = message_of(receive(inbox, plain(), django_capture_on_commit_callbacks))
    auto = plain(
        subject="Out of office: Order 881 is late",
        body="I am away until Monday.\n",
        in_reply_to=first.external_id,
        headers={"Auto-Submitted": "auto-replied"},
    )
    second = message_of(receive(inbox, auto, django_capture_on_commit_callbacks))
    assert second.ticket_id == first.ticket_id
    # when
    body = logged_in(agent).get(f"/desk/tickets/{first.ticket.number}/").content.decode()
    # then
    assert body.count(">automatic reply</span>") == 1
    article = body.split(f'id="m{second.pk}"', 1)[1].split("</article>", 1)[0]
    assert ">automatic reply</span>" in article


def test_outbound_email_shows_auto_ack_label_and_bounce_reason(agent: Any, inbox: Inbox) -> None:
    # given: an acknowledgement that bounced
    first = made(
        ticket__inbox=inbox,
        ticket__channel="email",
        channel="email",
        direction=Direction.OUTBOUND,
        author_customer=None,
        text="We received your request.",
        metadata={"auto_ack": True},
        delivery_status=DeliveryStatus.FAILED,
        delivery_error="bounced: jana@example.org: 5.1.1 user unknown",
    )
    # when
    body = logged_in(agent).get(f"/desk/tickets/{first.ticket.number}/").content.decode()
    # then
    assert '<span class="tag auto">automatic acknowledgement</span>' in body
    assert "Not delivered: bounced: jana@example.org: 5.1.1 user unknown" in body
    assert "Download original" not in body


# --- the HTML view -------------------------------------------------------------------------------


def test_html_view_is_sanitized_framed_same_origin_and_blocks_remote_images(
    agent: Any, rich: tuple[Message, bytes]
) -> None:
    # given
    message, _ = rich
    logo = Attachment.objects.get(message=message, filename="logo.png")
    assert logo.inline
    # when
    resp = logged_in(agent).get(f"/desk/messages/{message.pk}/html/")
    # then
    assert resp.status_code == 200, resp.content
    assert resp["Content-Security-Policy"] == HTML_CSP
    assert "https:" not in resp["Content-Security-Policy"]
    assert resp["X-Frame-Options"] == "SAMEORIGIN"
    assert resp["X-Content-Type-Options"] == "nosniff"
    assert resp["Cache-Control"] == "private"
    assert resp["Content-Type"].startswith("text/html")
    body = resp.content.decode()
    assert body.startswith("<!doctype html>")
    assert "<b>order</b>" in body
    lowered = body.lower()
    for hostile in ("<script", "onerror", "javascript:", "<iframe", "<form", "<input", "style=", "bg.png"):
        assert hostile not in lowered, hostile
    # cid: of this message's PNG → its bytes (a data: URL); a PDF and an unknown id stay broken
    assert f'<img src="data:image/png;base64,{base64.b64encode(PNG).decode()}" alt="logo">' in body
    assert f"/desk/attachments/{logo.pk}/" not in body
    assert '<img src="cid:invoice@example.org" alt="not an image">' in body
    assert '<img src="cid:nobody@example.org" alt="unknown">' in body
    assert "cid:logo@example.org" not in body


def test_html_view_loads_remote_images_only_when_asked(agent: Any, rich: tuple[Message, bytes]) -> None:
    # given
    message, _ = rich
    client = logged_in(agent)
    # when
    asked = client.get(f"/desk/messages/{message.pk}/html/", {"remote": "1"})
    other = client.get(f"/desk/messages/{message.pk}/html/", {"remote": "yes"})
    # then
    assert asked.status_code == 200, asked.content
    assert asked["Content-Security-Policy"] == HTML_CSP.replace("img-src 'self' data:", "img-src 'self' data: https:")
    assert other["Content-Security-Policy"] == HTML_CSP


def test_inline_images_over_the_embedding_budget_stay_listed(
    agent: Any, rich: tuple[Message, bytes], settings: Any, monkeypatch: Any
) -> None:
    # given: a budget smaller than the PNG
    from helpdesk import selectors

    message, _ = rich
    logo = Attachment.objects.get(message=message, filename="logo.png")
    monkeypatch.setattr(selectors, "INLINE_EMBED_MAX_BYTES", logo.size - 1)
    client = logged_in(agent)
    # when
    view = client.get(f"/desk/messages/{message.pk}/html/").content.decode()
    page = client.get(f"/desk/tickets/{message.ticket.number}/").content.decode()
    # then: not embedded, so listed as a file
    assert '<img src="cid:logo@example.org" alt="logo">' in view
    assert f'<a href="/desk/attachments/{logo.pk}/">logo.png</a>' in page


def test_message_without_html_has_no_html_view(
    agent: Any, inbox: Inbox, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    message = message_of(receive(inbox, plain(), django_capture_on_commit_callbacks))
    client = logged_in(agent)
    # when
    page = client.get(f"/desk/tickets/{message.ticket.number}/").content.decode()
    resp = client.get(f"/desk/messages/{message.pk}/html/")
    # then
    assert resp.status_code == 404
    assert "View original formatting" not in page
    assert "<iframe" not in page


# --- the raw download ---------------------------------------------------------------------------


def test_raw_download_is_the_exact_bytes_never_rendered(agent: Any, rich: tuple[Message, bytes]) -> None:
    # given
    message, raw = rich
    # when
    resp = logged_in(agent).get(f"/desk/messages/{message.pk}/raw/")
    # then
    assert resp.status_code == 200, resp.content
    assert resp.getvalue() == raw
    assert resp["Content-Type"] == "application/octet-stream"
    assert resp["Content-Disposition"] == f'attachment; filename="message-{message.pk}.eml"'
    assert resp["X-Content-Type-Options"] == "nosniff"
    assert resp["Content-Security-Policy"] == "default-src 'none'; sandbox"


def test_raw_download_is_404_without_a_kept_original(agent: Any, api_inbox: Any) -> None:
    # given: an agent's note and an email message made by hand (no inbound event)
    note = made(direction=Direction.NOTE, channel="", author_customer=None)
    outbound = made(channel="email", direction=Direction.OUTBOUND, author_customer=None)
    client = logged_in(agent)
    # when / then
    assert client.get(f"/desk/messages/{note.pk}/raw/").status_code == 404
    assert client.get(f"/desk/messages/{outbound.pk}/raw/").status_code == 404
    assert client.get("/desk/messages/0/raw/").status_code == 404
    assert client.get("/desk/messages/99999999999999999999999/html/").status_code == 404


@pytest.mark.parametrize("endpoint", ["html", "raw"])
def test_email_endpoints_follow_ticket_visibility(
    agent: Any,
    billing_agent: Any,
    light_agent: Any,
    support_team: Any,
    rich: tuple[Message, bytes],
    endpoint: str,
) -> None:
    # given: the ticket belongs to Support; the billing agent is not in it
    message, _ = rich
    Ticket.objects.filter(pk=message.ticket_id).update(team=support_team)
    url = f"/desk/messages/{message.pk}/{endpoint}/"
    # when / then
    assert logged_in(billing_agent).get(url).status_code == 404
    assert logged_in(agent).get(url).status_code == 200
    assert logged_in(light_agent).get(url).status_code == 200
    visitor = User.objects.create_user("visitor", "visitor@example.com", "pw-visitor-123")
    assert logged_in(visitor).get(url).status_code == 403
    anonymous = Client().get(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/desk/login/?next=")


# --- query count ---------------------------------------------------------------------------------


def _thread(inbox: Inbox, first: Message, rounds: int, start: int, capture: Any) -> None:
    """Replies from Jana to her ticket, each with HTML, an inline image, a file and a new Cc."""
    for i in range(start, start + rounds):
        msg = EmailMessage()
        msg["From"] = "Jana Nováková <jana@example.org>"
        msg["To"] = SUPPORT
        msg["Cc"] = f"Colleague {i} <colleague{i}@example.org>"
        msg["Subject"] = f"Re: Order 881 is late (round {i})"
        msg["Message-ID"] = make_msgid(domain="mail.example.org")
        msg["In-Reply-To"] = f"<{first.external_id}>"
        msg.set_content(f"Round {i}.\n\nOn Mon, Jana wrote:\n> earlier\n")
        msg.add_alternative(f'<p>Round {i}</p><img src="cid:img{i}@example.org">', subtype="html")
        part(msg, 1).add_related(PNG, "image", "png", cid=f"<img{i}@example.org>", filename=f"i{i}.png")
        msg.add_attachment(PDF, "application", "pdf", filename=f"invoice-{i}.pdf")
        message = message_of(receive(inbox, msg.as_bytes(), capture))
        assert message.ticket_id == first.ticket_id


def test_ticket_page_query_count_does_not_grow_with_email_messages_and_ccs(
    agent: Any, inbox: Inbox, django_capture_on_commit_callbacks: Any, django_assert_num_queries: Any
) -> None:
    # given
    first = message_of(receive(inbox, plain(), django_capture_on_commit_callbacks))
    _thread(inbox, first, 1, 0, django_capture_on_commit_callbacks)
    client = logged_in(agent)
    url = f"/desk/tickets/{first.ticket.number}/"
    # when / then
    with django_assert_num_queries(EMAIL_DETAIL_QUERIES):
        resp = client.get(url)
    assert resp.status_code == 200, resp.content
    # given: many more messages, CCs, inline images and files
    _thread(inbox, first, 7, 1, django_capture_on_commit_callbacks)
    assert TicketCC.objects.filter(ticket=first.ticket).count() == 8
    # when / then
    with django_assert_num_queries(EMAIL_DETAIL_QUERIES):
        resp = client.get(url)
    assert resp.status_code == 200, resp.content
    body = resp.content.decode()
    assert body.count('class="msg inbound email"') == 9
    assert body.count("<iframe ") == 8
    assert body.count("Download original (.eml)") == 9
    assert body.count('<span class="address">colleague') == 8
    assert body.count("invoice-") == 8  # files listed; the inline images are not


# --- held mail --------------------------------------------------------------------------------


@pytest.fixture
def held(inbox: Inbox, django_capture_on_commit_callbacks: Any) -> list[InboundEvent]:
    """A sender over a limit of one mail an hour: their second and third mail are held."""
    do_update_inbox_settings(inbox, values={"rate_limit_per_hour": 1})
    events = [
        receive(
            inbox, plain(subject=f"Flood {i}", sender="Flo Flood <flo@example.org>"), django_capture_on_commit_callbacks
        )
        for i in range(3)
    ]
    assert [e.status for e in events] == [InboundEventStatus.PROCESSED, *[InboundEventStatus.HELD] * 2]
    return events[1:]


def test_held_page_lists_held_mail_for_admins(admin_agent: Any, held: list[InboundEvent]) -> None:
    # given: one held event of another kind, too
    api = cast(Inbox, InboxFactory(name="Shop API"))
    other = InboundEvent.objects.create(inbox=api, dedupe_key="ext-77", payload=b"{}", status=InboundEventStatus.HELD)
    # when
    resp = logged_in(admin_agent).get("/desk/held/")
    # then
    assert resp.status_code == 200, resp.content
    body = resp.content.decode()
    for event in held:
        assert f'name="event" value="{event.pk}"' in body
    assert body.count("<td>Flo Flood &lt;flo@example.org&gt;</td>") == 2
    assert "<td>Flood 1</td>" in body
    assert "<td>Flood 2</td>" in body
    assert f'value="{other.pk}"' in body
    assert "<code>ext-77</code>" in body
    assert "held for review: flo@example.org sent more than 1 messages within an hour" in body
    assert 'name="csrfmiddlewaretoken"' in body
    assert '<button type="submit" name="action" value="release">Release</button>' in body
    # the nav shows the count on every desk page
    nav = logged_in(admin_agent).get("/desk/").content.decode()
    assert '<a class="held-link" href="/desk/held/">Held mail <span class="count">3</span></a>' in nav


def test_agents_may_not_review_held_mail(agent: Any, held: list[InboundEvent]) -> None:
    # given
    client = logged_in(agent)
    # when
    page = client.get("/desk/held/")
    post = client.post("/desk/held/", {"action": "release", "event": [str(e.pk) for e in held]})
    # then
    assert (page.status_code, post.status_code) == (403, 403)
    assert set(InboundEvent.objects.filter(pk__in=[e.pk for e in held]).values_list("status", flat=True)) == {
        InboundEventStatus.HELD
    }
    assert "Held mail" not in client.get("/desk/").content.decode()


def test_released_mail_becomes_a_message(
    admin_agent: Any, held: list[InboundEvent], django_capture_on_commit_callbacks: Any
) -> None:
    # given
    client = logged_in(admin_agent)
    event = held[0]
    # when
    with django_capture_on_commit_callbacks(execute=True):
        resp = client.post("/desk/held/", {"action": "release", "event": [str(event.pk)]}, follow=True)
    # then
    assert resp.status_code == 200, resp.content
    assert "Released 1 held event." in resp.content.decode()
    event.refresh_from_db()
    assert event.status == InboundEventStatus.PROCESSED, event.last_error
    assert event.released_at is not None
    message = message_of(event)
    assert message.ticket.subject == "Flood 1"
    assert InboundEvent.objects.get(pk=held[1].pk).status == InboundEventStatus.HELD


def test_discarded_mail_is_kept_as_ignored(admin_agent: Any, held: list[InboundEvent]) -> None:
    # given
    client = logged_in(admin_agent)
    payloads = {e.pk: bytes(e.payload) for e in held}
    # when
    resp = client.post("/desk/held/", {"action": "discard", "event": [str(e.pk) for e in held]}, follow=True)
    # then
    assert resp.status_code == 200, resp.content
    assert "Discarded 2 held events (kept as ignored)." in resp.content.decode()
    for event in InboundEvent.objects.filter(pk__in=payloads):
        assert event.status == InboundEventStatus.IGNORED
        assert event.message is None
        assert bytes(event.payload) == payloads[event.pk]
        assert event.last_error.startswith("discarded after review by admin@example.com")
    assert "Nothing is held." in resp.content.decode()


def test_held_page_needs_csrf_and_a_known_action(admin_agent: Any, held: list[InboundEvent]) -> None:
    # given
    strict = logged_in(admin_agent, enforce_csrf_checks=True)
    client = logged_in(admin_agent)
    ids = [str(e.pk) for e in held]
    # when
    forged = strict.post("/desk/held/", {"action": "release", "event": ids})
    unknown = client.post("/desk/held/", {"action": "explode", "event": ids}, follow=True)
    garbage = client.post("/desk/held/", {"action": "release", "event": ["x", "-1", "1.5"]}, follow=True)
    # then
    assert forged.status_code == 403
    assert "Unknown action &#x27;explode&#x27;." in unknown.content.decode()
    assert "Select at least one event." in garbage.content.decode()
    assert set(InboundEvent.objects.filter(pk__in=ids).values_list("status", flat=True)) == {InboundEventStatus.HELD}


def test_release_and_discard_touch_held_events_only(
    admin_agent: Any, held: list[InboundEvent], django_capture_on_commit_callbacks: Any
) -> None:
    # given: one event processed already, one held
    processed = InboundEvent.objects.filter(status=InboundEventStatus.PROCESSED).get()
    target = held[0]
    # when
    with django_capture_on_commit_callbacks(execute=True):
        released = do_release_held_events([processed.pk, target.pk, target.pk], actor=admin_agent)
    again = do_release_held_events([target.pk], actor=admin_agent)
    discarded = do_discard_held_events([processed.pk, target.pk], actor=admin_agent)
    # then
    assert (released, again, discarded) == (1, 0, 0)
    processed.refresh_from_db()
    target.refresh_from_db()
    assert processed.status == target.status == InboundEventStatus.PROCESSED


def test_admin_actions_release_and_discard(
    inbox: Inbox, held: list[InboundEvent], django_capture_on_commit_callbacks: Any
) -> None:
    # given
    boss = User.objects.create_superuser("boss", "boss@example.com", "pw-boss-123")
    client = logged_in(boss)
    url = "/admin/channels_inbox/inboundevent/"
    first, second = held
    assert client.get(url).status_code == 200
    # when
    with django_capture_on_commit_callbacks(execute=True):
        release = client.post(url, {"action": "release_held", "_selected_action": [str(first.pk)]})
    discard = client.post(url, {"action": "discard_held", "_selected_action": [str(second.pk)]})
    # then
    assert (release.status_code, discard.status_code) == (302, 302)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (InboundEventStatus.PROCESSED, InboundEventStatus.IGNORED)
    assert first.message is not None


# --- in a real browser ---------------------------------------------------------------------------


@pytest.mark.slow
@browser_test
@pytest.mark.django_db(transaction=True)
def test_sandboxed_view_shows_inline_images_and_nothing_else_in_chromium(
    live_server: Any, agent: Any, inbox: Inbox
) -> None:
    from playwright.sync_api import Dialog, sync_playwright

    # given: the rich mail on a ticket, and a signed-in agent's session
    receipt = do_receive_email(inbox, rich_mail(), source="test")  # outside a transaction: processed at once
    message = message_of(InboundEvent.objects.get(pk=receipt.event_id))
    number, pk = message.ticket.number, message.pk
    client = logged_in(agent)
    session = client.cookies["sessionid"].value
    host = live_server.url.split("//", 1)[1].split(":", 1)[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": session, "domain": host, "path": "/"}])
            page = context.new_page()
            dialogs: list[str] = []

            def refuse(dialog: Dialog) -> None:
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", refuse)
            page.goto(f"{live_server.url}/desk/tickets/{number}/")
            # when: the agent opens the original formatting
            page.click("details.original summary")
            handle = page.wait_for_selector(f'iframe[name="mail-html-{pk}"]', state="visible")
            assert handle is not None
            frame = handle.content_frame()
            assert frame is not None
            frame.wait_for_load_state("load")
            frame.wait_for_function("Array.from(document.images).every(i => i.complete)")
            images = frame.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
            # then: the inline PNG shows; the PDF, the unknown cid and the tracking pixel do not
            assert images == [
                ["logo", True, 1],
                ["not an image", True, 0],
                ["unknown", True, 0],
                ["pixel", True, 0],
            ]
            assert frame.locator("b").inner_text() == "order"
            assert dialogs == []
        finally:
            browser.close()
