"""The gateway: an OpenAI-compatible HTTP API whose every answer is a router's verdict.

    app = create_app(router, ServerSettings(api_keys=("sk-local",)))
    # serve it with demur.server.serve(...), `demur serve`, or any ASGI server

Endpoints: `POST /v1/chat/completions` (streaming included), `GET /v1/models`,
`GET /v1/models/{id}`, `GET /healthz` (liveness), `GET /readyz` (readiness: 503 while
starting or draining), `GET /metrics` (Prometheus text).

What a request gets back:

| outcome | status |
|---|---|
| the router accepted an answer (first model or an escalation) | 200, the answer |
| the policy abstained on an answer it did not trust | 200, the abstention message |
| a person will answer (ask_human) | 200, a message naming the ticket; `demur.ticket_id` |
| every model attempt failed, the last by timing out or the route's deadline | 504 |
| every model attempt failed otherwise (5xx, refused connection, bad key upstream) | 502 |
| the route did not finish within `route_timeout_s` | 504 |
| the question fits no model's context window | 400 `context_length_exceeded` |
| malformed JSON / schema error / unsupported request | 400 / 422 (field in `param`) / 400 |
| missing or wrong API key | 401 |
| body over `max_body_bytes` | 413 |
| over the key's rate limit / over `max_in_flight` | 429 / 503, with Retry-After |
| the router raised (a policy or backend bug; details in the log) | 500 `route_error` |
| unknown path / wrong method | 404 / 405 |

So an abstention is a normal answer (the router worked and chose not to answer), while a
route in which no model answered at all is an upstream failure, reported as one; a policy
whose ladder ends with a person still hands such a question over (200, pending). Error bodies
follow OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, plus `demur` when
a route ran.

Every routed response carries `x-demur-action`, `x-demur-status`, `x-demur-confidence`,
`x-demur-model`, `x-demur-trace-id` and, when pending, `x-demur-ticket-id`; the body's
`demur` field holds the same and a summary of each step. With `stream: true` the gateway
routes first and then streams the gated text as SSE chunks (`data: {...}` and finally
`data: [DONE]`): no text leaves before the policy has accepted it, and the chunk with
`finish_reason` carries `demur`. A W3C `traceparent` header makes the request's span, and
demur's route under it, children of the caller's span.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import ValidationError

from demur._version import __version__
from demur.errors import ContextOverflowError, DemurError, InvalidQueryError, MissingDependencyError
from demur.router.router import Router
from demur.server.auth import ApiKeys
from demur.server.metrics import CONTENT_TYPE, GatewayMetrics
from demur.server.openai_schema import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    CompletionUsage,
    Delta,
    DemurInfo,
    ErrorBody,
    ErrorDetail,
    ModelCard,
    ModelList,
    RequestProblem,
)
from demur.server.settings import ServerSettings
from demur.types import Query, Verdict
from demur.web.limits import (
    BadContentLength,
    BodyTooLarge,
    RateLimiter,
    declared_length,
    read_limited,
)

try:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError:
    raise MissingDependencyError("starlette", "server", "The demur gateway") from None

logger = logging.getLogger("demur.server")

CHAT_PATH = "/v1/chat/completions"
_PATHS = {CHAT_PATH, "/v1/models", "/healthz", "/readyz", "/metrics"}
_LOG_KEY = "demur.log"  # per-request fields the endpoint leaves for the access log
_TIMEOUTS = {"ModelTimeoutError", "DeadlineExceededError"}
_DEADLINE_GRACE_S = 5.0
_TYPE_TAG = re.compile(r"^(str|int|float|bool|none|list\[.*\]|dict\[.*\]|function-.*)$")
_JSON = "application/json"


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
            media_type=_JSON,
        )


class Gateway:
    """The gateway's state and endpoints: one router, its settings, keys, limits, metrics."""

    def __init__(
        self,
        router: Router,
        settings: ServerSettings,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.router = router
        self.settings = settings
        keys = settings.resolved_keys(environ)
        settings.check_exposure(keys)
        self.keys = ApiKeys(keys)
        self.limiter = (
            RateLimiter(settings.rate_limit_rps, settings.burst)
            if settings.rate_limit_rps is not None
            else None
        )
        self.metrics = GatewayMetrics()
        self.tracer = trace.get_tracer("demur.server", __version__, tracer_provider)
        self.route_timeout_s = settings.route_timeout_s or (
            router.budget.deadline_s + _DEADLINE_GRACE_S
        )
        self.created = int(time.time())
        self.ready = False
        self.draining = False
        self.routing = 0

    # --- plain endpoints ---------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if self.draining:
            return _json({"status": "draining"}, 503)
        if not self.ready:
            return _json({"status": "starting"}, 503)
        return _json({"status": "ready", "models": list(self.router.models)})

    async def metrics_page(self, request: Request) -> Response:
        if self.settings.metrics_require_auth:
            self.authenticate(request)
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    def _cards(self) -> list[ModelCard]:
        names = [self.settings.model_name, *(m for m in self.router.models)]
        return [
            ModelCard(id=name, created=self.created, owned_by="demur")
            for name in dict.fromkeys(names)
        ]

    async def list_models(self, request: Request) -> Response:
        self.authenticate(request)
        return _json(ModelList(data=self._cards()).model_dump())

    async def get_model(self, request: Request) -> Response:
        self.authenticate(request)
        wanted = request.path_params["model"]
        for card in self._cards():
            if card.id == wanted:
                return _json(card.model_dump())
        raise ApiError(
            404,
            f"the model '{wanted}' does not exist here; GET /v1/models lists what this "
            "gateway serves",
            code="model_not_found",
            param="model",
        )

    # --- auth and limits ---------------------------------------------------------------------

    def authenticate(self, request: Request) -> str | None:
        """The caller's key id (None when authentication is off); 401 when not allowed."""
        if not self.keys:
            return None
        found = self.keys.check(request.headers.get("authorization"))
        if found is None:
            given = "authorization" in request.headers
            raise ApiError(
                401,
                "Incorrect API key provided."
                if given
                else "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.",
                type="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        _log(request)["key_id"] = found
        return found

    def limit_rate(self, request: Request, key: str | None) -> None:
        if self.limiter is None:
            return
        who = key or f"addr-{request.client.host if request.client else 'unknown'}"
        wait = self.limiter.acquire(who)
        if wait > 0:
            seconds = max(1, int(wait + 0.999))
            raise ApiError(
                429,
                f"rate limit of {self.settings.rate_limit_rps:g} requests/s "
                f"(bursts of {self.settings.burst}) reached; retry after {seconds}s",
                type="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(seconds)},
            )

    async def read_json(self, request: Request) -> dict[str, Any]:
        limit = self.settings.max_body_bytes
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
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            message = f"the request body is not valid JSON: {exc}"
            raise ApiError(400, message, code="invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(
                400,
                f"the request body must be a JSON object, got {type(body).__name__}",
                code="invalid_json",
            )
        return body

    # --- chat completions --------------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        key = self.authenticate(request)
        self.limit_rate(request, key)
        body = await self.read_json(request)
        try:
            parsed = ChatCompletionRequest.model_validate(body)
        except ValidationError as exc:
            raise _schema_error(exc) from None
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        log = _log(request)
        log["request_id"] = request_id
        try:
            query = parsed.to_query(request_id)
        except RequestProblem as exc:
            raise ApiError(400, str(exc), param=exc.param, code=exc.code) from None
        except ValidationError as exc:
            raise _schema_error(exc) from None
        limit = self.settings.max_in_flight
        if limit is not None and self.routing >= limit:
            raise ApiError(
                503,
                f"the gateway is answering {limit} questions already; retry shortly",
                type="server_error",
                code="overloaded",
                headers={"Retry-After": "1"},
            )
        verdict, failure = await self._route(request, query)
        info = DemurInfo.of(verdict)
        headers = _demur_headers(verdict, request_id)
        log.update(trace_id=verdict.trace_id, action=verdict.action)
        self.metrics.decision(verdict.action, verdict.status, verdict.confidence)
        if failure is not None:
            status, message = failure
            raise ApiError(
                status,
                message,
                type="upstream_error",
                code="upstream_timeout" if status == 504 else "upstream_error",
                headers=headers,
                demur=info,
            )
        content, finish = self._content(verdict)
        usage = CompletionUsage.of(verdict)
        model = parsed.model
        if parsed.stream:
            include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
            events = _sse_events(request_id, model, content, finish, info, usage, include_usage)
            headers["Cache-Control"] = "no-cache"
            return StreamingResponse(events, headers=headers, media_type="text/event-stream")
        completion = ChatCompletion(
            id=request_id,
            created=int(time.time()),
            model=model,
            choices=[Choice(message=AssistantMessage(content=content), finish_reason=finish)],
            usage=usage,
            demur=info,
        )
        return Response(completion.model_dump_json(), headers=headers, media_type=_JSON)

    async def _route(
        self, request: Request, query: Query
    ) -> tuple[Verdict, tuple[int, str] | None]:
        """The verdict, routed under the caller's trace context and the gateway's time limit,
        and (status, message) when no model answered at all."""
        parent = propagate.extract(request.headers)
        span = self.tracer.start_span(
            f"POST {CHAT_PATH}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": "POST", "url.path": CHAT_PATH},
        )
        # A no-op tracer gives an invalid span: then demur's spans nest under the caller's.
        valid = span.get_span_context().is_valid
        ctx = trace.set_span_in_context(span, parent) if valid else parent
        key = _log(request).get("key_id")
        if key:
            span.set_attribute("demur.key_id", key)
        token = otel_context.attach(ctx)
        self.routing += 1
        status = 500  # until known otherwise: an unexpected exception is a server error
        try:
            async with asyncio.timeout(self.route_timeout_s):
                verdict = await self.router.aroute(query)
            failure = _upstream_failure(verdict)
            status = 200 if failure is None else failure[0]
            if failure is not None:
                logger.warning(
                    "no model answered: %s",
                    "; ".join(f"{s.model}: {s.error}" for s in verdict.steps),
                )
        except TimeoutError:
            status = 504
            trace_id = _hex_trace(span)
            _log(request)["trace_id"] = trace_id
            raise ApiError(
                504,
                f"the route did not finish within {self.route_timeout_s:g}s; the models are "
                "slow or overloaded, retry later",
                type="upstream_error",
                code="route_timeout",
                headers={"x-demur-trace-id": trace_id} if trace_id else None,
            ) from None
        except ContextOverflowError as exc:
            status = 400
            raise ApiError(
                400, str(exc), code="context_length_exceeded", param="messages"
            ) from None
        except InvalidQueryError as exc:
            status = 400
            raise ApiError(400, str(exc), param="messages") from None
        except DemurError as exc:
            logger.error("route failed: %s: %s", type(exc).__name__, exc)
            raise ApiError(
                500,
                f"the router could not produce a verdict ({type(exc).__name__}); "
                "the server log has the details",
                type="server_error",
                code="route_error",
            ) from None
        finally:
            self.routing -= 1
            otel_context.detach(token)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
        return verdict, failure

    def _content(self, verdict: Verdict) -> tuple[str, str]:
        """The text the client sees and its finish_reason."""
        if verdict.status == "answered":
            finish = "stop"
            for step in reversed(verdict.steps):
                candidate = step.candidate
                if candidate is not None and step.model == verdict.model:
                    if candidate.finish_reason == "length":
                        finish = "length"
                    break
            return verdict.text, finish
        if verdict.status == "pending":
            message = self.settings.pending_message
            return message.replace("{ticket_id}", verdict.ticket_id or ""), "stop"
        return verdict.text or self.router.abstain_message, "stop"

    # --- the app -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette, *, owns_router: bool) -> AsyncIterator[None]:
        self.ready = True
        try:
            yield
        finally:
            self.ready = False
            if owns_router:
                await self.router.aclose()


def _json(content: Any, status: int = 200) -> Response:
    return Response(json.dumps(content), status_code=status, media_type=_JSON)


def _log(request: Request) -> dict[str, Any]:
    fields: dict[str, Any] = request.scope.setdefault(_LOG_KEY, {})
    return fields


def _hex_trace(span: trace.Span) -> str | None:
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def _schema_error(exc: ValidationError) -> ApiError:
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


def _upstream_failure(verdict: Verdict) -> tuple[int, str] | None:
    """(status, message) when no model answered at all, else None (a verdict to return)."""
    if verdict.status != "abstained" or not verdict.steps:
        return None
    if any(step.candidate is not None for step in verdict.steps):
        return None
    last = verdict.steps[-1]
    failures = ", ".join(f"{s.model}: {s.error_type}" for s in verdict.steps)
    if last.error_type in _TIMEOUTS:
        return 504, f"no model answered in time ({failures}); retry later"
    return 502, f"no model could answer ({failures}); the upstream is failing, retry later"


def _demur_headers(verdict: Verdict, request_id: str) -> dict[str, str]:
    headers = {
        "x-request-id": request_id,
        "x-demur-action": verdict.action,
        "x-demur-status": verdict.status,
    }
    if verdict.confidence is not None:
        headers["x-demur-confidence"] = f"{verdict.confidence:.6f}"
    if verdict.model is not None:
        headers["x-demur-model"] = verdict.model
    if verdict.trace_id is not None:
        headers["x-demur-trace-id"] = verdict.trace_id
    if verdict.ticket_id is not None:
        headers["x-demur-ticket-id"] = verdict.ticket_id
    return headers


_PIECES = re.compile(r"\S*\s*")


async def _sse_events(
    request_id: str,
    model: str,
    content: str,
    finish: str,
    info: DemurInfo,
    usage: CompletionUsage,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """The gated text as OpenAI chat.completion.chunk events, a word at a time."""
    created = int(time.time())

    def event(choices: list[ChunkChoice], **extra: Any) -> bytes:
        chunk = ChatCompletionChunk(
            id=request_id, created=created, model=model, choices=choices, **extra
        )
        skip = {name for name in ("usage", "demur") if getattr(chunk, name) is None}
        if include_usage:
            skip.discard("usage")  # OpenAI sends usage: null on every chunk but the last
        return b"data: " + chunk.model_dump_json(exclude=skip).encode() + b"\n\n"

    yield event([ChunkChoice(delta=Delta(role="assistant", content=""))])
    for piece in filter(None, _PIECES.findall(content)):
        yield event([ChunkChoice(delta=Delta(content=piece))])
    yield event([ChunkChoice(delta=Delta(), finish_reason=finish)], demur=info)
    if include_usage:
        yield event([], usage=usage)
    yield b"data: [DONE]\n\n"


class _Observe:
    """Outermost middleware: one JSON log line and the metrics of every request."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        fields: dict[str, Any] = {}
        scope[_LOG_KEY] = fields
        status = 500
        metrics = self.gateway.metrics
        metrics.in_flight += 1

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            metrics.in_flight -= 1
            duration = time.perf_counter() - started
            path = scope["path"]
            label = path if path in _PATHS else "other"
            if path.startswith("/v1/models/"):
                label = "/v1/models/{model}"
            metrics.request(scope["method"], label, status, duration)
            if logger.isEnabledFor(logging.INFO):
                client = scope.get("client")
                record = {
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "duration_ms": round(duration * 1000, 3),
                    "client": client[0] if client else None,
                    **fields,
                }
                logger.info("request", extra={"demur": record})


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


def create_app(
    router: Router,
    settings: ServerSettings | None = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    owns_router: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Starlette:
    """The gateway as an ASGI app serving `router`.

    `tracer_provider` is for the gateway's own server span (the global provider by default;
    pass the router's). With `owns_router`, the router is closed when the app shuts down.
    API keys are read from `settings` and the environment (`environ`, default `os.environ`)
    now; ConfigError when there are none and the host is not loopback (see ServerSettings).
    """
    settings = settings or ServerSettings()
    gateway = Gateway(router, settings, tracer_provider=tracer_provider, environ=environ)
    routes = [
        Route(CHAT_PATH, gateway.chat_completions, methods=["POST"]),
        Route("/v1/models", gateway.list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", gateway.get_model, methods=["GET"]),
        Route("/healthz", gateway.healthz, methods=["GET"]),
        Route("/readyz", gateway.readyz, methods=["GET"]),
        Route("/metrics", gateway.metrics_page, methods=["GET"]),
    ]

    def lifespan(app: Starlette) -> contextlib.AbstractAsyncContextManager[None]:
        return gateway.lifespan(app, owns_router=owns_router)

    app = Starlette(
        routes=routes,
        middleware=[Middleware(_Observe, gateway=gateway)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app


__all__ = ["ApiError", "Gateway", "create_app"]
