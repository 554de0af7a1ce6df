"""Replies on channels with a customer-service window (ReplyWindow): free-form only while it
is open; when closed, only one of the window's options (an approved template with its
parameters, or a message tag) goes out, stored in the message's metadata for the adapter.

A test-only adapter (kind "test_window") whose window the tests set through `WINDOW`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar, cast

import pytest
from django.utils import timezone

from channels_inbox.adapters import register, unregister
from channels_inbox.adapters.base import ChannelAdapter, IdentityRef, ReplyWindow, SendResult, WindowOption
from channels_inbox.models import Inbox, OutboundDelivery
from customers.models import IdentityKind
from helpdesk.actions.replies import ReplyWindowClosed, do_reply
from helpdesk.models import DeliveryStatus, Message, Ticket
from helpdesk.tests.conftest import logged_in
from tests.factories import IdentityFactory, InboxFactory, TicketFactory

pytestmark = pytest.mark.django_db

KIND = "test_window"
TEMPLATE = WindowOption(
    kind="template", name="order_update", label="Order update", language="en", body="Hi {{1}}, order {{2}}.", params=2
)
TAG = WindowOption(kind="tag", name="HUMAN_AGENT", label="Human agent")
CLOSED_REASON = "The customer last wrote more than 24 hours ago."
# What the test adapter's reply_window returns (set per test).
WINDOW: dict[str, ReplyWindow | None] = {"now": None}
SENT: list[dict[str, Any]] = []


class WindowTestAdapter(ChannelAdapter):
    kind: ClassVar[str] = KIND
    label: ClassVar[str] = "Window test"

    def reply_window(self, inbox: Any, ticket: Any) -> ReplyWindow | None:
        return WINDOW["now"]

    def recipient_for(self, inbox: Any, customer_identities: list[IdentityRef]) -> str:
        return next((f"tw:{i.value}" for i in customer_identities if i.kind == IdentityKind.EXTERNAL), "")

    def send(self, inbox: Any, delivery: Any) -> SendResult:
        SENT.append({"recipient": delivery.recipient, "metadata": dict(delivery.message.metadata)})
        return SendResult(provider_id=f"tw-{delivery.pk}")


def open_window() -> ReplyWindow:
    return ReplyWindow(open=True, closes_at=timezone.now() + timedelta(hours=3, minutes=5), options=(TEMPLATE, TAG))


def closed_window() -> ReplyWindow:
    return ReplyWindow(open=False, closes_at=None, reason=CLOSED_REASON, options=(TEMPLATE, TAG))


@pytest.fixture(autouse=True, scope="module")
def _registered() -> Any:
    """The test adapter exists for this module's tests only (the channel lists elsewhere, e.g.
    the condition language's, are the real adapters)."""
    register(WindowTestAdapter)
    yield
    unregister(KIND)


@pytest.fixture(autouse=True)
def _reset() -> Any:
    WINDOW["now"] = None
    SENT.clear()
    yield
    WINDOW["now"] = None


@pytest.fixture
def inbox(db: Any) -> Inbox:
    return cast(Inbox, InboxFactory(kind=KIND, name="Window test", slug="window-test", settings={}, secrets={}))


@pytest.fixture
def ticket(inbox: Inbox) -> Ticket:
    ticket = cast(Ticket, TicketFactory(inbox=inbox, channel=KIND))
    IdentityFactory(customer=ticket.customer, kind=IdentityKind.EXTERNAL, value="cust-7")
    return ticket


