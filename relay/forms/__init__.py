"""Flat fields in, typed values out: payload parsing (`payloads`), field lists (`fields`), the
template filters (`filters`) with dates and phone numbers."""
