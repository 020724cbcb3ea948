"""Reading a chat completion request: the body (size-limited JSON), its schema, and the query
it asks the router; every problem becomes a 400, 413, 415 or 422 `ApiError` that names the
field."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request

from demur.server.errors import ApiError
from demur.server.openai_schema import ChatCompletionRequest, RequestProblem
from demur.types import Query
from demur.web.limits import BadContentLength, BodyTooLarge, declared_length, read_limited
from demur.web.strict_json import JsonRefused, loads

_TYPE_TAG = re.compile(r"^(str|int|float|bool|none|list\[.*\]|dict\[.*\]|function-.*)$")


def check_json_type(content_type: str | None) -> None:
    """415 unless the body is declared as JSON in UTF-8.

    Browsers send `text/plain` and form types cross-site without asking first, so insisting
    on `application/json` keeps a web page from posting questions on a visitor's behalf.
    """
    media, _, params = (content_type or "").partition(";")
    charset = params.strip().lower().removeprefix("charset=").strip('"') if params else ""
    if media.strip().lower() != "application/json" or charset not in ("", "utf-8"):
        shown = (content_type or "no Content-Type")[:100]
        raise ApiError(
            415,
            f"the request body must be sent as 'Content-Type: application/json' (UTF-8), "
            f"not {shown!r}",
            code="unsupported_media_type",
        )


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, read up to `limit` bytes."""
    check_json_type(request.headers.get("content-type"))
    try:
        declared = declared_length(request.headers.get("content-length"))
        raw = await read_limited(request.stream(), limit, declared)
    except BadContentLength as exc:
        raise ApiError(400, str(exc), code="invalid_content_length") from None
    except BodyTooLarge as exc:
        raise ApiError(413, str(exc), code="request_too_large") from None
    if not raw.strip():
        raise ApiError(400, "the request body is empty; send a JSON chat completion request")
    try:
        body = loads(raw)
    except JsonRefused as exc:
        message = f"the request body is not valid JSON: {exc}"
        raise ApiError(400, message, code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(
            400,
            f"the request body must be a JSON object, got {type(body).__name__}",
            code="invalid_json",
        )
    return body


def parse_chat(body: dict[str, Any]) -> ChatCompletionRequest:
    """The chat completion request in `body`; 422 naming the first bad field."""
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        raise schema_error(exc) from None


def query_of(parsed: ChatCompletionRequest, request_id: str) -> Query:
    """The question the request asks; 400 when the gateway cannot answer it, 422 when invalid."""
    try:
        return parsed.to_query(request_id)
    except RequestProblem as exc:
        raise ApiError(400, str(exc), param=exc.param, code=exc.code) from None
    except ValidationError as exc:
        raise schema_error(exc) from None


def schema_error(exc: ValidationError) -> ApiError:
    """A 422 listing the first problems, each at its field's path (`messages[0].content`)."""
    problems = []
    param = None
    for error in exc.errors():
        where = ""
        for part in error["loc"]:
            if isinstance(part, int):
                where += f"[{part}]"
            elif not _TYPE_TAG.match(str(part)):
                where += f".{part}" if where else str(part)
        param = param or where or None
        given = error.get("input")
        shown = "" if isinstance(given, dict | list) or given is None else f" (got {given!r})"
        problems.append(f"{where or 'body'}: {error['msg']}{shown}")
    return ApiError(
        422, "invalid request: " + "; ".join(problems[:5]), param=param, code="invalid_value"
    )


__all__ = ["check_json_type", "parse_chat", "query_of", "read_json", "schema_error"]
