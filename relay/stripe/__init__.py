"""Stripe's side: verified events and which template each drives (`events`), sample events, and the
spend ledger's tier rules."""
