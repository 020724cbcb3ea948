"""The gateway's error responses: `ApiError`, in OpenAI's shape, and the app's exception
handlers (unknown paths and methods, ApiError, and anything else as a 500)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
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


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return ApiError(
        500, "internal error; the server log has the details", type="server_error"
    ).response()


HANDLERS: dict[type[Exception], Handler] = {
    ApiError: _api_error,
    HTTPException: _http_error,
    Exception: _internal_error,
}

__all__ = ["HANDLERS", "JSON", "ApiError"]
