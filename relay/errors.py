"""The relay's exceptions, each carrying the HTTP status and error code users see (SPEC "Answers").

    RelayError
    ├── TokenError                      401
    │   ├── InvalidToken                    invalid_token
    │   └── RevokedToken                    revoked_token
    ├── PayloadError
    │   ├── InvalidBody                 400 invalid_body
    │   ├── BodyTooLarge                413 body_too_large
    │   └── UnsupportedMediaType        415 unsupported_media_type
    ├── FieldError                      422
    │   ├── MissingFields                   missing_field (all missing fields at once)
    │   └── InvalidField                    invalid_field
    ├── InvalidRequest                  422 invalid_request (rendered request fails validation)
    ├── RateLimited                     429 rate_limited
    ├── WrongEndpoint                   404 wrong_endpoint (a Stripe URL at /hooks, or the reverse)
    ├── TemplateMissing                 404 template_missing (the hook's template was removed)
    ├── BodyTimeout                     408 body_timeout (the body stalled; serving.BodyDeadline)
    ├── HeadersTooLarge                 431 headers_too_large (over RELAY_HEADER_LIMIT; serving)
    ├── ClientGone                      499 client_gone (the sender hung up mid-body; logged only)
    ├── HookMisconfigured               422 hook_misconfigured (a hook URL's setting is wrong)
    ├── TemplateProblem                 500 template_error (the operator's template is broken)
    ├── InternalError                   500 internal_error (a bug: logged with its traceback)
    ├── NotConfigured                   503 not_configured (an optional feature lacks its setting)
    └── PassKitError
        ├── PassKitRejected             422 passkit_rejected
        ├── PassKitNotFound             404 not_found
        ├── PassKitConflict             409 conflict
        ├── PassKitAuth                 502 passkit_auth
        ├── PassKitUnavailable          503 passkit_unavailable
        │   └── PassKitBusy             503 passkit_busy (no turn within PASSKIT_RATE_LIMIT)
        └── PassKitTimeout              504 passkit_timeout

Status codes are chosen for the sender's retry logic: input problems are 4xx (Zapier, Make and
Stripe stop retrying), transient upstream problems are 5xx (they retry).

A message may quote what the sender (or PassKit) sent: `private` lists those quotes, so the copy
that is stored or logged (`logged_message`) can mask them while the sender still sees them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from relay.redact import mask_private

MESSAGE_LIMIT = 250  # Zapier cuts integration error messages here.


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Cut text to `limit` characters on a word boundary, marking the cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"


def quote_value(value: object, limit: int = 40) -> str:
    """A user's value quoted for a message, cut short so the message stays readable."""
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return repr(text)


class RelayError(Exception):
    status = 500
    code = "internal_error"
    default_hint = ""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        hint: str | None = None,
        retry_after: float | None = None,
        private: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.hint = hint if hint is not None else self.default_hint
        self.retry_after = retry_after
        self.private = tuple(private)  # quotes of sent or personal data inside `message`

    def answer(self, request_id: str | None = None) -> dict[str, Any]:
        """The whole failure answer: `{"ok": false, "request_id", "error"}`."""
        body: dict[str, Any] = {"ok": False}
        if request_id is not None:
            body["request_id"] = request_id
        body["error"] = self.as_dict()
        return body

    def problem(self) -> list[dict[str, Any]]:
        """This failure as entries of an answer's `problems`: field, message, hint."""
        error = self.as_dict()
        return [{"field": error.get("field"), "message": error["message"],
                 "hint": error.get("hint", "")}]  # fmt: skip

    def _field_first(self) -> str:
        message = self.message
        if self.field and not message.startswith(self.field):
            message = f"{self.field}: {message}"
        return message

    def logged_message(self) -> str:
        """The message for the delivery log and the process log: what the sender sent and
        anything shaped like a secret masked, so neither holds personal data or credentials."""
        return shorten(mask_private(self._field_first(), self.private))

    def as_dict(self) -> dict[str, Any]:
        """The `error` object of the answer: field-first message under 250 characters."""
        error: dict[str, Any] = {"code": self.code}
        if self.field:
            error["field"] = self.field
        error["message"] = shorten(self._field_first())
        if self.hint:
            error["hint"] = shorten(self.hint, 400)
        return error


class TokenError(RelayError):
    status = 401


class InvalidToken(TokenError):
    code = "invalid_token"
    default_hint = (
        "Copy the whole hook URL again from `relay url` or the admin console and paste it into "
        "the URL box of Webhooks by Zapier or Make's HTTP module."
    )


class RevokedToken(TokenError):
    code = "revoked_token"
    default_hint = "This hook URL was revoked. Ask the relay's operator for a new URL."


class PayloadError(RelayError):
    status = 400


class InvalidBody(PayloadError):
    code = "invalid_body"


class BodyTooLarge(PayloadError):
    status = 413
    code = "body_too_large"
    default_hint = "Send only the fields the pass needs; files and long texts do not belong here."


class UnsupportedMediaType(PayloadError):
    status = 415
    code = "unsupported_media_type"
    default_hint = (
        "In Zapier set Payload Type to Form or JSON; in Make choose Body type "
        "application/x-www-form-urlencoded, or Raw with Content type JSON."
    )


class FieldError(RelayError):
    """A problem with what was sent. Its answer lists every problem found (`problems`: this one
    and `also`, each with field, message and hint) beside `error`, the first."""

    status = 422
    also: Sequence[FieldError] = ()  # the other problems found with what was sent

    def answer(self, request_id: str | None = None) -> dict[str, Any]:
        body = super().answer(request_id)
        body["problems"] = [entry for p in (self, *self.also) for entry in p.problem()]
        return body


