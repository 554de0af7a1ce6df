"""Channel adapters, webhooks in, deliveries out, and the raw inbound-event log."""
