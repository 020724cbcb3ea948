"""A fault-injecting OpenAI-compatible server on loopback, built on the standard library.

It answers `POST /v1/chat/completions` and `POST /v1/completions` with a fixed reply and
fake but well-formed logprobs, records every request, and can be told to misbehave: queue
faults with `push()` (one per request, in order) or set the sticky `ignore_n` and
`omit_logprobs` switches.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

FaultKind = Literal[
    "500",  # HTTP 500 with an OpenAI-style error body
    "429",  # HTTP 429, with Retry-After when `retry_after` is set
    "401",
    "404",
    "context",  # HTTP 400 saying the prompt exceeds the context length
    "bad_request",  # HTTP 400 about something else
    "malformed",  # HTTP 200 whose body is not JSON
    "no_choices",  # HTTP 200 JSON without `choices`
    "hang",  # no answer until `hang_s` passes or the server stops
    "drop",  # close the connection without a response
    "no_logprobs_500",  # llama.cpp without --logits_all: HTTP 500 for a logprobs request
]

TOKEN_LOGPROB = -0.1


@dataclass
class Fault:
    kind: FaultKind
    retry_after: str | None = None


@dataclass
class Seen:
    """One request as the server received it."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    peer: tuple[str, int] = ("", 0)  # the client's address: one per connection


@dataclass
class StubState:
    reply: str = "Paris is the capital"
    ignore_n: bool = False
    omit_logprobs: bool = False
    hang_s: float = 10.0
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[Seen] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: StubState

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out hang up on "hang" requests; that is the point, not an error.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, code: str | None = None, **headers: str) -> None:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
        self._send(status, json.dumps(body).encode(), headers)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, json.dumps({"object": "list", "data": [{"id": "stub"}]}).encode())
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with state.lock:
            seen = Seen(self.path, body, dict(self.headers.items()), self.client_address[:2])
            state.requests.append(seen)
            fault = state.faults.popleft() if state.faults else None
        if self.path not in ("/v1/chat/completions", "/v1/completions"):
            self._error(404, f"Unknown request URL: POST {self.path}", "unknown_url")
            return
        if fault is not None and self._misbehave(fault):
            return
        chat = self.path == "/v1/chat/completions"
        self._send(200, json.dumps(self._answer(body, chat)).encode())

    def _misbehave(self, fault: Fault) -> bool:
        """Act out a fault; False when the request should still get a normal answer."""
        kind = fault.kind
        if kind == "500":
            self._error(500, "The server had an error while processing your request.")
        elif kind == "429":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._error(429, "Rate limit reached for requests", "rate_limit_exceeded", **extra)
        elif kind == "401":
            self._error(401, "Incorrect API key provided: sk-wrong.", "invalid_api_key")
        elif kind == "404":
            self._error(404, "The model `nope` does not exist", "model_not_found")
        elif kind == "context":
            self._error(
                400,
                "This model's maximum context length is 1024 tokens. However, you requested "
                "1535 tokens. Please reduce the length of the messages.",
                "context_length_exceeded",
            )
        elif kind == "bad_request":
            self._error(400, "'temperature' must be at most 2", "invalid_value")
        elif kind == "malformed":
            self._send(200, b'{"id": "cmpl-1", "choices": [ <html>oops')
        elif kind == "no_choices":
            self._send(200, json.dumps({"id": "cmpl-1", "object": "chat.completion"}).encode())
        elif kind == "hang":
            self.server.state.released.wait(self.server.state.hang_s)
            return False
        elif kind == "no_logprobs_500":
            self._error(500, "logprobs is not supported for models created with logits_all=False")
        elif kind == "drop":
            self.close_connection = True
        return True

    def _answer(self, body: dict[str, Any], chat: bool) -> dict[str, Any]:
        state = self.server.state
        n = 1 if state.ignore_n else int(body.get("n", 1))
        words = state.reply.split(" ")
        tokens = [words[0]] + [" " + w for w in words[1:]]
        want = body.get("logprobs") not in (None, False) and not state.omit_logprobs
        k = int(body.get("top_logprobs") or 0) if chat else int(body.get("logprobs") or 0)
        alternatives = [(f"alt{i}", TOKEN_LOGPROB - i) for i in range(1, k)]
        choices = []
        for i in range(n):
            if chat:
                choice: dict[str, Any] = {
                    "index": i,
                    "message": {"role": "assistant", "content": state.reply},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
                if want:
                    choice["logprobs"] = {
                        "content": [
                            {
                                "token": t,
                                "logprob": TOKEN_LOGPROB,
                                "top_logprobs": [
                                    {"token": a, "logprob": lp}
                                    for a, lp in [(t, TOKEN_LOGPROB), *alternatives][:k]
                                ],
                            }
                            for t in tokens
                        ]
                    }
            else:
                choice = {"index": i, "text": state.reply, "finish_reason": "length"}
                choice["logprobs"] = None
                if want:
                    choice["logprobs"] = {
                        "tokens": tokens,
                        "token_logprobs": [TOKEN_LOGPROB] * len(tokens),
                        # Deliberately unsorted: parsers must rank alternatives themselves.
                        "top_logprobs": [
                            dict([*alternatives, (t, TOKEN_LOGPROB)]) if k else {} for t in tokens
                        ],
                        "text_offset": list(range(len(tokens))),
                    }
            choices.append(choice)
        return {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{len(state.requests)}",
            "object": "chat.completion" if chat else "text_completion",
            "model": body.get("model"),
            "choices": choices,
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": len(tokens) * n,
                "total_tokens": 10 + len(tokens) * n,
            },
        }


class StubServer:
    """The server, running in a background thread on 127.0.0.1 and an ephemeral port."""

    def __init__(self) -> None:
        self.state = StubState()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def requests(self) -> list[Seen]:
        return self.state.requests

    def push(self, *faults: Fault | FaultKind) -> None:
        """Queue faults for the next requests, one each; later requests are answered."""
        with self.state.lock:
            self.state.faults.extend(f if isinstance(f, Fault) else Fault(f) for f in faults)

    def start(self) -> StubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
