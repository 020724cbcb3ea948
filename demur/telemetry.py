"""The OpenTelemetry SDK set-up for when demur is the application (the CLI, the server).

Libraries that embed a Router never import this module: `demur.router.tracing` speaks only the
OpenTelemetry API and follows whatever providers the host application installed.

    telemetry = configure_telemetry("jsonl", path="runs/traces.jsonl")
    with telemetry:                       # shutdown() on exit flushes every span and metric
        Router(...).route("Who wrote Emma?")

Exporters:

- "jsonl": one JSON object per span per line in `path`, metrics beside it in
  `<stem>.metrics.jsonl` and events (each score's `gen_ai.evaluation.result`) in
  `<stem>.events.jsonl`. Read them with `jq`, pandas, or any text tool.
- "console": the SDK's console exporters, written to stderr so stdout stays for answers.
- "otlp": OTLP over HTTP/protobuf (`pip install 'demur[otlp]'`). Endpoint, headers, timeout
  and compression come from the standard `OTEL_EXPORTER_OTLP_*` environment variables.
- "none": spans are still created, so verdicts and review tickets carry trace ids, but
  nothing is exported.
- None: take the choice from `OTEL_TRACES_EXPORTER` (otlp, console or none), else "jsonl".
"""

from __future__ import annotations

import json
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, TypeVar, get_args

from opentelemetry import _logs as logs_api
from opentelemetry import metrics as metrics_api
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    ConsoleLogRecordExporter,
    LogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from demur._version import __version__
from demur.errors import ConfigError, MissingDependencyError, did_you_mean

ExporterName = Literal["jsonl", "console", "otlp", "none"]
EXPORTERS: tuple[str, ...] = get_args(ExporterName)
DEFAULT_SERVICE_NAME = "demur"


# --- JSON lines exporters --------------------------------------------------------------------


class _JsonLinesFile:
    """An append-only text file shared by threads; each write lands whole and is flushed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, records: Sequence[dict[str, Any]]) -> bool:
        if not records:
            return True
        text = "".join(json.dumps(r, default=str, ensure_ascii=False) + "\n" for r in records)
        with self._lock:
            if self._file is None:
                return False
            self._file.write(text)
            # Flushed to the OS at once, so a crashed process still leaves complete lines.
            self._file.flush()
        return True

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span to a file as one JSON object per line.

    Fields: name, trace_id, span_id, parent_span_id (hex, or null for a root), kind,
    start_time, end_time (ISO-8601 UTC), duration_ms, status {code, description},
    attributes, events [{name, time, attributes}], links, scope and resource.

    The file and its parent folders are created at once; existing lines are kept. Exports
    from several threads never interleave within a line.
    """

    def __init__(self, path: str | Path) -> None:
        self._out = _JsonLinesFile(path)

    @property
    def path(self) -> Path:
        return self._out.path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self._out.write([span_to_dict(s) for s in spans])
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export is already flushed

    def shutdown(self) -> None:
        self._out.close()


