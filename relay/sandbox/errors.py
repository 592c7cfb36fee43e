"""Errors in PassKit's shape: grpc-gateway's `{"code": <grpc int>, "message": …, "details": []}`.

PassKit's REST API is a grpc-gateway proxy, so a failure is a gRPC status turned into HTTP by
the gateway's default table (passkit-api.md §7). The sandbox raises one exception class carrying
the gRPC code; the app renders it. Only the codes the sandbox uses are listed:

    SandboxError(code, message)
      INVALID_ARGUMENT 3     → 400   wrong JSON type, unknown enum name, missing field
      FAILED_PRECONDITION 9  → 400   redeeming twice, burning below zero
      NOT_FOUND 5            → 404   unknown record or route
      UNIMPLEMENTED 12       → 501   a known path with the wrong method
      ALREADY_EXISTS 6       → 409   duplicate external id / ticket number
      UNAUTHENTICATED 16     → 401   missing, forged or expired credentials
      RESOURCE_EXHAUSTED 8   → 429   fault injection
      UNAVAILABLE 14         → 503   fault injection

Live PassKit does not always answer in the gateway's shape: calls have also come back as
`{"error": "jwt was issued too long ago"}` and `{"error": {"code": …, "message": …}}`. The
sandbox can answer in any of the three (`ERROR_SHAPES`: "gateway", the default, "string",
"object"), chosen in SandboxConfig or at run time through `POST /_sandbox/errors`, so a client
is tested against each.
"""

from __future__ import annotations

from typing import Any

INVALID_ARGUMENT = 3
NOT_FOUND = 5
ALREADY_EXISTS = 6
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
UNIMPLEMENTED = 12
UNAVAILABLE = 14
UNAUTHENTICATED = 16

ERROR_SHAPES = ("gateway", "string", "object")

HTTP_STATUS = {
    INVALID_ARGUMENT: 400,
    NOT_FOUND: 404,
    ALREADY_EXISTS: 409,
    RESOURCE_EXHAUSTED: 429,
    FAILED_PRECONDITION: 400,
    UNIMPLEMENTED: 501,  # grpc-gateway's answer to a known path with the wrong method
    UNAVAILABLE: 503,
    UNAUTHENTICATED: 401,
}


class SandboxError(Exception):
    """A gRPC status the gateway would turn into an HTTP error answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def body(self, shape: str = "gateway") -> dict[str, Any]:
        """The answer's JSON in one of ERROR_SHAPES."""
        if shape == "string":
            return {"error": self.message}
        if shape == "object":
            return {"error": {"code": self.code, "message": self.message}}
        return {"code": self.code, "message": self.message, "details": []}


def invalid(message: str) -> SandboxError:
    return SandboxError(INVALID_ARGUMENT, message)


def not_found(what: str) -> SandboxError:
    return SandboxError(NOT_FOUND, f"{what} not found")


def exists(message: str) -> SandboxError:
    return SandboxError(ALREADY_EXISTS, message)


def precondition(message: str) -> SandboxError:
    return SandboxError(FAILED_PRECONDITION, message)


def unauthenticated(message: str) -> SandboxError:
    return SandboxError(UNAUTHENTICATED, message)
