"""Help center, articles and the customer portal (articles arrive in a later change)."""