class JsonLinesMetricExporter(MetricExporter):
    """Appends metrics to a file, one JSON object per metric per export.

    Each line holds the export time, the metric's name, unit, description and type (Sum,
    Histogram, Gauge...), its data points, scope and resource. Exemplar trace and span ids
    are hex, matching the span lines. Temporality is the SDK default
    (cumulative), so the latest line of a metric holds its totals.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self._out = _JsonLinesFile(path)

    @property
    def path(self) -> Path:
        return self._out.path

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        now = _iso(time_ns=None)
        records = [
            {
                "time": now,
                "name": metric.name,
                "unit": metric.unit,
                "description": metric.description,
                "type": type(metric.data).__name__,
                "data": _hex_exemplar_ids(json.loads(metric.data.to_json(indent=None))),
                "scope": {"name": scope.scope.name, "version": scope.scope.version},
                "resource": dict(resource.resource.attributes),
            }
            for resource in metrics_data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        ]
        ok = self._out.write(records)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._out.close()


class JsonLinesLogExporter(LogRecordExporter):
    """Appends each log record (demur's events) to a file as one JSON object per line.

    Fields: time, event_name, trace_id, span_id (hex, joining the span lines; null when the
    record has no span), severity, body, attributes, scope and resource.
    """

    def __init__(self, path: str | Path) -> None:
        self._out = _JsonLinesFile(path)

    @property
    def path(self) -> Path:
        return self._out.path

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        ok = self._out.write([log_record_to_dict(r) for r in batch])
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        self._out.close()


def log_record_to_dict(readable: ReadableLogRecord) -> dict[str, Any]:
    """A log record as the plain dict JsonLinesLogExporter writes."""
    record = readable.log_record
    scope = readable.instrumentation_scope
    return {
        "time": _iso(record.timestamp or record.observed_timestamp),
        "event_name": record.event_name,
        "trace_id": format(record.trace_id, "032x") if record.trace_id else None,
        "span_id": format(record.span_id, "016x") if record.span_id else None,
        "severity": record.severity_text
        or (record.severity_number.name if record.severity_number else None),
        "body": record.body,
        "attributes": dict(record.attributes or {}),
        "scope": {"name": scope.name, "version": scope.version} if scope else None,
        "resource": dict(readable.resource.attributes),
    }


def _hex_exemplar_ids(data: dict[str, Any]) -> dict[str, Any]:
    """Exemplar trace and span ids in hex, as in the span lines, so the two files join."""
    for point in data.get("data_points", ()):
        for exemplar in point.get("exemplars", ()):
            for key, width in (("trace_id", 32), ("span_id", 16)):
                if isinstance(exemplar.get(key), int):
                    exemplar[key] = format(exemplar[key], f"0{width}x")
    return data


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as the plain dict JsonLinesSpanExporter writes."""
    context = span.get_span_context()
    start, end = span.start_time, span.end_time
    scope = span.instrumentation_scope
    return {
        "name": span.name,
        "trace_id": format(context.trace_id, "032x") if context else None,
        "span_id": format(context.span_id, "016x") if context else None,
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
        "kind": span.kind.name,
        "start_time": _iso(start),
        "end_time": _iso(end),
        "duration_ms": (end - start) / 1e6 if start is not None and end is not None else None,
        "status": {"code": span.status.status_code.name, "description": span.status.description},
        "attributes": dict(span.attributes or {}),
        "events": [
            {"name": e.name, "time": _iso(e.timestamp), "attributes": dict(e.attributes or {})}
            for e in span.events
        ],
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
                "attributes": dict(link.attributes or {}),
            }
            for link in span.links
        ],
        "scope": {"name": scope.name, "version": scope.version} if scope else None,
        "resource": dict(span.resource.attributes),
    }


def _iso(time_ns: int | None) -> str | None:
    """Nanoseconds since the epoch (None: now) as ISO-8601 UTC to the microsecond."""
    if time_ns is None:
        moment = datetime.now(UTC)
    else:
        seconds, nanos = divmod(time_ns, 1_000_000_000)
        moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1000)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- configure_telemetry ---------------------------------------------------------------------


@dataclass
class Telemetry:
    """The providers configure_telemetry set up; shut it down to flush everything.

    Pass `tracer_provider`, `meter_provider` and `logger_provider` to `Router(...)` (or
    `providers` as keywords) when `set_global` was False. A provider borrowed from the host
    application (`owns_* = False`) is flushed, never shut down: its lifetime belongs to the host.
    """

    tracer_provider: TracerProvider
    meter_provider: MeterProvider | None = None
    logger_provider: LoggerProvider | None = None
    exporter: ExporterName = "none"
    trace_path: Path | None = None
    metrics_path: Path | None = None
    events_path: Path | None = None
    owns_tracer_provider: bool = True
    owns_meter_provider: bool = True
    owns_logger_provider: bool = True
    _closed: bool = field(default=False, repr=False)

    @property
    def providers(self) -> dict[str, Any]:
        """The providers as `Router` keywords: `Router(models, **telemetry.providers, ...)`."""
        return {
            "tracer_provider": self.tracer_provider,
            "meter_provider": self.meter_provider,
            "logger_provider": self.logger_provider,
        }

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export everything recorded so far; False when an exporter did not finish in time."""
        ok = self.tracer_provider.force_flush(timeout_millis)
        if self.meter_provider is not None:
            ok = self.meter_provider.force_flush(timeout_millis) and ok
        if self.logger_provider is not None:
            ok = self.logger_provider.force_flush(timeout_millis) and ok
        return ok

    def shutdown(self) -> None:
        """Flush and close the providers demur owns. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self.owns_tracer_provider:
            self.tracer_provider.shutdown()
        else:
            self.tracer_provider.force_flush()
        for provider, owned in (
            (self.meter_provider, self.owns_meter_provider),
            (self.logger_provider, self.owns_logger_provider),
        ):
            if provider is not None:
                if owned:
                    provider.shutdown()
                else:
                    provider.force_flush()

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()


