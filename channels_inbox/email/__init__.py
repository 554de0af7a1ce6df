"""The email channel's parts: parsing raw mail, reply tokens, building outgoing mail, IMAP polling."""
