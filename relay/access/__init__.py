"""Who may call: signed hook tokens (`tokens`), revoked hooks (`revocations`), per-hook rate
limits."""
