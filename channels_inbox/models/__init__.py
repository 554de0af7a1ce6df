from channels_inbox.models.chat import ChatConversation, ChatProactiveShown, ChatStatus, ChatUpload, ChatVisitor
from channels_inbox.models.delivery import OutboundDelivery
from channels_inbox.models.inbound_event import InboundEvent, InboundEventStatus
from channels_inbox.models.inbox import Inbox
from channels_inbox.models.mailbox import MailboxState

__all__ = [
    "ChatConversation",
    "ChatProactiveShown",
    "ChatStatus",
    "ChatUpload",
    "ChatVisitor",
    "InboundEvent",
    "InboundEventStatus",
    "Inbox",
    "MailboxState",
    "OutboundDelivery",
]
