"""The gateway's metrics, kept in memory and written in the Prometheus text format (0.0.4).

    demur_gateway_requests_total{method, path, status}   counter
    demur_gateway_request_duration_seconds{path}          histogram
    demur_gateway_decisions_total{action, status}         counter: routes by outcome
    demur_gateway_confidence                              histogram of verdict confidences
    demur_gateway_in_flight_requests                      gauge
    demur_gateway_info{version}                           always 1

Paths are the gateway's own routes; anything else is counted as path="other", so a scanner
probing random URLs cannot create unbounded series.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

from demur._version import __version__

LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0
)  # fmt: skip
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value


class GatewayMetrics:
    """Counters and histograms of one gateway; `render()` gives the /metrics page."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = {}
        self.durations: dict[str, _Histogram] = {}
        self.decisions: dict[tuple[str, str], int] = {}
        self.confidence = _Histogram(CONFIDENCE_BUCKETS)
        self.in_flight = 0

    def request(self, method: str, path: str, status: int, duration_s: float) -> None:
        with self._lock:
            key = (method, path, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            histogram = self.durations.get(path)
            if histogram is None:
                histogram = self.durations[path] = _Histogram(LATENCY_BUCKETS_S)
            histogram.observe(duration_s)

    def decision(self, action: str, status: str, confidence: float | None) -> None:
        with self._lock:
            key = (action, status)
            self.decisions[key] = self.decisions.get(key, 0) + 1
            if confidence is not None:
                self.confidence.observe(confidence)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP demur_gateway_info The gateway's version.",
                "# TYPE demur_gateway_info gauge",
                f'demur_gateway_info{{version="{_escape(__version__)}"}} 1',
                "# HELP demur_gateway_requests_total HTTP requests by method, path and status.",
                "# TYPE demur_gateway_requests_total counter",
            ]
            for (method, path, status), count in sorted(self.requests.items()):
                labels = _labels(("method", "path", "status"), (method, path, status))
                lines.append(f"demur_gateway_requests_total{labels} {count}")
            lines += [
                "# HELP demur_gateway_request_duration_seconds Time to answer HTTP requests.",
                "# TYPE demur_gateway_request_duration_seconds histogram",
            ]
            for path, histogram in sorted(self.durations.items()):
                lines += _histogram_lines(
                    "demur_gateway_request_duration_seconds", histogram, ("path",), (path,)
                )
            lines += [
                "# HELP demur_gateway_decisions_total Routes by final action and verdict status.",
                "# TYPE demur_gateway_decisions_total counter",
            ]
            for (action, status), count in sorted(self.decisions.items()):
                labels = _labels(("action", "status"), (action, status))
                lines.append(f"demur_gateway_decisions_total{labels} {count}")
            lines += [
                "# HELP demur_gateway_confidence Confidence of each route's verdict.",
                "# TYPE demur_gateway_confidence histogram",
                *_histogram_lines("demur_gateway_confidence", self.confidence, (), ()),
                "# HELP demur_gateway_in_flight_requests Requests being handled now.",
                "# TYPE demur_gateway_in_flight_requests gauge",
                f"demur_gateway_in_flight_requests {self.in_flight}",
            ]
        return "\n".join(lines) + "\n"


def _histogram_lines(
    name: str, histogram: _Histogram, names: Sequence[str], values: Sequence[str]
) -> list[str]:
    lines = []
    cumulative = 0
    bounds = [*histogram.buckets, float("inf")]
    for bound, count in zip(bounds, histogram.counts, strict=True):
        cumulative += count
        labels = _labels(names, values, f'le="{_number(bound)}"')
        lines.append(f"{name}_bucket{labels} {cumulative}")
    plain = _labels(names, values)
    lines.append(f"{name}_sum{plain} {_number(histogram.sum)}")
    lines.append(f"{name}_count{plain} {cumulative}")
    return lines


__all__ = ["CONTENT_TYPE", "GatewayMetrics"]