def configure_telemetry(
    exporter: ExporterName | None = "jsonl",
    *,
    path: str | Path = "demur-traces.jsonl",
    service_name: str | None = None,
    default_service_name: str = DEFAULT_SERVICE_NAME,
    metrics: bool = True,
    set_global: bool = True,
) -> Telemetry:
    """Set up OpenTelemetry tracing, metrics and events for the demur CLI or server.

    Span and event processors: "jsonl" and "console" export each span and event
    synchronously as it ends. Appending one line to a local file costs microseconds against a
    model call's milliseconds, and a process that crashes or is killed has still written every
    finished span; a batch processor would hold up to five seconds of them in memory and
    lose them. "otlp" batches, because a network round trip per span would stall the route.
    Metrics are read by a PeriodicExportingMetricReader (interval from
    `OTEL_METRIC_EXPORT_INTERVAL`, default 60 s) and always exported at shutdown.

    With `set_global`, the providers become OpenTelemetry's global ones, so every Router
    uses them. If the host application already installed an SDK provider (for instance under
    `opentelemetry-instrument`), demur does not replace it: OpenTelemetry allows one global
    provider per process, and the host's exporters are the ones its operators watch. The
    returned Telemetry then borrows that provider (tracer, meter and logger are judged
    separately), and a warning says the requested exporter was not installed for it.

    `service.name`: `service_name` when given; else `OTEL_SERVICE_NAME` or a `service.name`
    in `OTEL_RESOURCE_ATTRIBUTES`; else `default_service_name`. Other
    `OTEL_RESOURCE_ATTRIBUTES` are kept.
    """
    from_env = exporter is None
    name = _exporter_from_env() if exporter is None else _check_exporter(exporter)
    if from_env and os.environ.get("OTEL_METRICS_EXPORTER", "").strip().lower() == "none":
        metrics = False
    logs = name != "none"
    if from_env and os.environ.get("OTEL_LOGS_EXPORTER", "").strip().lower() == "none":
        logs = False
    trace_path = Path(path) if name == "jsonl" else None
    metrics_path = _sibling(Path(path), "metrics") if name == "jsonl" and metrics else None
    events_path = _sibling(Path(path), "events") if name == "jsonl" and logs else None
    resource = _resource(service_name, default_service_name)

    host_tracer = _host_provider(trace.get_tracer_provider(), TracerProvider, set_global)
    host_meter = _host_provider(metrics_api.get_meter_provider(), MeterProvider, set_global)
    host_logger = _host_provider(logs_api.get_logger_provider(), LoggerProvider, set_global)
    pairs = (("tracer", host_tracer), ("meter", host_meter), ("logger", host_logger))
    borrowed = [kind for kind, provider in pairs if provider is not None]
    if borrowed and name != "none":
        warnings.warn(
            f"an OpenTelemetry SDK {' and '.join(borrowed)} provider is already installed; "
            f"demur uses it as it is and does not add the '{name}' exporter to it. "
            "Configure exporters in the host application, or call "
            "configure_telemetry(..., set_global=False) and pass the providers to Router.",
            RuntimeWarning,
            stacklevel=2,
        )

    if host_tracer is not None:
        tracer_provider, trace_path = host_tracer, None
    else:
        tracer_provider = TracerProvider(resource=resource)
        processor = _span_processor(name, trace_path)
        if processor is not None:
            tracer_provider.add_span_processor(processor)
        if set_global:
            trace.set_tracer_provider(tracer_provider)

    meter_provider: MeterProvider | None = None
    if host_meter is not None:
        meter_provider, metrics_path = host_meter, None
    elif metrics and name != "none":
        reader = PeriodicExportingMetricReader(_metric_exporter(name, metrics_path))
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        if set_global:
            metrics_api.set_meter_provider(meter_provider)

    logger_provider: LoggerProvider | None = None
    if host_logger is not None:
        logger_provider, events_path = host_logger, None
    elif logs:
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(_log_processor(name, events_path))
        if set_global:
            logs_api.set_logger_provider(logger_provider)

    return Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        exporter=name,
        trace_path=trace_path,
        metrics_path=metrics_path,
        events_path=events_path,
        owns_tracer_provider=host_tracer is None,
        owns_meter_provider=host_meter is None,
        owns_logger_provider=host_logger is None,
    )


