"""Health, readiness, Prometheus metrics, JSON access logs, and trace continuity."""

from __future__ import annotations

import json
import logging
import re

import httpx
import openai
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from demur import ServerError
from demur.server.auth import key_id
from tests.server.conftest import KEY, running, scripted_router
from tests.server.test_auth_and_limits import ask, request_lines

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text page (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-z_]+)(\{.*\})? (\S+)", line)
        assert match, f"not a Prometheus sample line: {line!r}"
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if match.group(1) == name and found == labels:
            return float(match.group(3))
    return 0.0


def test_health_and_readiness(gateway):
    health = httpx.get(f"{gateway.url}/healthz", timeout=5)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "models": ["weak", "strong"]}


def test_readiness_is_503_while_draining(gateway):
    gateway._server.gateway.begin_drain()
    assert httpx.get(f"{gateway.url}/readyz", timeout=5).status_code == 503
    assert httpx.get(f"{gateway.url}/healthz", timeout=5).status_code == 200


def test_metrics_count_requests_latency_and_decisions(gateway):
    for _ in range(3):
        assert ask(gateway).status_code == 200
    assert ask(gateway, "sk-wrong").status_code == 401
    httpx.get(f"{gateway.url}/no/such/page", timeout=5)
    page = httpx.get(f"{gateway.url}/metrics", timeout=5)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = page.text
    chat = {"method": "POST", "path": "/v1/chat/completions"}
    assert metric(text, "demur_gateway_requests_total", **chat, status="200") == 3
    assert metric(text, "demur_gateway_requests_total", **chat, status="401") == 1
    assert metric(text, "demur_gateway_requests_total", method="GET", path="other", status="404")
    path = {"path": "/v1/chat/completions"}
    assert metric(text, "demur_gateway_request_duration_seconds_count", **path) == 4
    assert metric(text, "demur_gateway_request_duration_seconds_bucket", **path, le="+Inf") == 4
    assert metric(text, "demur_gateway_request_duration_seconds_sum", **path) > 0
    assert metric(text, "demur_gateway_decisions_total", action="accept", status="answered") == 3
    assert metric(text, "demur_gateway_confidence_bucket", le="0.9") == 3
    assert metric(text, "demur_gateway_in_flight_requests") == 1  # this very request
    assert "# TYPE demur_gateway_request_duration_seconds histogram" in text


def test_metrics_can_require_a_key():
    with running(scripted_router(), metrics_require_auth=True) as server:
        assert httpx.get(f"{server.url}/metrics", timeout=5).status_code == 401
        headers = {"Authorization": f"Bearer {KEY}"}
        assert httpx.get(f"{server.url}/metrics", headers=headers, timeout=5).status_code == 200


def test_one_json_log_line_per_request(caplog):
    caplog.set_level(logging.INFO, logger="demur.server")
    provider, _ = traced()
    with running(scripted_router(tracer_provider=provider), tracer_provider=provider) as server:
        response = ask(server)
        httpx.get(f"{server.url}/healthz", timeout=5)
        lines = request_lines(caplog, 2)
    assert len(lines) == 2
    chat, health = lines
    assert chat["event"] == "request" and chat["level"] == "info"
    assert chat["method"] == "POST" and chat["path"] == "/v1/chat/completions"
    assert chat["status"] == 200 and chat["duration_ms"] > 0
    assert chat["key_id"] == key_id(KEY)
    assert chat["trace_id"] == response.headers["x-demur-trace-id"]
    assert chat["action"] == "accept"
    assert chat["request_id"] == response.json()["id"]
    assert chat["client"] == "127.0.0.1"
    assert health["path"] == "/healthz" and "action" not in health
    json.dumps(chat)  # a JSON line, whatever the fields


# --- trace continuity ------------------------------------------------------------------------


def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_demur_spans_nest_under_the_callers_span():
    provider, exporter = traced()
    router = scripted_router(tracer_provider=provider)
    caller = provider.get_tracer("caller")
    with (
        running(router, tracer_provider=provider) as server,
        caller.start_as_current_span("client call") as parent,
    ):
        headers: dict[str, str] = {}
        propagate.inject(headers)
        client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=10)
        raw = client.chat.completions.with_raw_response.create(
            model="demur", messages=QUESTION, extra_headers=headers
        )
    context = parent.get_span_context()
    trace_id = format(context.trace_id, "032x")
    assert raw.headers["x-demur-trace-id"] == trace_id
    assert (raw.parse().model_extra or {})["demur"]["trace_id"] == trace_id
    spans = {s.name: s for s in exporter.get_finished_spans()}
    server_span = spans["POST /v1/chat/completions"]
    assert server_span.kind == SpanKind.SERVER
    assert server_span.parent is not None and server_span.parent.span_id == context.span_id
    assert server_span.attributes["http.response.status_code"] == 200
    assert server_span.attributes["demur.key_id"] == key_id(KEY)
    route = spans["demur.route"]
    assert route.parent is not None and route.parent.span_id == server_span.context.span_id
    demur_spans = [s for s in exporter.get_finished_spans() if s.name != "client call"]
    assert {"demur.attempt", "chat weak", "chat strong"} <= set(spans)
    assert any(e.name == "demur.decision" for e in route.events)
    assert all(s.context.trace_id == context.trace_id for s in demur_spans)


def test_a_bare_traceparent_header_is_honoured_even_with_a_no_op_gateway_tracer():
    provider, exporter = traced()
    router = scripted_router(tracer_provider=provider)
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with running(router) as server:  # the gateway's own tracer is the global no-op one
        response = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "demur", "messages": QUESTION},
            headers={
                "Authorization": f"Bearer {KEY}",
                "traceparent": f"00-{trace_id}-{span_id}-01",
            },
            timeout=10,
        )
    assert response.headers["x-demur-trace-id"] == trace_id
    route = next(s for s in exporter.get_finished_spans() if s.name == "demur.route")
    assert route.parent is not None and format(route.parent.span_id, "016x") == span_id


def test_without_traceparent_each_request_starts_its_own_trace():
    provider, _ = traced()
    router = scripted_router(tracer_provider=provider)
    with running(router, tracer_provider=provider) as server:
        ids = {ask(server).headers["x-demur-trace-id"] for _ in range(3)}
    assert len(ids) == 3


def test_the_server_span_records_an_upstream_failure_as_an_error():
    provider, exporter = traced()
    failing = ServerError("HTTP 500 from http://10.0.0.7/v1", model="weak")
    router = scripted_router(failing, failing, tracer_provider=provider)
    with running(router, tracer_provider=provider) as server:
        response = ask(server)
    assert response.status_code == 502
    span = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert span.attributes["http.response.status_code"] == 502
    assert span.status.status_code == StatusCode.ERROR
    assert "10.0.0.7" not in response.text  # upstream addresses stay in the server's log
