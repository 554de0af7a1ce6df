"""Live chat: the widget's visitors, their tokens, allowed origins and identity checks.

The widget protocol (HTTP and websocket) is described in docs/chat.md; the visitor's
websocket is channels_inbox/consumers.py, its HTTP API channels_inbox/views/widget.py.
"""