def _check_exporter(name: str) -> ExporterName:
    if name not in EXPORTERS:
        raise ConfigError(
            f"unknown telemetry exporter '{name}'.{did_you_mean(name, EXPORTERS)} "
            f"Choose one of: {', '.join(EXPORTERS)}."
        )
    return name  # type: ignore[return-value]


def _exporter_from_env() -> ExporterName:
    """The exporter OTEL_TRACES_EXPORTER names (its first entry), or "jsonl" when unset."""
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not raw:
        return "jsonl"
    first = raw.split(",")[0].strip()
    choices = ("otlp", "console", "none")
    if first not in choices:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={raw!r} is not supported by demur."
            f"{did_you_mean(first, choices)} Use one of: {', '.join(choices)}, "
            "or unset it to write JSON lines."
        )
    return first  # type: ignore[return-value]


def _sibling(trace_path: Path, kind: str) -> Path:
    """`traces.jsonl` -> `traces.metrics.jsonl`, `traces.events.jsonl`."""
    return trace_path.with_name(f"{trace_path.stem}.{kind}.jsonl")


def _resource(service_name: str | None, default: str) -> Resource:
    attributes: dict[str, str] = {SERVICE_VERSION: __version__}
    if service_name is not None:
        attributes[SERVICE_NAME] = service_name
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; without either it
    # names the service "unknown_service", which the default replaces.
    resource = Resource.create(attributes)
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default}))
    return resource


P = TypeVar("P", TracerProvider, MeterProvider, LoggerProvider)


def _host_provider(current: object, sdk_type: type[P], set_global: bool) -> P | None:
    """The host's SDK provider when demur would otherwise install its own globally."""
    return current if set_global and isinstance(current, sdk_type) else None


def _span_processor(name: ExporterName, trace_path: Path | None) -> SpanProcessor | None:
    if name == "jsonl":
        assert trace_path is not None
        return SimpleSpanProcessor(JsonLinesSpanExporter(trace_path))
    if name == "console":
        return SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr))
    if name == "otlp":
        span_exporter, _ = _otlp_exporters()
        return BatchSpanProcessor(span_exporter())
    return None


def _log_processor(name: ExporterName, events_path: Path | None) -> LogRecordProcessor:
    if name == "jsonl":
        assert events_path is not None
        return SimpleLogRecordProcessor(JsonLinesLogExporter(events_path))
    if name == "console":
        return SimpleLogRecordProcessor(ConsoleLogRecordExporter(out=sys.stderr))
    return BatchLogRecordProcessor(_otlp_log_exporter()())


def _otlp_log_exporter() -> type[LogRecordExporter]:
    _otlp_exporters()  # the same checks and the same missing-extra error
    from opentelemetry.exporter.otlp.proto.http._log_exporter import (  # type: ignore[import-not-found,unused-ignore]
        OTLPLogExporter,
    )

    return OTLPLogExporter  # type: ignore[no-any-return,unused-ignore]


def _metric_exporter(name: ExporterName, metrics_path: Path | None) -> MetricExporter:
    if name == "jsonl":
        assert metrics_path is not None
        return JsonLinesMetricExporter(metrics_path)
    if name == "console":
        return ConsoleMetricExporter(out=sys.stderr)
    _, metric_exporter = _otlp_exporters()
    return metric_exporter()


def _otlp_exporters() -> tuple[type[SpanExporter], type[MetricExporter]]:
    """The OTLP/HTTP exporter classes, imported only when asked for."""
    try:
        # The ignores let mypy pass where the optional extra is not installed.
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter,
        )
    except ImportError as exc:
        raise MissingDependencyError(
            "opentelemetry-exporter-otlp-proto-http", "otlp", "OTLP export"
        ) from exc
    for variable in (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    ):
        protocol = os.environ.get(variable, "").strip()
        if protocol and protocol != "http/protobuf":
            raise ConfigError(
                f"{variable}={protocol!r}, but demur exports OTLP over HTTP only. Set it to "
                "'http/protobuf' (or unset it) and point OTEL_EXPORTER_OTLP_ENDPOINT at the "
                "collector's HTTP port, usually 4318."
            )
    return OTLPSpanExporter, OTLPMetricExporter


__all__ = [
    "EXPORTERS",
    "ExporterName",
    "JsonLinesLogExporter",
    "JsonLinesMetricExporter",
    "JsonLinesSpanExporter",
    "Telemetry",
    "configure_telemetry",
    "log_record_to_dict",
    "span_to_dict",
]