def test_open_window_free_form_reply_goes_out(
    ticket: Ticket, admin_agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    WINDOW["now"] = open_window()
    with django_capture_on_commit_callbacks(execute=True):
        message = do_reply(ticket, actor=admin_agent, text="Your parcel left today.")
    message.refresh_from_db()
    assert message.text == "Your parcel left today."
    assert message.metadata == {}
    assert SENT == [{"recipient": "tw:cust-7", "metadata": {}}]
    delivery = OutboundDelivery.objects.get(message=message)
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.provider_id == f"tw-{delivery.pk}"


def test_no_window_free_form_reply_goes_out(ticket: Ticket, admin_agent: Any) -> None:
    message = do_reply(ticket, actor=admin_agent, text="Hello")
    assert OutboundDelivery.objects.filter(message=message, recipient="tw:cust-7").count() == 1


def test_closed_window_refuses_free_form_and_writes_nothing(ticket: Ticket, admin_agent: Any) -> None:
    WINDOW["now"] = closed_window()
    before = ticket.events.count()
    with pytest.raises(ReplyWindowClosed) as caught:
        do_reply(ticket, actor=admin_agent, text="Are you there?")
    assert caught.value.reason == CLOSED_REASON
    assert not Message.objects.filter(ticket=ticket).exists()
    assert not OutboundDelivery.objects.exists()
    assert ticket.events.count() == before
    assert SENT == []


def test_closed_window_template_is_stored_and_queued(
    ticket: Ticket, admin_agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    WINDOW["now"] = closed_window()
    template = {"name": "order_update", "language": "en", "params": ["Jana", " 881 "]}
    with django_capture_on_commit_callbacks(execute=True):
        message = do_reply(ticket, actor=admin_agent, text="", template=template)
    message.refresh_from_db()
    assert message.metadata == {"template": {"name": "order_update", "language": "en", "params": ["Jana", "881"]}}
    # No text of its own: the template's body with its parameters.
    assert message.text == "Hi Jana, order 881."
    assert [{"recipient": "tw:cust-7", "metadata": message.metadata}] == SENT
    assert OutboundDelivery.objects.get(message=message).status == DeliveryStatus.SENT


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ({"name": "nope", "language": "en", "params": ["a", "b"]}, "'nope' is not available"),
        ({"name": "order_update", "language": "de", "params": ["a", "b"]}, "is not available"),
        ({"name": "order_update", "language": "en", "params": ["a"]}, "takes 2 parameter(s), not 1"),
        ({"name": "order_update", "language": "en", "params": ["a", "b", "c"]}, "takes 2 parameter(s), not 3"),
        ({"name": "order_update", "language": "en", "params": ["a", "  "]}, "Fill in parameter {{2}}"),
    ],
)
def test_closed_window_wrong_template_is_refused(
    ticket: Ticket, admin_agent: Any, template: dict[str, Any], problem: str
) -> None:
    WINDOW["now"] = closed_window()
    with pytest.raises(ReplyWindowClosed) as caught:
        do_reply(ticket, actor=admin_agent, text="", template=template)
    assert problem in str(caught.value)
    assert not Message.objects.filter(ticket=ticket).exists()
    assert not OutboundDelivery.objects.exists()


def test_too_long_parameter_is_refused(ticket: Ticket, admin_agent: Any) -> None:
    WINDOW["now"] = closed_window()
    with pytest.raises(ValueError, match="longer than 1024"):
        do_reply(ticket, actor=admin_agent, text="", template={"name": "order_update", "params": ["a", "x" * 1025]})
    assert not Message.objects.filter(ticket=ticket).exists()


def test_template_on_a_channel_without_window_is_refused(ticket: Ticket, admin_agent: Any) -> None:
    with pytest.raises(ValueError, match="not available"):
        do_reply(ticket, actor=admin_agent, text="", template={"name": "order_update", "params": ["a", "b"]})
    assert not Message.objects.filter(ticket=ticket).exists()


def test_closed_window_tag_is_stored(ticket: Ticket, admin_agent: Any, django_capture_on_commit_callbacks: Any) -> None:
    WINDOW["now"] = closed_window()
    with django_capture_on_commit_callbacks(execute=True):
        message = do_reply(ticket, actor=admin_agent, text="Following up on your refund.", tag="HUMAN_AGENT")
    message.refresh_from_db()
    assert message.metadata == {"tag": "HUMAN_AGENT"}
    assert message.text == "Following up on your refund."
    assert SENT == [{"recipient": "tw:cust-7", "metadata": {"tag": "HUMAN_AGENT"}}]


