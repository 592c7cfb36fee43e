"""The delivery pipeline: render a template (`templating`), validate, call PassKit once (`pipeline`,
`idempotency`), log it (`journal`), alert on failure; the services one app holds, housekeeping
and erasure."""
