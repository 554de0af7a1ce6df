from channels_inbox.models.delivery import OutboundDelivery
from channels_inbox.models.inbound_event import InboundEvent, InboundEventStatus
from channels_inbox.models.inbox import Inbox

__all__ = ["InboundEvent", "InboundEventStatus", "Inbox", "OutboundDelivery"]
