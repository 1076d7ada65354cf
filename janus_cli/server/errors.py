"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}` with a 4xx status.

Every refusal the server makes is an `ApiError`; the app turns it into this body. Anything else
that escapes a handler becomes a 500 of the same shape with a one-line message and no
traceback (the traceback goes to the server's stderr), and the server goes on serving.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

INVALID = "invalid_request_error"


class ApiError(Exception):
    """A request the server refuses: STATUS, and the fields of OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type: str = INVALID,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param, code)


def server_error(message: str = "the server failed on this request; it goes on serving") -> ApiError:
    return ApiError(500, message, type="server_error", code="internal_error")
