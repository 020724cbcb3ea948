"""configure_telemetry and its exporters: JSON lines, console, OTLP to a loopback receiver."""

from __future__ import annotations

import gzip
import json
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry._logs import _internal as logs_internal
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from demur import (
    Abstain,
    ConfigError,
    Escalate,
    Ladder,
    MeanTokenLogprob,
    MissingDependencyError,
    Price,
    Reply,
    Router,
    ScriptedModel,
    Verdict,
)
from demur._version import __version__
from demur.config import load_router
from demur.telemetry import JsonLinesSpanExporter, Telemetry, configure_telemetry

QUESTION = "Who wrote the novel Emma?"
ANSWER = "Jane Austen"

SPAN_FIELDS = {
    "name",
    "trace_id",
    "span_id",
    "parent_span_id",
    "kind",
    "start_time",
    "end_time",
    "duration_ms",
    "status",
    "attributes",
    "events",
    "links",
    "scope",
    "resource",
}


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without any OTEL_* setting from the machine running them."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def clean_globals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh, unset OpenTelemetry globals for this test, restored afterwards.

    OpenTelemetry lets a process set its global providers once; tests of set_global need a
    clean slate, so they swap the API's module state (as OpenTelemetry's own tests do).
    """
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(metrics_internal, "_METER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(metrics_internal, "_METER_PROVIDER", None)
    monkeypatch.setattr(
        metrics_internal, "_PROXY_METER_PROVIDER", metrics_internal._ProxyMeterProvider()
    )
    monkeypatch.setattr(logs_internal, "_LOGGER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(logs_internal, "_LOGGER_PROVIDER", None)
    monkeypatch.setattr(
        logs_internal, "_PROXY_LOGGER_PROVIDER", logs_internal.ProxyLoggerProvider()
    )


def make_router(telemetry: Telemetry | None = None) -> Router:
    weak = ScriptedModel("weak", [Reply.confident("Charlotte Bronte", 0.3)])
    strong = ScriptedModel(
        "strong", [Reply.confident(ANSWER, 0.95)], price=Price(input_per_1k=1.0, output_per_1k=2.0)
    )
    providers: dict[str, Any] = telemetry.providers if telemetry is not None else {}
    return Router(
        [weak, strong],
        policy=Ladder(threshold=0.6, rungs=[Escalate("strong"), Abstain()]),
        estimators=[MeanTokenLogprob()],
        **providers,
    )


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def sample_spans(count: int) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    for i in range(count):
        with tracer.start_as_current_span(f"span {i}", attributes={"i": i, "tags": ("a", "b")}):
            pass
    return list(memory.get_finished_spans())


# --- JSON lines ------------------------------------------------------------------------------


def test_jsonl_writes_one_json_object_per_span_after_a_real_route(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "today" / "traces.jsonl"
    with configure_telemetry("jsonl", path=path, set_global=False) as telemetry:
        assert path.exists()  # created at once, with its parent folders
        verdict = make_router(telemetry).route(QUESTION)
    assert telemetry.trace_path == path

    spans = read_lines(path)
    assert {s["name"] for s in spans} == {
        "demur.route",
        "demur.attempt",
        "chat weak",
        "chat strong",
    }
    for span in spans:
        assert set(span) == SPAN_FIELDS
        assert span["trace_id"] == verdict.trace_id
        assert len(span["span_id"]) == 16
        start = datetime.fromisoformat(span["start_time"])
        end = datetime.fromisoformat(span["end_time"])
        assert start.utcoffset() is not None and start.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        assert span["duration_ms"] == pytest.approx((end - start).total_seconds() * 1000, abs=0.01)
        assert span["resource"]["service.name"] == "demur"
        assert span["resource"]["service.version"] == __version__
        assert span["scope"] == {"name": "demur", "version": __version__}

    by_id = {s["span_id"]: s for s in spans}
    root = next(s for s in spans if s["name"] == "demur.route")
    assert root["parent_span_id"] is None
    assert root["attributes"]["demur.action"] == "accept"
    assert root["status"] == {"code": "UNSET", "description": None}
    chat = next(s for s in spans if s["name"] == "chat strong")
    assert chat["kind"] == "CLIENT"
    assert chat["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]
    assert by_id[chat["parent_span_id"]]["name"] == "demur.attempt"
    attempt = by_id[chat["parent_span_id"]]
    assert attempt["attributes"]["demur.score.mean_logprob"] == pytest.approx(0.95)
    decisions = [e for e in root["events"] if e["name"] == "demur.decision"]
    assert [d["attributes"]["demur.action"] for d in decisions] == ["escalate", "accept"]
    datetime.fromisoformat(decisions[0]["time"])

    # Each score's gen_ai.evaluation.result event, beside the spans, under the call it scored.
    assert telemetry.events_path == path.with_name("traces.events.jsonl")
    events = read_lines(telemetry.events_path)
    assert [e["event_name"] for e in events] == ["gen_ai.evaluation.result"] * 2
    event = next(e for e in events if e["span_id"] == chat["span_id"])
    assert event["trace_id"] == verdict.trace_id
    assert event["attributes"]["gen_ai.evaluation.name"] == "mean_logprob"
    assert event["attributes"]["gen_ai.evaluation.score.value"] == pytest.approx(0.95)
    assert event["resource"]["service.name"] == "demur"
    datetime.fromisoformat(event["time"])


def test_jsonl_metrics_land_beside_the_trace_file_at_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    telemetry = configure_telemetry("jsonl", path=path, set_global=False)
    router = make_router(telemetry)
    verdicts = [router.route(QUESTION) for _ in range(3)]
    telemetry.shutdown()

    assert telemetry.metrics_path == tmp_path / "traces.metrics.jsonl"
    lines = read_lines(tmp_path / "traces.metrics.jsonl")
    latest = {line["name"]: line for line in lines}
    assert set(latest) == {
        "demur.decisions",
        "demur.confidence",
        "demur.route.duration",
        "demur.route.cost",
    }
    decisions = {
        p["attributes"]["demur.action"]: p["value"]
        for p in latest["demur.decisions"]["data"]["data_points"]
    }
    assert decisions == {"escalate": 3, "accept": 3}
    assert latest["demur.decisions"]["type"] == "Sum"
    assert latest["demur.route.duration"]["type"] == "Histogram"
    (cost,) = latest["demur.route.cost"]["data"]["data_points"]
    assert cost["value"] == pytest.approx(sum(v.cost for v in verdicts))
    assert latest["demur.decisions"]["resource"]["service.name"] == "demur"
    span_lines = read_lines(path)
    exemplars = [
        e for p in latest["demur.decisions"]["data"]["data_points"] for e in p["exemplars"]
    ]
    assert exemplars, "the SDK samples exemplars from the active trace"
    trace_ids = {s["trace_id"] for s in span_lines}
    span_ids = {s["span_id"] for s in span_lines}
    assert all(e["trace_id"] in trace_ids and e["span_id"] in span_ids for e in exemplars)


def test_jsonl_without_metrics_writes_no_metrics_file(tmp_path: Path) -> None:
    with configure_telemetry(
        "jsonl", path=tmp_path / "t.jsonl", metrics=False, set_global=False
    ) as telemetry:
        make_router(telemetry).route(QUESTION)
    assert telemetry.meter_provider is None
    assert not (tmp_path / "t.metrics.jsonl").exists()
    assert read_lines(tmp_path / "t.jsonl")


def test_json_lines_exporter_appends_and_is_thread_safe(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_text('{"name": "from an earlier run"}\n', encoding="utf-8")
    exporter = JsonLinesSpanExporter(path)
    spans = sample_spans(5)

    def export_many() -> None:
        for _ in range(40):
            assert exporter.export(spans) is SpanExportResult.SUCCESS

    threads = [threading.Thread(target=export_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    exporter.shutdown()

    lines = read_lines(path)  # every line parses: no interleaved writes
    assert lines[0] == {"name": "from an earlier run"}
    assert len(lines) == 1 + 8 * 40 * 5
    assert lines[1]["attributes"] == {"i": 0, "tags": ["a", "b"]}
    assert exporter.export(spans) is SpanExportResult.FAILURE  # after shutdown


def test_none_exporter_keeps_trace_ids_but_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with configure_telemetry("none", set_global=False) as telemetry:
        verdict = make_router(telemetry).route(QUESTION)
    assert verdict.trace_id is not None and len(verdict.trace_id) == 32
    assert telemetry.meter_provider is None
    assert list(tmp_path.iterdir()) == []


# --- console ---------------------------------------------------------------------------------


def test_console_exporter_prints_spans_and_metrics_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with configure_telemetry("console", set_global=False) as telemetry:
        make_router(telemetry).route(QUESTION)
    printed = capsys.readouterr()
    assert printed.out == ""  # stdout stays free for answers
    assert '"name": "demur.route"' in printed.err
    assert '"name": "chat strong"' in printed.err
    assert "demur.decisions" in printed.err


# --- choosing the exporter -------------------------------------------------------------------


def test_unknown_exporter_is_a_config_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown telemetry exporter 'jsnol'.*'jsonl'"):
        configure_telemetry("jsnol", set_global=False)  # type: ignore[arg-type]


def test_exporter_none_reads_otel_traces_exporter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    with configure_telemetry(None, set_global=False) as telemetry:
        assert telemetry.exporter == "console"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    with configure_telemetry(None, set_global=False) as telemetry:
        assert telemetry.exporter == "none"
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    with configure_telemetry(None, path=tmp_path / "t.jsonl", set_global=False) as telemetry:
        assert telemetry.exporter == "jsonl"
        assert telemetry.meter_provider is None  # OTEL_METRICS_EXPORTER=none
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        configure_telemetry(None, set_global=False)


def test_resource_names_the_service_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    def resource(**kwargs: Any) -> dict[str, Any]:
        with configure_telemetry("none", set_global=False, **kwargs) as telemetry:
            return dict(telemetry.tracer_provider.resource.attributes)

    assert resource()["service.name"] == "demur"
    assert resource()["service.version"] == __version__
    assert resource(service_name="qa-bot")["service.name"] == "qa-bot"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
    assert resource(default_service_name="demur-cli")["service.name"] == "demur-cli"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "qa-bot-prod")
    assert resource()["service.name"] == "qa-bot-prod"  # the env beats a default...
    assert resource(default_service_name="demur-cli")["service.name"] == "qa-bot-prod"
    assert resource(service_name="qa-bot")["service.name"] == "qa-bot"  # ...not an argument
    assert resource()["deployment.environment.name"] == "staging"


# --- globals ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("clean_globals")
def test_set_global_installs_the_providers_routers_use(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with configure_telemetry("jsonl", path=path) as telemetry:
        assert trace.get_tracer_provider() is telemetry.tracer_provider
        assert logs_internal.get_logger_provider() is telemetry.logger_provider
        verdict = make_router().route(QUESTION)  # no providers passed: the globals serve
    assert verdict.trace_id is not None
    assert {s["trace_id"] for s in read_lines(path)} == {verdict.trace_id}
    assert (tmp_path / "t.metrics.jsonl").exists()


@pytest.mark.usefixtures("clean_globals")
def test_a_host_tracer_provider_is_borrowed_not_replaced(tmp_path: Path) -> None:
    host_spans = InMemorySpanExporter()
    host = TracerProvider()
    host.add_span_processor(SimpleSpanProcessor(host_spans))
    trace.set_tracer_provider(host)

    with pytest.warns(RuntimeWarning, match=r"already installed.*does not add the 'jsonl'"):
        telemetry = configure_telemetry("jsonl", path=tmp_path / "t.jsonl")
    assert telemetry.tracer_provider is host
    assert not telemetry.owns_tracer_provider
    assert telemetry.trace_path is None
    assert trace.get_tracer_provider() is host

    verdict = make_router().route(QUESTION)
    telemetry.shutdown()
    assert {format(s.context.trace_id, "032x") for s in host_spans.get_finished_spans()} == {
        verdict.trace_id
    }
    # The host's provider still works after demur's shutdown: only the host may end it.
    with host.get_tracer("host").start_as_current_span("after"):
        pass
    assert host_spans.get_finished_spans()[-1].name == "after"
    host.shutdown()


@pytest.mark.usefixtures("clean_globals")
def test_without_any_sdk_routes_run_untraced() -> None:
    verdict: Verdict = make_router().route(QUESTION)
    assert verdict.status == "answered"
    assert verdict.trace_id is None


# --- OTLP ------------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A loopback OTLP/HTTP collector that keeps every request it receives."""

    url: str
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def bodies(self, path: str) -> list[bytes]:
        return [body for p, _, body in self.requests if p == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received: list[tuple[str, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.append((self.path, dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_otlp_exports_spans_and_metrics_to_a_collector(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s3cret")
    with configure_telemetry(None, set_global=False) as telemetry:
        assert telemetry.exporter == "otlp"
        verdict = make_router(telemetry).route(QUESTION)

    trace_bodies = receiver.bodies("/v1/traces")
    assert trace_bodies, f"no trace export arrived; got {[p for p, _, _ in receiver.requests]}"
    names, trace_ids, services = set(), set(), set()
    for body in trace_bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            services.add(attributes["service.name"])
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    names.add(span.name)
                    trace_ids.add(span.trace_id.hex())
    assert {"demur.route", "demur.attempt", "chat weak", "chat strong"} <= names
    assert trace_ids == {verdict.trace_id}
    assert services == {"demur"}
    headers = {k.lower(): v for p, h, _ in receiver.requests for k, v in h.items()}
    assert headers["x-api-key"] == "s3cret"
    assert headers["content-type"] == "application/x-protobuf"

    metric_names = set()
    for body in receiver.bodies("/v1/metrics"):
        metrics_request = ExportMetricsServiceRequest()
        metrics_request.ParseFromString(body)
        for resource_metrics in metrics_request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                metric_names |= {m.name for m in scope_metrics.metrics}
    assert {"demur.decisions", "demur.confidence", "demur.route.duration"} <= metric_names

    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    event_names = []
    for body in receiver.bodies("/v1/logs"):
        logs_request = ExportLogsServiceRequest()
        logs_request.ParseFromString(body)
        for resource_logs in logs_request.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                event_names += [r.event_name for r in scope_logs.log_records]
    assert event_names == ["gen_ai.evaluation.result"] * 2


def test_otlp_without_the_extra_names_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.metric_exporter", None)
    with pytest.raises(
        MissingDependencyError, match="opentelemetry-exporter-otlp-proto-http"
    ) as err:
        configure_telemetry("otlp", set_global=False)
    assert "pip install 'demur[otlp]'" in str(err.value)
    assert isinstance(err.value, ImportError)


def test_otlp_refuses_a_grpc_protocol_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ConfigError, match=r"OTEL_EXPORTER_OTLP_PROTOCOL='grpc'.*http/protobuf"):
        configure_telemetry("otlp", set_global=False)


def test_telemetry_shutdown_is_idempotent_and_flush_reports_success(tmp_path: Path) -> None:
    telemetry = configure_telemetry("jsonl", path=tmp_path / "t.jsonl", set_global=False)
    make_router(telemetry).route(QUESTION)
    assert telemetry.force_flush() is True
    telemetry.shutdown()
    telemetry.shutdown()
    assert read_lines(tmp_path / "t.jsonl")


# --- load_router follows the config's tracing section ----------------------------------------


CONFIG = """
models:
  weak: {kind: scripted, replies: [{text: Charlotte Bronte, logprobs: [-1.2, -1.2]}]}
  strong: {kind: scripted, replies: [{text: Jane Austen, logprobs: [-0.05, -0.05]}]}
estimators: [mean_logprob]
policy: {kind: ladder, threshold: 0.6, rungs: [{escalate: strong}, abstain]}
tracing: {exporter: jsonl, path: TRACES}
"""


def write_config(tmp_path: Path) -> tuple[Path, Path]:
    traces = tmp_path / "out" / "traces.jsonl"
    path = tmp_path / "demur.yaml"
    path.write_text(CONFIG.replace("TRACES", str(traces)), encoding="utf-8")
    return path, traces


@pytest.mark.usefixtures("clean_globals")
def test_load_router_applies_the_configs_tracing_like_the_cli(tmp_path: Path) -> None:
    path, traces = write_config(tmp_path)
    with load_router(path) as router:
        verdict = router.route(QUESTION)
    assert verdict.trace_id is not None
    spans = read_lines(traces)
    assert {s["trace_id"] for s in spans} == {verdict.trace_id}
    assert {s["name"] for s in spans} >= {"demur.route", "chat weak", "chat strong"}
    assert len(read_lines(traces.with_name("traces.events.jsonl"))) == 2
    assert (traces.with_name("traces.metrics.jsonl")).exists()  # flushed when the router closed
    # The application's globals are left alone.
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


@pytest.mark.usefixtures("clean_globals")
def test_load_router_leaves_tracing_to_a_host_sdk_or_when_told(tmp_path: Path) -> None:
    path, traces = write_config(tmp_path)
    with load_router(path, tracing=False) as router:
        assert router.route(QUESTION).trace_id is None  # no SDK anywhere: no trace
    assert not traces.exists()

    host_spans = InMemorySpanExporter()
    host = TracerProvider()
    host.add_span_processor(SimpleSpanProcessor(host_spans))
    trace.set_tracer_provider(host)
    with load_router(path) as router:
        verdict = router.route(QUESTION)
    assert not traces.exists()
    assert {format(s.context.trace_id, "032x") for s in host_spans.get_finished_spans()} == {
        verdict.trace_id
    }
