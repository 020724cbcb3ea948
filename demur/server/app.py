"""The gateway: an OpenAI-compatible HTTP API whose every answer is a router's verdict.

    app = create_app(router, ServerSettings(api_keys=("sk-local",)))
    # serve it with demur.server.serve(...), `demur serve`, or any ASGI server

Endpoints: `POST /v1/chat/completions` (streaming included), `GET /v1/models`,
`GET /v1/models/{id}`, `GET /v1/demur/tickets/{id}` (a hand-off's answer, see
`demur.server.tickets`), `GET /healthz` (liveness), `GET /readyz` (readiness: 503 until the
models are loaded, and while draining; see `demur.server.lifecycle`), `GET /metrics`
(Prometheus text).

A request's `model` picks the ladder: the gateway's name ("demur") is the configured one, a
model's name starts it at that model (`demur.server.ladders`).

What a request gets back:

| outcome | status |
|---|---|
| the router accepted an answer (first model or an escalation) | 200, the answer |
| the policy abstained on an answer it did not trust | 200, the abstention message |
| a person will answer (ask_human) | 200, finish_reason "human_review"; `demur.poll` |
| every model attempt failed, the last by timing out or the route's deadline | 504 |
| every model attempt failed otherwise (5xx, refused connection, bad key upstream) | 502 |
| the route did not finish within `route_timeout_s` | 504 |
| the question fits no model's context window | 400 `context_length_exceeded` |
| malformed JSON / schema error / unsupported request | 400 / 422 (field in `param`) / 400 |
| a generation setting out of range or not supported | 400, the field in `param` |
| `model` is not one of `GET /v1/models` | 404 `model_not_found` |
| missing or wrong API key | 401 |
| body over `max_body_bytes` | 413 |
| over the key's rate limit / over `max_in_flight` | 429 / 503, with Retry-After |
| the router raised (a policy or backend bug; details in the log) | 500 `route_error` |
| the gateway is draining, or its drain window ended mid-route | 503 `shutting_down` |
| unknown path / wrong method | 404 / 405 |
| a body not sent as `application/json` | 415 `unsupported_media_type` |
| a `Host` not allowed / a browser `Origin` not in `cors_origins` | 421 / 403 |
| too many failed authentications from the client's address | 429, with Retry-After |
| headers or body too slow / headers too large / every connection busy | 408 / 431 / 503 |

So an abstention is a normal answer (the router worked and chose not to answer), while a
route in which no model answered at all is an upstream failure, reported as one; a policy
whose ladder ends with a person still hands such a question over (200, pending). Error bodies
follow OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, plus `demur` when
a route ran.

Steps report a stable `reason_code` and a reason without internals (`demur.server.reasons`).
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
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from demur._version import __version__
from demur.errors import ContextOverflowError, DemurError, InvalidQueryError
from demur.router.router import Router
from demur.server.auth import ApiKeys, AuthFailures
from demur.server.errors import HANDLERS, JSON, ApiError, refusal
from demur.server.ladders import Ladders
from demur.server.lifecycle import Drain, WarmUp
from demur.server.metrics import CONTENT_TYPE, GatewayMetrics
from demur.server.observe import Observe, request_log
from demur.server.openai_schema import (
    AssistantMessage,
    ChatCompletion,
    Choice,
    CompletionUsage,
    DemurInfo,
    ModelCard,
    ModelList,
)
from demur.server.parsing import parse_chat, query_of, read_json
from demur.server.reasons import internal_details
from demur.server.responses import (
    demur_headers,
    json_response,
    reply,
    sse_events,
    upstream_failure,
)
from demur.server.settings import ServerSettings
from demur.server.tickets import idempotency_key, owner_of, ticket_answer
from demur.types import Query, Verdict
from demur.web.guard import RequestGuard
from demur.web.limits import RateLimiter

logger = logging.getLogger("demur.server")

CHAT_PATH = "/v1/chat/completions"
TICKETS_PATH = "/v1/demur/tickets"
_PATHS = {CHAT_PATH, "/v1/models", "/healthz", "/readyz", "/metrics"}
_DEADLINE_GRACE_S = 5.0
# What a web app allowed by `cors_origins` may read of a response besides the body.
_EXPOSED_HEADERS = (
    "x-request-id",
    "x-demur-action",
    "x-demur-status",
    "x-demur-confidence",
    "x-demur-model",
    "x-demur-trace-id",
    "x-demur-ticket-id",
    "retry-after",
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
        self.auth_failures = AuthFailures(
            settings.auth_failure_rate_per_s, settings.auth_failure_burst
        )
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
        self.ladders = Ladders(router, settings.model_name)
        self.warm_up = WarmUp(router.models)
        self.drain = Drain(settings.shutdown_timeout_s)
        self.routing = 0

    @property
    def ready(self) -> bool:
        """Whether /readyz says ready: the models are loaded and the gateway is not draining."""
        return self.warm_up.state == "ready" and not self.drain.active

    @property
    def draining(self) -> bool:
        return self.drain.active

    def begin_drain(self) -> None:
        """Stop taking questions (503) and let the routes in flight finish; see Drain."""
        self.drain.begin()

    # --- plain endpoints ---------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if self.draining:
            return json_response({"status": "draining", "in_flight": self.drain.in_flight}, 503)
        if self.warm_up.state == "failed":
            failed = {"status": "failed", "model": self.warm_up.failed}
            return json_response({**failed, "message": "a model failed to load; see the log"}, 503)
        if self.warm_up.state == "starting":
            return json_response({"status": "starting", "message": "loading the models"}, 503)
        return json_response({"status": "ready", "models": list(self.router.models)})

    async def metrics_page(self, request: Request) -> Response:
        if self.settings.metrics_require_auth:
            self.authenticate(request)
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    def _cards(self) -> list[ModelCard]:
        return [
            ModelCard(id=name, created=self.created, owned_by="demur")
            for name in self.ladders.names
        ]

    async def list_models(self, request: Request) -> Response:
        self.authenticate(request)
        return json_response(ModelList(data=self._cards()).model_dump())

    async def get_model(self, request: Request) -> Response:
        self.authenticate(request)
        wanted = request.path_params["model"]
        for card in self._cards():
            if card.id == wanted:
                return json_response(card.model_dump())
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
        client = request.client.host if request.client else "unknown"
        self.auth_failures.check(client)
        found = self.keys.check(request.headers.get("authorization"))
        if found is None:
            self.auth_failures.record(client)
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
        request_log(request)["key_id"] = found
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

    # --- chat completions --------------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        key = self.authenticate(request)
        self.limit_rate(request, key)
        self.drain.refuse_new()
        parsed = parse_chat(await read_json(request, self.settings.max_body_bytes))
        router = self.ladders.get(parsed.model)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        log = request_log(request)
        log["request_id"] = request_id
        query = query_of(parsed, request_id)
        ticket_key = idempotency_key(request.headers, owner_of(key), request_id)
        metadata = {**query.metadata, "idempotency_key": ticket_key}
        query = query.model_copy(update={"metadata": metadata})
        limit = self.settings.max_in_flight
        if limit is not None and self.routing >= limit:
            raise ApiError(
                503,
                f"the gateway is answering {limit} questions already; retry shortly",
                type="server_error",
                code="overloaded",
                headers={"Retry-After": "1"},
            )
        verdict, failure = await self._route(request, query, router)
        info = DemurInfo.of(verdict)
        headers = demur_headers(verdict, request_id)
        log.update(trace_id=verdict.trace_id, action=verdict.action)
        for detail in internal_details(verdict.steps):
            logger.warning(
                "hand-off failed: %s", detail, extra={"demur": {"request_id": request_id}}
            )
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
        content, finish = reply(
            verdict,
            pending_message=self.settings.pending_message,
            abstain_message=self.router.abstain_message,
        )
        usage = CompletionUsage.of(verdict)
        model = parsed.model
        if parsed.stream:
            include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
            events = sse_events(request_id, model, content, finish, info, usage, include_usage)
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
        return Response(completion.model_dump_json(), headers=headers, media_type=JSON)

    async def _route(
        self, request: Request, query: Query, router: Router
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
        key = request_log(request).get("key_id")
        if key:
            span.set_attribute("demur.key_id", key)
        token = otel_context.attach(ctx)
        self.routing += 1
        status = 500  # until known otherwise: an unexpected exception is a server error
        try:
            with self.drain.route():
                async with asyncio.timeout(self.route_timeout_s):
                    verdict = await router.aroute(query)
            failure = upstream_failure(verdict)
            status = 200 if failure is None else failure[0]
            if failure is not None:
                logger.warning(
                    "no model answered: %s",
                    "; ".join(f"{s.model}: {s.error}" for s in verdict.steps),
                )
        except ApiError as exc:  # cut off by the drain
            status = exc.status
            raise
        except TimeoutError:
            status = 504
            trace_id = _hex_trace(span)
            request_log(request)["trace_id"] = trace_id
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

    # --- hand-offs ---------------------------------------------------------------------------

    async def get_ticket(self, request: Request) -> Response:
        """A hand-off's state, and the person's answer once given (only to the key that asked)."""
        owner = owner_of(self.authenticate(request))
        answer = await ticket_answer(self.router.queue, request.path_params["ticket_id"], owner)
        return Response(answer.model_dump_json(), media_type=JSON)

    # --- the app -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette, *, owns_router: bool) -> AsyncIterator[None]:
        self.warm_up.start()
        try:
            yield
        finally:
            self.begin_drain()
            await self.warm_up.stop()
            if owns_router:
                await self.router.aclose()


def _hex_trace(span: trace.Span) -> str | None:
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


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
        Route(TICKETS_PATH + "/{ticket_id}", gateway.get_ticket, methods=["GET"]),
        Route("/healthz", gateway.healthz, methods=["GET"]),
        Route("/readyz", gateway.readyz, methods=["GET"]),
        Route("/metrics", gateway.metrics_page, methods=["GET"]),
    ]

    def lifespan(app: Starlette) -> contextlib.AbstractAsyncContextManager[None]:
        return gateway.lifespan(app, owns_router=owns_router)

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(Observe, metrics=gateway.metrics, paths=_PATHS),
            Middleware(
                RequestGuard,
                hosts=settings.host_names(settings.host),
                refuse=refusal,
                origins=settings.cors_origins,
                expose_headers=_EXPOSED_HEADERS,
                logger="demur.server",
            ),
        ],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app


__all__ = ["CHAT_PATH", "TICKETS_PATH", "Gateway", "create_app"]
