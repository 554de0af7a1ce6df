"""Agent replies and internal notes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from helpdesk.events import NoteAdded, ReplyAdded, StatusChanged, append_event
from helpdesk.html import sanitize_html
from helpdesk.models import DeliveryStatus, Direction, Message, Ticket, TicketStatus
from helpdesk.permissions import ticket_policy

if TYPE_CHECKING:
    from channels_inbox.adapters.base import ReplyWindow
    from channels_inbox.models import Inbox
    from customers.models import Identity
    from helpdesk.composer import OutgoingFile
    from helpdesk.models import User


class NoRecipient(ValueError):
    """The customer has no address on the chosen channel."""


class ReplyWindowClosed(NoRecipient):
    """The channel's customer-service window is closed: only one of its options (an approved
    template, a message tag) may go out, and none valid was chosen. `reason` is the adapter's
    explanation (ReplyWindow.reason)."""

    def __init__(self, reason: str, problem: str = "") -> None:
        self.reason = reason or "the channel does not allow a free-form reply now"
        super().__init__(f"{self.reason} {problem}".strip())


# The longest template parameter a provider takes (WhatsApp: 1,024 characters for a body one).
MAX_TEMPLATE_PARAM_CHARS = 1024


def window_metadata(window: ReplyWindow | None, template: dict[str, Any] | None, tag: str) -> dict[str, Any]:
    """The metadata a reply carries for the window option it chose ({} for free-form), or
    ReplyWindowClosed / ValueError when the choice is not allowed now.

    Free-form: allowed when there is no window (None) or it is open. An option (template by
    name with exactly its number of parameters, or tag by name) only when the window lists it."""
    if template is None and not tag:
        if window is not None and not window.open:
            raise ReplyWindowClosed(window.reason)
        return {}
    if template is not None and tag:
        raise ValueError("choose a template or a tag, not both")
    closed = window is not None and not window.open

    def refuse(problem: str) -> Exception:
        return ReplyWindowClosed(window.reason, problem) if closed and window else ValueError(problem)

    options = window.options if window is not None else ()
    if tag:
        if not any(o.kind == "tag" and o.name == tag for o in options):
            raise refuse(f"The tag {tag[:40]!r} is not available on this channel.")
        return {"tag": tag}
    assert template is not None
    name = str(template.get("name") or "")
    language = str(template.get("language") or "")
    option = next(
        (o for o in options if o.kind == "template" and o.name == name and (not language or o.language == language)),
        None,
    )
    if option is None:
        raise refuse(f"The template {name[:60]!r} is not available on this channel.")
    params = template.get("params") or []
    if not isinstance(params, list | tuple) or not all(isinstance(p, str) for p in params):
        raise ValueError("template parameters must be texts")
    values = [p.strip() for p in params]
    if len(values) != option.params:
        raise refuse(f"The template {name!r} takes {option.params} parameter(s), not {len(values)}.")
    for index, value in enumerate(values, start=1):
        if not value:
            raise refuse(f"Fill in parameter {{{{{index}}}}} of the template {name!r}.")
        if len(value) > MAX_TEMPLATE_PARAM_CHARS:
            raise ValueError(f"Parameter {{{{{index}}}}} is longer than {MAX_TEMPLATE_PARAM_CHARS} characters.")
    return {"template": {"name": option.name, "language": option.language, "params": values}}


def fill_template(body: str, params: Sequence[str]) -> str:
    """A template's body with {{1}}, {{2}}... replaced by the parameters (the composer's preview
    and the text stored for a template reply)."""
    for index, value in enumerate(params, start=1):
        body = body.replace(f"{{{{{index}}}}}", value)
    return body


def reply_window_for(inbox: Inbox, ticket: Ticket) -> ReplyWindow | None:
    """The inbox's window for the ticket's customer (None: the channel has none, or no adapter)."""
    try:
        return cast("ReplyWindow | None", inbox.adapter.reply_window(inbox, ticket))
    except (LookupError, NotImplementedError):
        return None


def do_reply(
    ticket: Ticket,
    *,
    actor: User,
    text: str,
    html: str = "",
    inbox: Inbox | None = None,
    identity: Identity | None = None,
    attachments: Sequence[OutgoingFile] = (),
    template: dict[str, Any] | None = None,
    tag: str = "",
) -> Message:
    """A public reply: the message, its files and its delivery (outbox) in one transaction;
    sent after commit.

    With `identity` (one of the ticket customer's), the reply goes to that address through
    `inbox` (default: the ticket's), which must be active and able to reach it; without, to
    the first address of the customer the inbox can reach.

    Where the inbox's channel has a customer-service window (`adapter.reply_window`) and it is
    closed, a free-form reply raises ReplyWindowClosed; `template` ({"name", "language",
    "params": [...]}) or `tag` must then be one of the window's options, and is stored in
    the message's metadata for the adapter's `send`. A template reply's text defaults to the
    template's body with its parameters filled in.
    """
    from channels_inbox.adapters.base import IdentityRef
    from channels_inbox.models import OutboundDelivery
    from channels_inbox.tasks import deliver
    from helpdesk.sideeffects import enqueue

    if not ticket_policy.can_reply(actor, ticket):
        raise PermissionDenied("you may not reply on this ticket")
    from helpdesk.composer import check_files, reaches

    inbox = inbox or ticket.inbox
    if template is None and not text.strip() and not html.strip():
        raise ValueError("a reply needs text")
    check_files(attachments)
    if identity is not None:
        if identity.customer_id != ticket.customer_id:
            raise NoRecipient("that address is not one of this ticket's customer")
        if not inbox.is_active:
            raise NoRecipient(f"the inbox {inbox.name} is not active")
        recipient = reaches(inbox, identity)
        if not recipient:
            raise NoRecipient(f"{inbox.name} cannot send to {identity.display_value}")
    else:
        identities = [IdentityRef(i.kind, i.value) for i in ticket.customer.identities.all()]
        recipient = inbox.adapter.recipient_for(inbox, identities)
        if not recipient:
            raise NoRecipient(f"the customer has no address on {inbox.name}")
    window = reply_window_for(inbox, ticket)
    option = window_metadata(window, template, tag)
    if "template" in option and not text.strip():
        assert window is not None
        chosen = next(o for o in window.options if o.kind == "template" and o.name == option["template"]["name"])
        text = fill_template(chosen.body, option["template"]["params"]) or f"[template {chosen.name}]"
    metadata: dict[str, Any] = {"reply_identity": {"id": identity.pk, "kind": identity.kind}} if identity else {}
    metadata.update(option)
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        now = timezone.now()
        message = Message.objects.create(
            ticket=ticket,
            direction=Direction.OUTBOUND,
            author_agent=actor,
            inbox=inbox,
            channel=inbox.kind,
            text=text,
            html=sanitize_html(html),
            delivery_status=DeliveryStatus.QUEUED,
            # The address the agent chose to answer on (none chosen: the inbox's default), and
            # the window option (template or tag) when the agent chose one.
            metadata=metadata,
        )
        _store_files(message, attachments)
        delivery = OutboundDelivery.objects.create(
            message=message, inbox=inbox, recipient=recipient, next_attempt_at=now
        )
        append_event(ticket, ReplyAdded(message_id=message.pk, channel=inbox.kind), actor=actor, message=message)
        if ticket.status == TicketStatus.NEW:
            ticket.status = TicketStatus.OPEN
            append_event(ticket, StatusChanged(old=TicketStatus.NEW, new=TicketStatus.OPEN), actor=actor)
        if ticket.first_reply_at is None:
            ticket.first_reply_at = now
        ticket.last_agent_message_at = now
        ticket.last_activity_at = now
        ticket.waiting_since = None
        ticket.save(
            update_fields=[
                "status",
                "first_reply_at",
                "last_agent_message_at",
                "last_activity_at",
                "waiting_since",
                "updated_at",
            ]
        )
        enqueue(deliver, delivery.pk)
    return message


def _store_files(message: Message, files: Sequence[OutgoingFile]) -> None:
    from helpdesk.attachments import store_attachment

    for file in files:
        store_attachment(message, file.filename, file.content, file.declared_type)


def do_add_note(ticket: Ticket, *, actor: User, text: str, attachments: Sequence[OutgoingFile] = ()) -> Message:
    """An internal note (with its files): seen by agents only, never sent anywhere."""
    from helpdesk.composer import check_files

    if not ticket_policy.can_add_note(actor, ticket):
        raise PermissionDenied("you may not add notes on this ticket")
    if not text.strip():
        raise ValueError("a note needs text")
    check_files(attachments)
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        message = Message.objects.create(ticket=ticket, direction=Direction.NOTE, author_agent=actor, text=text)
        _store_files(message, attachments)
        append_event(ticket, NoteAdded(message_id=message.pk), actor=actor, message=message)
        # Mentioned agents who may see the ticket are notified (helpdesk/actions/notifications.py).
        from helpdesk.actions.notifications import do_notify_mentions

        do_notify_mentions(message, actor=actor)
        ticket.last_activity_at = timezone.now()
        ticket.save(update_fields=["last_activity_at", "updated_at"])
    return message


# --- what rules write (helpdesk/runner.py): the system acts, no agent --------------------------


def do_send_auto_reply(ticket: Ticket, *, text: str) -> Message | None:
    """An automatic reply from a rule: queued like a reply (message + delivery, sent after
    commit) through the email acknowledgement's path, so it appends AutoReplySent and carries
    the auto-reply headers. It is not an agent's reply: no first response, no status change, the
    customer's turn unchanged. None when the customer has no address the ticket's inbox reaches
    (a rule cannot ask anyone to choose one)."""
    from channels_inbox.actions.auto_ack import do_queue_auto_ack
    from channels_inbox.adapters.base import IdentityRef

    if not text.strip():
        raise ValueError("a reply needs text")
    inbox = ticket.inbox
    if not inbox.is_active:
        return None
    identities = [IdentityRef(i.kind, i.value) for i in ticket.customer.identities.all()]
    recipient = inbox.adapter.recipient_for(inbox, identities)
    if not recipient:
        return None
    # No subject of its own: the delivery threads it as "Re: <ticket subject> [#N]".
    return do_queue_auto_ack(ticket, inbox=inbox, recipient=recipient, subject="", text=text)


def do_add_rule_note(ticket: Ticket, *, text: str) -> Message:
    """An internal note written by a rule (no author): NoteAdded with no acting agent. Mentions
    in it notify nobody; a rule's notify step is the way to tell agents."""
    if not text.strip():
        raise ValueError("a note needs text")
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        message = Message.objects.create(ticket=ticket, direction=Direction.NOTE, author_agent=None, text=text)
        append_event(ticket, NoteAdded(message_id=message.pk), message=message)
        ticket.last_activity_at = timezone.now()
        ticket.save(update_fields=["last_activity_at", "updated_at"])
    return message
