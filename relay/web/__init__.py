"""The web face: the hook, Stripe and PassKit-event endpoints, the checkout success page, and what
guards every request (serving limits, trusted proxies)."""
