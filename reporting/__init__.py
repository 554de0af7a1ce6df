"""Metrics computed from the ticket event log (reports arrive in a later change)."""
