from helpdesk.models.agent import AgentProfile, Presence, Role, Team, User
from helpdesk.models.calendar import BusinessCalendar
from helpdesk.models.call import CALL_STATUS_RANK, Call, CallDirection, CallStatus
from helpdesk.models.canned import CannedResponse
from helpdesk.models.event import TicketEvent, TicketEventType
from helpdesk.models.macro import Macro
from helpdesk.models.message import DELIVERY_RANK, Attachment, DeliveryStatus, Direction, Message, MessageReply
from helpdesk.models.notification import Notification, NotificationKind
from helpdesk.models.routing import RoutingMode, RoutingRule
from helpdesk.models.rule import Rule, RuleKind, WebhookCall, WebhookCallStatus
from helpdesk.models.saved_view import SavedView
from helpdesk.models.sla import SlaClock, SlaClockState, SlaMetric, SlaPolicy
from helpdesk.models.ticket import Priority, Tag, Ticket, TicketCC, TicketStatus

__all__ = [
    "CALL_STATUS_RANK",
    "DELIVERY_RANK",
    "AgentProfile",
    "Attachment",
    "BusinessCalendar",
    "Call",
    "CallDirection",
    "CallStatus",
    "CannedResponse",
    "DeliveryStatus",
    "Direction",
    "Macro",
    "Message",
    "MessageReply",
    "Notification",
    "NotificationKind",
    "Presence",
    "Priority",
    "Role",
    "RoutingMode",
    "RoutingRule",
    "Rule",
    "RuleKind",
    "SavedView",
    "SlaClock",
    "SlaClockState",
    "SlaMetric",
    "SlaPolicy",
    "Tag",
    "Team",
    "Ticket",
    "TicketCC",
    "TicketEvent",
    "TicketEventType",
    "TicketStatus",
    "User",
    "WebhookCall",
    "WebhookCallStatus",
]