class MissingFields(FieldError):
    code = "missing_field"

    def __init__(self, missing: list[str], received: list[str], *, hint: str | None = None):
        names = ", ".join(missing)
        verbs = ("is", "was") if len(missing) == 1 else ("are", "were")
        got = ", ".join(received[:12]) + (", …" if len(received) > 12 else "") or "no fields"
        message = f"{names} {verbs[0]} required but {verbs[1]} not sent (got: {got})."
        if hint is None:
            rows = " and ".join(missing)
            hint = (
                f"In Zapier's Data section (or Make's request body) add a row named {rows} and map "
                "the matching value from an earlier step."
            )
        # The names a sender used may be anything, even data: logged copies mask them.
        super().__init__(message, field=missing[0], hint=hint, private=[f"(got: {got})"])
        self.missing = missing

    def problem(self) -> list[dict[str, Any]]:
        """One entry per missing field."""
        return [{"field": name, "message": f"{name} is required but was not sent.",
                 "hint": f"In Zapier's Data section (or Make's request body) add a row named "
                 f"{name} and map the matching value from an earlier step."}
                for name in self.missing]  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        error = super().as_dict()
        if len(self.missing) > 1:
            error["fields"] = self.missing
        return error


class InvalidField(FieldError):
    code = "invalid_field"


class InvalidRequest(RelayError):
    status = 422
    code = "invalid_request"


class RateLimited(RelayError):
    status = 429
    code = "rate_limited"
    default_hint = "Slow the zap down (Zapier: Delay After Queue; Make: sequential processing)."


class WrongEndpoint(RelayError):
    status = 404
    code = "wrong_endpoint"


class TemplateMissing(RelayError):
    status = 404
    code = "template_missing"
    default_hint = "The operator removed or renamed this hook's template; ask them for a new URL."


class BodyTimeout(PayloadError):
    status = 408
    code = "body_timeout"
    default_hint = (
        "Send the whole body at once, as Zapier, Make and Stripe do; the relay closes a "
        "connection whose body trickles in."
    )


class HeadersTooLarge(PayloadError):
    status = 431
    code = "headers_too_large"
    default_hint = (
        "Zapier, Make and Stripe send a few KB of headers: look for a long custom header or "
        "cookie in the request, or ask the relay's operator to raise RELAY_HEADER_LIMIT."
    )


class ClientGone(PayloadError):
    """The sender hung up before its body arrived: nobody reads the answer, the log keeps it."""

    status = 499  # nginx's "client closed request"
    code = "client_gone"


class InternalError(RelayError):
    """A bug: the answer a sender gets, with the traceback only in the process log."""

    code = "internal_error"
    default_hint = "Retry later; if it persists, give the operator this request_id."

    def __init__(self) -> None:
        super().__init__("The relay hit an unexpected error; it has been logged.")


class HookMisconfigured(RelayError):
    """A setting (param) of the hook URL that its template refuses: the operator's mistake at
    minting time, answered before anything is rendered."""

    status = 422
    code = "hook_misconfigured"

    def __init__(self, setting: str, problem: str) -> None:
        plain = setting.replace("_", " ")
        super().__init__(
            f"This hook's settings are wrong; ask whoever runs the relay to fix the {plain} "
            "setting.",
            field=setting,
            hint=f"For the relay's operator: {problem}. Mint a new URL with --param "
            f"{setting}=… and revoke this one; `relay check` lists every such hook.",
        )
        self.setting = setting


class TemplateProblem(RelayError):
    """The operator's template is broken. Its message says so in words (which template, which
    line, who can fix it); the Python behind it is in the process log, never in an answer."""

    code = "template_error"
    default_hint = (
        "Nothing is wrong with what was sent: ask whoever runs the relay to fix this hook's "
        "template, then send again."
    )


class NotConfigured(RelayError):
    status = 503
    code = "not_configured"


class PassKitError(RelayError):
    status = 502


class PassKitRejected(PassKitError):
    status = 422
    code = "passkit_rejected"
    default_hint = (
        "Check the mapped values against what PassKit expects; a dry run shows the request."
    )


class PassKitNotFound(PassKitError):
    status = 404
    code = "not_found"
    default_hint = (
        "Check the external_id (or member_id) you mapped; it must match an existing pass."
    )


class PassKitConflict(PassKitError):
    status = 409
    code = "conflict"
    default_hint = "Use a member-upsert hook URL to create or update by external_id."


class PassKitAuth(PassKitError):
    status = 502
    code = "passkit_auth"
    default_hint = (
        "The relay's operator must check PASSKIT_API_KEY/PASSKIT_API_SECRET (or PASSKIT_TOKEN) "
        "and PASSKIT_REGION."
    )


class PassKitUnavailable(PassKitError):
    status = 503
    code = "passkit_unavailable"
    default_hint = "PassKit is busy or down; Zapier autoreplay or Make's Break handler will retry."


class PassKitBusy(PassKitUnavailable):
    """No turn at PassKit's rate (relay.passkit.outbound) within the delivery's retry budget: more
    deliveries are waiting than PASSKIT_RATE_LIMIT lets through in that time."""

    code = "passkit_busy"
    default_hint = (
        "Nothing is wrong with what was sent: many deliveries are queued for PassKit right now. "
        "Zapier's autoreplay or Make's Break handler sends it again later; nothing to change."
    )


class PassKitTimeout(PassKitError):
    status = 504
    code = "passkit_timeout"
    default_hint = (
        "PassKit did not answer in time; replay with the same idempotency_key so nothing is "
        "issued twice."
    )
