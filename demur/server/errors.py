"""The gateway's error responses: `ApiError`, in OpenAI's shape, and the app's exception
handlers (unknown paths and methods, ApiError, a client gone mid-request, and anything else
as a 500)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from demur.server.openai_schema import DemurInfo, ErrorBody, ErrorDetail

logger = logging.getLogger("demur.server")

JSON = "application/json"

Handler = Callable[[Request, Exception], Awaitable[Response]]


class ApiError(Exception):
    """An error response in OpenAI's shape, raised anywhere in a request's handling."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        demur: DemurInfo | None = None,
    ) -> None:
        self.status = status
        self.detail = ErrorDetail(message=message, type=type, param=param, code=code)
        self.headers = dict(headers or {})
        self.demur = demur
        super().__init__(message)

    def response(self) -> Response:
        body = ErrorBody(error=self.detail, demur=self.demur)
        return Response(
            body.model_dump_json(exclude={"demur"} if self.demur is None else None),
            status_code=self.status,
            headers=self.headers,
            media_type=JSON,
        )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"no route {request.url.path}", 405: f"method {request.method} not allowed"}
    error = ApiError(
        exc.status_code,
        message.get(exc.status_code, str(exc.detail)),
        code="not_found" if exc.status_code == 404 else None,
        headers=exc.headers,
    )
    return error.response()


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client hung up before its request was read: nobody will read this answer.
    logger.info("the client disconnected before sending the whole request")
    return ApiError(
        400, "the client disconnected before sending the whole request", code="client_disconnected"
    ).response()


def refusal(status: int, message: str, code: str) -> Response:
    """An error the gateway answers before any endpoint runs (wrong host, other origin)."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return ApiError(status, message, type=kind, code=code).response()


def connection_refusal(status: int, message: str) -> tuple[str, bytes]:
    """The body of a 408, 431 or 503 that the server writes on the connection itself."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    code = {408: "request_timeout", 431: "headers_too_large", 503: "too_many_connections"}
    error = ErrorBody(error=ErrorDetail(message=message, type=kind, code=code.get(status)))
    return JSON, error.model_dump_json(exclude={"demur"}).encode()


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return ApiError(
        500, "internal error; the server log has the details", type="server_error"
    ).response()


HANDLERS: dict[type[Exception], Handler] = {
    ApiError: _api_error,
    HTTPException: _http_error,
    ClientDisconnect: _client_gone,
    Exception: _internal_error,
}

__all__ = ["HANDLERS", "JSON", "ApiError", "connection_refusal", "refusal"]
