from helpdesk.models.agent import AgentProfile, Presence, Role, Team, User
from helpdesk.models.canned import CannedResponse
from helpdesk.models.event import TicketEvent, TicketEventType
from helpdesk.models.macro import Macro
from helpdesk.models.message import DELIVERY_RANK, Attachment, DeliveryStatus, Direction, Message, MessageReply
from helpdesk.models.notification import Notification, NotificationKind
from helpdesk.models.saved_view import SavedView
from helpdesk.models.ticket import Priority, Tag, Ticket, TicketCC, TicketStatus

__all__ = [
    "DELIVERY_RANK",
    "AgentProfile",
    "Attachment",
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
    "SavedView",
    "Tag",
    "Team",
    "Ticket",
    "TicketCC",
    "TicketEvent",
    "TicketEventType",
    "TicketStatus",
    "User",
]
