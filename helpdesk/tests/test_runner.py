"""The action runner (helpdesk/runner.py): step validation per context, applying steps as the
system (actor None), RuleFired first, previews that write nothing, and `sets_value`."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from helpdesk.actions.agents import do_create_agent
from helpdesk.models import (
    Direction,
    Message,
    Notification,
    NotificationKind,
    Priority,
    Team,
    Ticket,
    TicketEvent,
    TicketEventType,
    TicketStatus,
    WebhookCall,
)
from helpdesk.runner import (
    InvalidActions,
    RuleSource,
    preview_actions,
    run_actions,
    sets_value,
    sign_body,
    steps_without_secrets,
    validate_actions,
)
from helpdesk.tests.conftest import ingest, new_ticket

pytestmark = pytest.mark.django_db
TRIGGER = RuleSource("trigger", None, "Test trigger", event="created")
SECRET = "a-very-long-webhook-secret"


def errors_of(steps: Any, context: str = "trigger") -> list[str]:
    with pytest.raises(InvalidActions) as caught:
        validate_actions(steps, context=context)
    return caught.value.errors


def types_after(ticket: Ticket, seq: int) -> list[str]:
    return list(TicketEvent.objects.filter(ticket=ticket, seq__gt=seq).order_by("seq").values_list("type", flat=True))


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "context", "error"),
    [
        ([], "trigger", "A trigger needs at least one step."),
        ([], "time", "A time rule needs at least one step."),
        ([{"type": "note", "value": "x"}] * 21, "trigger", "A trigger has at most 20 steps; this one has 21."),
        ([{"type": "webhook", "value": {}}], "macro", "Step 1: a macro cannot use webhook steps; one of: reply,"),
        ([{"type": "assignee", "value": "me"}], "trigger", 'Step 1 (assignee): "me" is the agent applying a macro'),
        ([{"type": "assignee", "value": "me"}], "time", "a time rule has none"),
        ([{"type": "assignee", "value": "x"}], "trigger", 'Step 1 (assignee): give "nobody" or an agent id'),
        ([{"type": "set_tags", "value": "a,b"}], "trigger", "Step 1 (set_tags): A tag name cannot contain a comma"),
        (
            [{"type": "set_tags", "value": ["a"]}, {"type": "add_tags", "value": ["b"]}],
            "trigger",
            "A set_tags step replaces every tag; it cannot go with add_tags or remove_tags.",
        ),
        (
            [{"type": "custom_field", "value": {"key": "Order"}}],
            "trigger",
            "Step 1 (custom_field): the value is missing",
        ),
        (
            [{"type": "custom_field", "value": {"key": "Order ID", "value": 1}}],
            "trigger",
            "Step 1 (custom_field): 'Order ID' is not a field key",
        ),
        (
            [{"type": "custom_field", "value": {"key": "order", "value": [1]}}],
            "trigger",
            "the value must be a string, a number, true/false or null.",
        ),
        (
            [
                {"type": "custom_field", "value": {"key": "order", "value": 1}},
                {"type": "custom_field", "value": {"key": "order", "value": 2}},
            ],
            "trigger",
            "Step 2 (custom_field): the field order is already set by an earlier step.",
        ),
        ([{"type": "notify", "value": {"to": "everyone", "text": "x"}}], "trigger", 'send to "assignee", "team"'),
        ([{"type": "notify", "value": {"to": [999_999], "text": "x"}}], "trigger", "no active agent with id 999999"),
        ([{"type": "notify", "value": {"to": "team", "text": "x" * 501}}], "trigger", "at most 500)."),
        ([{"type": "notify", "value": {"to": "team"}}], "trigger", "Step 1 (notify): the text is missing."),
        ([{"type": "webhook", "value": {"url": "ftp://x.example", "secret": SECRET}}], "trigger", "https://"),
        ([{"type": "webhook", "value": {"url": "https://u:p@x.example", "secret": SECRET}}], "trigger", "password"),
        ([{"type": "webhook", "value": {"url": "https://x.example", "secret": "short"}}], "trigger", "16–200"),
        (
            [{"type": "webhook", "value": {"url": "http://127.0.0.1:8000/", "secret": SECRET}}],
            "trigger",
            "127.0.0.1 is a private or local address",
        ),
        (
            [{"type": "webhook", "value": {"url": "http://localhost/", "secret": SECRET}}],
            "trigger",
            "localhost is a private or local address",
        ),
        (
            [{"type": "webhook", "value": {"url": "http://[::1]/", "secret": SECRET}}],
            "trigger",
            "private or local address",
        ),
        ([{"type": "webhook", "value": {"url": "https://x.example:port/", "secret": SECRET}}], "trigger", "not a web"),
        ([{"type": "sla_policy", "value": 999_999}], "trigger", "Step 1 (sla_policy): there is no SLA policy with id"),
        ([{"type": "sla_policy", "value": "gold"}], "sla", "give an SLA policy id, or null for none"),
        (
            [{"type": "status", "value": "solved"}, {"type": "status", "value": "open"}],
            "trigger",
            "Step 2 (status): a trigger has one status step at most.",
        ),
    ],
)
def test_invalid_steps_say_what_is_wrong(steps: Any, context: str, error: str) -> None:
    # given steps with one problem / when validated / then the sentence names it
    errors = errors_of(steps, context)
    assert any(error in e for e in errors), errors


@pytest.mark.parametrize(
    "hostile",
    [
        None,
        "status",
        {"type": "status"},
        [None, 3, "x", [], {"type": None}, {"type": {"a": 1}, "value": 1}],
        [{"type": "note", "value": {"$ne": 1}}],
        [{"type": "reply", "value": "x" * 1_000_000}],
        [{"type": "custom_field", "value": {"key": "a" * 10_000, "value": 1}}],
        [{"type": "custom_field", "value": {"key": "n", "value": float("nan")}}],
        [{"type": "notify", "value": {"to": [True, 2**70], "text": "x"}}],
        [{"type": "webhook", "value": {"url": "https://x.example/" + "a" * 5000, "secret": SECRET}}],
        [{"type": "webhook", "value": {"url": "https://x.example/\r\nX-Injected: 1", "secret": SECRET}}],
        [{"type": "webhook", "value": {"url": "https://x.example/", "secret": "x" * 16 + "\n"}}],
        [{"type": "priority", "value": 2**80}],
        [{"type": "team", "value": -1}],
    ],
)
def test_hostile_input_is_refused_with_sentences(hostile: Any) -> None:
    # given garbage / when validated / then InvalidActions with sentences, never a crash
    errors = errors_of(hostile)
    assert errors
    assert all(isinstance(e, str) and e.endswith(".") for e in errors)


def test_valid_rule_steps_are_normalized(agent: Any) -> None:
    # given steps of every rule type
    team = Team.objects.get(slug="support")
    steps = [
        {"type": "reply", "value": "Hi\x00 {{ customer.first_name }}"},
        {"type": "assignee", "value": agent.pk},
        {"type": "team", "value": team.pk},
        {"type": "set_tags", "value": [" VIP ", "vip", "Refund"]},
        {"type": "custom_field", "value": {"key": "order_id", "value": "A-1"}},
        {"type": "custom_field", "value": {"key": "paid", "value": True}},
        {"type": "notify", "value": {"to": [agent.pk, agent.pk], "text": "Look"}},
        {"type": "webhook", "value": {"url": " https://hooks.example/x ", "secret": SECRET}},
        {"type": "webhook", "value": {"url": "https://other.example/", "secret": SECRET}},
        {"type": "sla_policy", "value": None},
    ]
    # when
    clean = validate_actions(steps, context="trigger")
    # then
    assert clean[0] == {"type": "reply", "value": "Hi {{ customer.first_name }}"}
    assert clean[3] == {"type": "set_tags", "value": ["vip", "refund"]}
    assert clean[6]["value"] == {"to": [agent.pk], "text": "Look"}
    assert clean[7]["value"]["url"] == "https://hooks.example/x"
    assert clean[9] == {"type": "sla_policy", "value": None}
    assert steps_without_secrets(clean)[7]["value"]["secret"] != SECRET


def test_private_addresses_are_allowed_when_the_setting_says_so(settings: Any) -> None:
    settings.RULE_WEBHOOK_ALLOW_PRIVATE = True
    steps = [{"type": "webhook", "value": {"url": "http://127.0.0.1:9/", "secret": SECRET}}]
    assert validate_actions(steps, context="trigger")[0]["value"]["url"] == "http://127.0.0.1:9/"


def test_sets_value_maps_steps_to_condition_fields() -> None:
    assert sets_value({"type": "status", "value": "solved"}) == ("status", "solved")
    assert sets_value({"type": "priority", "value": 4}) == ("priority", 4)
    assert sets_value({"type": "team", "value": None}) == ("team", None)
    assert sets_value({"type": "assignee", "value": "nobody"}) == ("assignee", None)
    assert sets_value({"type": "assignee", "value": "me"}) is None
    assert sets_value({"type": "add_tags", "value": ["x"]}) == ("tags", {"add": ["x"]})
    assert sets_value({"type": "remove_tags", "value": ["x"]}) == ("tags", {"remove": ["x"]})
    assert sets_value({"type": "set_tags", "value": []}) == ("tags", {"set": []})
    assert sets_value({"type": "custom_field", "value": {"key": "k", "value": 1}}) == ("custom_field.k", 1)
    assert sets_value({"type": "note", "value": "x"}) is None
    assert sets_value({"type": "webhook", "value": {}}) is None


# --- applying --------------------------------------------------------------------------------------


def test_a_rule_applies_every_field_step_as_the_system(agent: Any, api_inbox: Any) -> None:
    # given a ticket nobody holds and steps a rule may take
    ticket = ingest(api_inbox)
    team = Team.objects.get(slug="support")
    steps = validate_actions(
        [
            {"type": "status", "value": "pending"},
            {"type": "priority", "value": 4},
            {"type": "team", "value": team.pk},
            {"type": "assignee", "value": agent.pk},
            {"type": "add_tags", "value": ["vip", "refund"]},
            {"type": "remove_tags", "value": ["nothing"]},
            {"type": "custom_field", "value": {"key": "order_id", "value": "A-1"}},
            {"type": "note", "value": "Escalated for {{ customer.name }}"},
        ],
        context="trigger",
    )
    seq = ticket.last_event_seq
    # when
    with transaction.atomic():
        fresh = run_actions(ticket, steps, source=TRIGGER)
    # then the ticket changed, RuleFired comes first and no agent acted
    assert (fresh.status, fresh.priority, fresh.team_id, fresh.assignee_id) == ("pending", 4, team.pk, agent.pk)
    assert fresh.custom_fields == {"order_id": "A-1"}
    assert sorted(fresh.tags.values_list("name", flat=True)) == ["refund", "vip"]
    events = list(TicketEvent.objects.filter(ticket=ticket, seq__gt=seq).order_by("seq"))
    assert [e.type for e in events] == [
        "rule_fired",
        "status_changed",
        "priority_changed",
        "team_changed",
        "assigned",
        "tags_changed",
        "custom_field_changed",
        "note_added",
    ]
    assert events[0].data == {"rule_id": None, "name": "Test trigger", "kind": "trigger"}
    assert all(e.actor_id is None for e in events)
    assert events[4].data["via"] == "rule"
    note = Message.objects.get(ticket=ticket, direction=Direction.NOTE)
    assert note.author_agent_id is None
    assert note.text == f"Escalated for {ticket.customer.name}"
    # and the new assignee heard of it
    assert Notification.objects.filter(recipient=agent, kind=NotificationKind.ASSIGNED).count() == 1


def test_set_tags_replaces_the_whole_list(api_inbox: Any) -> None:
    ticket = ingest(api_inbox)
    with transaction.atomic():
        run_actions(
            ticket, validate_actions([{"type": "add_tags", "value": ["a", "b"]}], context="trigger"), source=TRIGGER
        )
        fresh = run_actions(
            ticket, validate_actions([{"type": "set_tags", "value": ["b", "c"]}], context="trigger"), source=TRIGGER
        )
    assert sorted(fresh.tags.values_list("name", flat=True)) == ["b", "c"]
    change = TicketEvent.objects.filter(ticket=ticket, type=TicketEventType.TAGS_CHANGED).order_by("-seq").first()
    assert change is not None
    assert change.data == {"added": ["c"], "removed": ["a"]}


def test_a_rule_reply_is_an_automatic_reply_not_the_agents(api_inbox: Any) -> None:
    # given a new ticket
    ticket = ingest(api_inbox)
    assert ticket.status == TicketStatus.NEW
    seq = ticket.last_event_seq
    steps = validate_actions(
        [{"type": "reply", "value": "Thanks {{ customer.first_name }}, #{{ ticket.number }}"}], context="trigger"
    )
    # when a rule replies
    with transaction.atomic():
        fresh = run_actions(ticket, steps, source=TRIGGER)
    # then an automatic reply is queued: AutoReplySent, no first response, still new
    assert types_after(ticket, seq) == ["rule_fired", "auto_reply_sent"]
    reply = Message.objects.get(ticket=ticket, direction=Direction.OUTBOUND)
    assert reply.metadata.get("auto_ack") is True
    assert reply.author_agent_id is None
    assert reply.text == f"Thanks Customer, #{ticket.number}"
    assert reply.deliveries.count() == 1
    assert fresh.first_reply_at is None
    assert fresh.status == TicketStatus.NEW
    assert fresh.last_agent_message_at is None


def test_a_rule_reply_without_an_address_changes_nothing_else(api_inbox: Any) -> None:
    # given a ticket whose customer has no identity the inbox reaches
    ticket = new_ticket(inbox=api_inbox)
    steps = validate_actions([{"type": "reply", "value": "Hello"}, {"type": "priority", "value": 3}], context="trigger")
    with transaction.atomic():
        fresh = run_actions(ticket, steps, source=TRIGGER)
    # then the reply is skipped and the rest applies
    assert not Message.objects.filter(ticket=ticket).exists()
    assert fresh.priority == Priority.HIGH


def test_notify_tells_the_assignee_or_the_team(agent: Any, api_inbox: Any) -> None:
    # given a ticket of the support team assigned to the agent, and a colleague in the team
    colleague = do_create_agent(email="col@example.com", name="Col League", password="pw-col-12345", teams=["Support"])
    outsider = do_create_agent(email="out@example.com", name="Out Sider", password="pw-out-12345", teams=["Billing"])
    team = Team.objects.get(slug="support")
    ticket = new_ticket(inbox=api_inbox, team=team, assignee=agent)
    steps = validate_actions(
        [
            {"type": "notify", "value": {"to": "assignee", "text": "Urgent: #{{ ticket.number }}"}},
            {"type": "notify", "value": {"to": "team", "text": "Team, look"}},
            {"type": "notify", "value": {"to": [outsider.pk], "text": "Not for you"}},
        ],
        context="trigger",
    )
    # when
    with transaction.atomic():
        run_actions(ticket, steps, source=TRIGGER)
    # then kind "rule" notifications with their text; nobody who cannot see the ticket
    rows = Notification.objects.filter(kind=NotificationKind.RULE).order_by("pk")
    assert [(n.recipient_id, n.text) for n in rows] == [
        (agent.pk, f"Urgent: #{ticket.number}"),
        (agent.pk, "Team, look"),
        (colleague.pk, "Team, look"),
    ]
    from helpdesk.actions.notifications import notification_text

    assert notification_text(rows[0]) == f"Ticket #{ticket.number}: Urgent: #{ticket.number}"


def test_a_webhook_step_writes_a_signed_outbox_row(
    api_inbox: Any, lost_tasks: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given a webhook step
    ticket = ingest(api_inbox)
    steps = validate_actions(
        [{"type": "webhook", "value": {"url": "https://hooks.example/in", "secret": SECRET}}], context="trigger"
    )
    # when
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        run_actions(ticket, steps, source=RuleSource("trigger", None, "Hook", event="created"))
    # then one queued call, signed over its body, its delivery queued after commit
    call = WebhookCall.objects.get()
    assert call.status == "queued"
    assert call.url == "https://hooks.example/in"
    assert call.signature == sign_body(SECRET, call.body.encode())
    assert SECRET not in call.body
    import json

    assert json.loads(call.body) == {
        "event": "created",
        "rule": {"id": None, "kind": "trigger", "name": "Hook"},
        "ticket": {"number": ticket.number, "priority": 2, "status": "new", "subject": ticket.subject},
    }
    assert ("helpdesk.tasks.deliver_webhook_call", (call.pk,)) in lost_tasks


def test_sla_policy_step_calls_apply_policy(api_inbox: Any, monkeypatch: Any) -> None:
    # given an SLA policy and a recorder in place of helper C's apply_policy
    from helpdesk.actions import sla
    from helpdesk.models import SlaPolicy

    policy = SlaPolicy.objects.create(name="Gold", targets={})
    calls: list[tuple[int, Any, Any]] = []

    def record(t: Ticket, p: Any, *, actor: Any = None) -> Ticket:
        calls.append((t.pk, p, actor))
        return t

    monkeypatch.setattr(sla, "apply_policy", record)
    ticket = ingest(api_inbox)
    steps = validate_actions([{"type": "sla_policy", "value": policy.pk}], context="sla")
    # when
    with transaction.atomic():
        run_actions(ticket, steps, source=RuleSource("sla", None, "Breach"))
    # then
    assert calls == [(ticket.pk, policy, None)]


def test_a_failing_step_rolls_the_whole_run_back(api_inbox: Any) -> None:
    # given a closed ticket: its status cannot change
    ticket = new_ticket(inbox=api_inbox, status=TicketStatus.CLOSED)
    steps = validate_actions(
        [{"type": "add_tags", "value": ["x"]}, {"type": "status", "value": "open"}], context="trigger"
    )
    # when / then nothing is kept
    with pytest.raises(ValueError, match="a closed ticket stays closed"), transaction.atomic():
        run_actions(ticket, steps, source=TRIGGER)
    assert not TicketEvent.objects.filter(ticket=ticket).exists()
    assert not ticket.tags.exists()


def test_a_team_gone_since_saving_is_refused(api_inbox: Any) -> None:
    team = Team.objects.create(name="Gone", slug="gone")
    steps = validate_actions([{"type": "team", "value": team.pk}], context="trigger")
    team.delete()
    with pytest.raises(InvalidActions, match=r"the team with id \d+ no longer exists"), transaction.atomic():
        run_actions(new_ticket(inbox=api_inbox), steps, source=TRIGGER)


def test_preview_says_what_would_change_and_writes_nothing(agent: Any, api_inbox: Any) -> None:
    # given a pending ticket with a tag
    ticket = new_ticket(inbox=api_inbox, status=TicketStatus.PENDING)
    with transaction.atomic():
        run_actions(
            ticket, validate_actions([{"type": "add_tags", "value": ["vip"]}], context="trigger"), source=TRIGGER
        )
    seq = Ticket.objects.get(pk=ticket.pk).last_event_seq
    steps = validate_actions(
        [
            {"type": "status", "value": "pending"},
            {"type": "priority", "value": 4},
            {"type": "add_tags", "value": ["vip"]},
            {"type": "note", "value": "For {{ agent.name }}"},
            {"type": "webhook", "value": {"url": "https://hooks.example/x", "secret": SECRET}},
        ],
        context="trigger",
    )
    # when
    words = preview_actions(Ticket.objects.get(pk=ticket.pk), steps)
    # then
    assert words == [
        "Status: Pending (stays Pending)",
        "Priority: Urgent (now Normal)",
        "Add tags: vip (no change)",
        "Add an internal note: For Support team",
        "Call the webhook at hooks.example (signed POST)",
    ]
    assert Ticket.objects.get(pk=ticket.pk).last_event_seq == seq
    assert not WebhookCall.objects.exists()


# --- webhook addresses (docs/rules.md "Webhooks") --------------------------------------------------

REFUSED_ADDRESSES = [
    "100.64.0.1",  # carrier-grade NAT (100.64.0.0/10)
    "100.127.255.254",
    "100.100.100.200",  # Alibaba Cloud's metadata endpoint, inside 100.64.0.0/10
    "169.254.169.254",  # link-local: AWS/GCP/Azure metadata
    "0.0.0.0",  # noqa: S104 — an address to refuse, not to bind
    "0.1.2.3",
    "127.0.0.1",
    "10.1.2.3",
    "192.168.0.1",
    "198.18.0.1",
    "224.0.0.1",  # multicast (is_global says True)
    "239.255.255.250",
    "255.255.255.255",
    "::",
    "::1",
    "fd00::1",
    "fe80::1",
    "fec0::1",  # site-local (is_global says True)
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:100.100.100.200",
    "2002:7f00:1::",  # 6to4 around 127.0.0.1 (is_global says True)
    "2002:a9fe:a9fe::1",  # 6to4 around 169.254.169.254
    "2002:6464:64c8::",  # 6to4 around 100.100.100.200
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "64:ff9b::7f00:1",  # NAT64 around 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 around 169.254.169.254
    "64:ff9b:1::a00:1",  # local-use NAT64
    "::7f00:1",  # IPv4-compatible (deprecated)
]
PUBLIC_ADDRESSES = ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "2002:808:808::1", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_non_global_addresses_are_not_public(address: str) -> None:
    import ipaddress

    from helpdesk.runner import is_public_address

    assert is_public_address(ipaddress.ip_address(address)) is False


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_global_addresses_are_public(address: str) -> None:
    import ipaddress

    from helpdesk.runner import is_public_address

    assert is_public_address(ipaddress.ip_address(address)) is True


def url_of(address: str) -> str:
    return f"http://[{address}]/hook" if ":" in address else f"http://{address}/hook"


@pytest.mark.parametrize(
    "address",
    [
        "100.64.0.0",
        "100.100.100.200",
        "2002:7f00:1::",
        "::ffff:127.0.0.1",
        "169.254.169.254",
        "fd00::1",
        "0.0.0.0",  # noqa: S104 — an address to refuse, not to bind
        "224.0.0.1",
        "64:ff9b::7f00:1",
        "127.1",  # what resolvers read as 127.0.0.1
        "2130706433",
        "0x7f.0.0.1",
    ],
)
def test_a_webhook_to_a_non_global_address_is_refused_on_save_unless_allowed(address: str, settings: Any) -> None:
    # given a webhook step written with a non-global address
    steps = [{"type": "webhook", "value": {"url": url_of(address), "secret": SECRET}}]
    # when validated with the setting off / then refused
    settings.RULE_WEBHOOK_ALLOW_PRIVATE = False
    assert any("private or local address" in e for e in errors_of(steps)), errors_of(steps)
    # when the setting is on / then saved as written
    settings.RULE_WEBHOOK_ALLOW_PRIVATE = True
    assert validate_actions(steps, context="trigger")[0]["value"]["url"] == url_of(address)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://" + "a" * 64 + ".example/", "each part between dots must be 1–63 characters"),
        ("https://hooks..example/", "each part between dots must be 1–63 characters"),
        ("https://" + ".".join(["a" * 60] * 5) + ".example/", "at most 253 characters"),
        ("https://bü" + "x" * 70 + ".example/", "each part between dots must be 1–63 characters"),
        ("ftp://hooks.example/", "https://"),
        ("javascript://hooks.example/", "https://"),
        ("https://user@hooks.example/", "password"),
        ("https://:pw@hooks.example/", "password"),
        ("https://@hooks.example/", "password"),
    ],
)
def test_a_webhook_host_that_cannot_be_called_is_refused_on_save(url: str, error: str) -> None:
    # given a webhook whose host no resolver accepts (it used to reach the outbox and fail there)
    steps = [{"type": "webhook", "value": {"url": url, "secret": SECRET}}]
    # when / then one sentence says why
    errors = errors_of(steps)
    assert any(error in e for e in errors), errors


def test_an_international_host_name_is_accepted() -> None:
    steps = [{"type": "webhook", "value": {"url": "https://bücher.example/hook", "secret": SECRET}}]
    assert validate_actions(steps, context="trigger")[0]["value"]["url"] == "https://bücher.example/hook"
