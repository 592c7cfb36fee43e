"""PassKit's signed events: verify the signature, flatten an event to flat keys, and forward it to
Zapier or Make through the durable outbox."""