def test_unknown_tag_and_both_options_are_refused(ticket: Ticket, admin_agent: Any) -> None:
    WINDOW["now"] = closed_window()
    with pytest.raises(ReplyWindowClosed, match="'ACCOUNT_UPDATE' is not available"):
        do_reply(ticket, actor=admin_agent, text="x", tag="ACCOUNT_UPDATE")
    with pytest.raises(ValueError, match="not both"):
        do_reply(
            ticket,
            actor=admin_agent,
            text="x",
            tag="HUMAN_AGENT",
            template={"name": "order_update", "params": ["a", "b"]},
        )
    assert not Message.objects.filter(ticket=ticket).exists()


# --- the reply view ------------------------------------------------------------------------


def test_reply_view_closed_window_409_keeps_draft(ticket: Ticket, admin_agent: Any) -> None:
    WINDOW["now"] = closed_window()
    client = logged_in(admin_agent)
    response = client.post(f"/desk/tickets/{ticket.number}/reply/", {"text": "Still waiting <b>here</b>?"})
    assert response.status_code == 409
    page = response.content.decode()
    assert f"Not sent: {CLOSED_REASON}" in page
    assert "Still waiting &lt;b&gt;here&lt;/b&gt;?" in page
    assert not Message.objects.filter(ticket=ticket).exists()
    assert not OutboundDelivery.objects.exists()


def test_reply_view_posts_template_with_params(ticket: Ticket, admin_agent: Any) -> None:
    WINDOW["now"] = closed_window()
    inbox = ticket.inbox
    client = logged_in(admin_agent)
    response = client.post(
        f"/desk/tickets/{ticket.number}/reply/",
        {
            "text": "",
            f"window_option:{inbox.pk}": "template:order_update:en",
            f"params:{inbox.pk}:order_update:en": ["Jana", "881"],
            # Another inbox's fields are not this inbox's.
            "window_option:999999": "tag:HUMAN_AGENT",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    message = Message.objects.get(ticket=ticket)
    assert message.metadata == {"template": {"name": "order_update", "language": "en", "params": ["Jana", "881"]}}
    assert message.text == "Hi Jana, order 881."
    assert OutboundDelivery.objects.filter(message=message).count() == 1


def test_reply_view_posts_tag(ticket: Ticket, admin_agent: Any) -> None:
    WINDOW["now"] = closed_window()
    client = logged_in(admin_agent)
    response = client.post(
        f"/desk/tickets/{ticket.number}/reply/",
        {"text": "We are on it.", f"window_option:{ticket.inbox.pk}": "tag:HUMAN_AGENT"},
    )
    assert response.status_code == 302
    assert Message.objects.get(ticket=ticket).metadata == {"tag": "HUMAN_AGENT"}


def test_reply_view_wrong_param_count_409(ticket: Ticket, admin_agent: Any) -> None:
    WINDOW["now"] = closed_window()
    inbox = ticket.inbox
    client = logged_in(admin_agent)
    response = client.post(
        f"/desk/tickets/{ticket.number}/reply/",
        {
            "text": "draft kept",
            f"window_option:{inbox.pk}": "template:order_update:en",
            f"params:{inbox.pk}:order_update:en": ["Jana"],
        },
    )
    assert response.status_code == 409
    page = response.content.decode()
    assert "takes 2 parameter(s), not 1" in page
    assert "draft kept" in page
    assert not Message.objects.filter(ticket=ticket).exists()


def test_composer_shows_window_state(ticket: Ticket, admin_agent: Any) -> None:
    client = logged_in(admin_agent)
    WINDOW["now"] = closed_window()
    page = client.get(f"/desk/tickets/{ticket.number}/").content.decode()
    assert CLOSED_REASON in page
    assert f'name="window_option:{ticket.inbox.pk}"' in page
    assert 'value="template:order_update:en"' in page
    assert f'name="params:{ticket.inbox.pk}:order_update:en"' in page
    assert '<option value="tag:HUMAN_AGENT">Send with HUMAN_AGENT tag</option>' in page
    assert "— window closed</option>" in page
    # A template reply may leave the text empty: the textarea is not required then.
    assert 'id="composer-text" rows="5" placeholder' in page
    WINDOW["now"] = open_window()
    page = client.get(f"/desk/tickets/{ticket.number}/").content.decode()
    assert "window closes in 3 h" in page
    assert "— window closed</option>" not in page
    assert CLOSED_REASON not in page
