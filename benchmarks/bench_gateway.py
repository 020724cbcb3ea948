"""The gateway's cost over loopback: requests per second and added latency, against calling
an instant OpenAI-compatible upstream directly, at 1 and at 32 concurrent clients.

Processes: an instant upstream (a bare ASGI app under uvicorn returning a canned chat
completion with logprobs); the gateway (`demur.server.serve`: API-key auth, one
OpenAICompatibleModel pointing at that upstream, scored by MeanTokenLogprob, tracing on
through an SDK provider whose exporter drops the spans, one JSON access-log line per request);
the same gateway over an in-process instant ScriptedModel ("gateway_scripted": the gateway's
own cost, without the second HTTP hop); a plain reverse proxy ("proxy": a bare ASGI app under
the same uvicorn settings that forwards each request body to the upstream through aiohttp and
returns its answer, what any Python hop in front of the upstream costs); and this client
(one bare keep-alive HTTP/1.1 connection per concurrent client). Each round sends the same
number of requests to each, the order alternating per round; latencies are pooled over the
rounds, after a warm-up round.
"added" is the gateway's figure minus the direct call's, "scripted_added" the same for
gateway_scripted, "proxy_added" for the proxy; "over_proxy" is the gateway's minus the proxy's:
what demur adds beyond forwarding.

    python -m benchmarks.bench_gateway [--requests 500] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, report

CONCURRENCY = (1, 32)
KEY = "sk-bench"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
REPLY = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 0,
    "model": "upstream",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris"},
            "finish_reason": "stop",
            "logprobs": {"content": [{"token": "Paris", "logprob": -0.05, "top_logprobs": []}]},
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21},
}


# --- the servers, each run in its own process -------------------------------------------------


async def read_body(receive: Any) -> bytes:
    """The whole request body of an ASGI HTTP request."""
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def send_json(send: Any, status: int, body: bytes) -> None:
    """An ASGI JSON response with a Content-Length."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve_upstream(port: int) -> None:
    import uvicorn

    body = json.dumps(REPLY).encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive)
        await send_json(send, 200, body)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_gateway(port: int, upstream: str | None) -> None:
    """The gateway, over the HTTP upstream, or (None) over an in-process instant model."""
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from demur import Abstain, Ladder, MeanTokenLogprob, Model, Reply, Router, ScriptedModel
    from demur.adapters.models import OpenAICompatibleModel
    from demur.server import ServerSettings, serve

    class Dropping(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping(), max_queue_size=65536))
    model: Model
    if upstream is None:
        model = ScriptedModel("upstream", [Reply(text="Paris", logprobs=(-0.05,))])
    else:
        model = OpenAICompatibleModel("upstream", base_url=upstream, timeout_s=30)
    router = Router(
        [model],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.5, rungs=[Abstain()]),
        tracer_provider=provider,
    )
    settings = ServerSettings(port=port, api_keys=(KEY,), api_key_env=None, log_level="info")
    serve(router, settings, tracer_provider=provider)


def serve_proxy(port: int, upstream: str) -> None:
    """A plain reverse proxy: the request body forwarded to the upstream, its answer returned."""
    import aiohttp
    import uvicorn

    session: aiohttp.ClientSession | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal session
        if scope["type"] != "http":
            return
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        sent = await read_body(receive)
        url = upstream + scope["path"].removeprefix("/v1")
        if scope["method"] == "GET":
            request = session.get(url)
        else:
            headers = {"content-type": "application/json"}
            request = session.post(url, data=sent, headers=headers)
        async with request as answer:
            await send_json(send, answer.status, await answer.read())

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        http="httptools",
        lifespan="off",
    )


# --- the client -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(role: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_gateway",
            "--role",
            role,
            "--port",
            str(port),
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # the gateway's JSON access log, one line per request
    )


