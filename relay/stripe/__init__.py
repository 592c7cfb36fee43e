"""Stripe's side: verified events and which template each drives (`events`), sample events, the
spend ledger (`spend`) and what each event adds to it (`spent`)."""
