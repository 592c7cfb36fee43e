"""PassKit's side: its published contract and message schema, the operations the relay sends, the
pooled client and its transport, the outbound rate limiter, the account cache and the pass check."""