async def wait_ready(port: int, path: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            connection = Connection(port)
            await connection.request(b"GET", path)
            connection.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {port} did not come up in {timeout_s:g}s") from None
            await asyncio.sleep(0.1)


class Connection:
    """A bare HTTP/1.1 keep-alive connection.

    A general-purpose client (httpx) costs more CPU per request than the upstream itself
    does, and would be what this benchmark measures; this one only writes a request and
    reads a Content-Length response.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: bytes, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self._streams
        writer.write(
            method + b" " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + KEY.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return int(head[9:12]), await reader.readexactly(length)

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def batch(
    port: int, path: str, body: bytes, total: int, workers: int
) -> tuple[list[float], float]:
    """Send `total` requests from `workers` concurrent connections: (latencies in ms, wall s)."""
    latencies: list[float] = []
    left = total

    async def worker() -> None:
        nonlocal left
        connection = Connection(port)
        try:
            while left > 0:
                left -= 1
                started = time.perf_counter()
                status, answer = await connection.request(b"POST", path, body)
                latencies.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    raise RuntimeError(f"{path} answered {status}: {answer[:300]!r}")
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return latencies, time.perf_counter() - started


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


TARGETS = ("direct", "proxy", "gateway", "gateway_scripted")


async def measure(requests: int, rounds: int) -> dict[str, Any]:
    ports = {name: free_port() for name in TARGETS}
    upstream_url = f"http://127.0.0.1:{ports['direct']}/v1"
    processes = {
        "direct": start("upstream", ports["direct"]),
        "gateway": start("gateway", ports["gateway"], "--upstream", upstream_url),
        "gateway_scripted": start("gateway", ports["gateway_scripted"]),
        "proxy": start("proxy", ports["proxy"], "--upstream", upstream_url),
    }
    try:
        await wait_ready(ports["direct"], "/v1/models")
        await wait_ready(ports["gateway"], "/healthz")
        await wait_ready(ports["gateway_scripted"], "/healthz")
        await wait_ready(ports["proxy"], "/v1/models")
        direct = {"model": "upstream", "messages": QUESTION, "logprobs": True, "max_tokens": 16}
        routed = {"model": "demur", "messages": QUESTION}
        bodies = {
            "direct": json.dumps(direct).encode(),
            "proxy": json.dumps(direct).encode(),
            "gateway": json.dumps(routed).encode(),
            "gateway_scripted": json.dumps(routed).encode(),
        }
        results: dict[str, Any] = {}
        for workers in CONCURRENCY:
            latencies: dict[str, list[float]] = {name: [] for name in TARGETS}
            rates: dict[str, list[float]] = {name: [] for name in TARGETS}
            cpu = dict.fromkeys(TARGETS, 0.0)
            for round_index in range(rounds + 1):
                order = TARGETS[:: 1 if round_index % 2 else -1]
                for name in order:
                    pid = processes[name].pid
                    before = cpu_seconds(pid)
                    taken, wall = await batch(
                        ports[name], "/v1/chat/completions", bodies[name], requests, workers
                    )
                    after = cpu_seconds(pid)
                    if round_index == 0:
                        continue  # warm-up: connections, pools, imports on first use
                    latencies[name] += taken
                    rates[name].append(requests / wall)
                    if before is not None and after is not None:
                        cpu[name] += after - before
            row: dict[str, Any] = {}
            for name in TARGETS:
                row[name] = {
                    "requests_per_s": round(statistics.median(rates[name]), 1),
                    "p50_ms": round(percentile(latencies[name], 0.50), 3),
                    "p99_ms": round(percentile(latencies[name], 0.99), 3),
                    # CPU of the serving process per request: steadier than latency when busy.
                    "server_cpu_ms_per_request": round(cpu[name] * 1000 / (requests * rounds), 3),
                }
            for name, prefix in (
                ("gateway", ""),
                ("gateway_scripted", "scripted_"),
                ("proxy", "proxy_"),
            ):
                for q in ("p50", "p99"):
                    added = row[name][f"{q}_ms"] - row["direct"][f"{q}_ms"]
                    row[f"{prefix}added_{q}_ms"] = round(added, 3)
            for q in ("p50", "p99"):
                over = row["gateway"][f"{q}_ms"] - row["proxy"][f"{q}_ms"]
                row[f"over_proxy_{q}_ms"] = round(over, 3)
            results[str(workers)] = row
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
    return {
        "requests_per_round": requests,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "concurrency": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500, help="requests per round and target")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json")
    parser.add_argument("--role", choices=["upstream", "gateway", "proxy"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "upstream":
        serve_upstream(args.port)
        return
    if args.role == "proxy":
        serve_proxy(args.port, args.upstream)
        return
    if args.role == "gateway":
        serve_gateway(args.port, args.upstream)  # no --upstream: an in-process instant model
        return
    report(asyncio.run(measure(args.requests, args.rounds)), args.json)


if __name__ == "__main__":
    main()
