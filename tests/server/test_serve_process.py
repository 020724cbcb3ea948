"""`demur serve` as a real process: start-up checks, graceful shutdown, real local models,
and examples/gateway.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from tests.adapters.openai_stub_server import StubServer
from tests.server.conftest import KEY

ROOT = Path(__file__).resolve().parents[2]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]

UPSTREAM_CONFIG = """\
models:
  upstream: {kind: openai, base_url: "BASE_URL", timeout_s: 10, api_key_env: NO_SUCH_KEY_ENV}
estimators: [mean_logprob]
policy:
  threshold: 0.5
  rungs: [abstain]
"""

SCRIPTED_CONFIG = """\
models:
  weak:
    kind: scripted
    replies: [{text: "Persuasion", logprobs: [-1.5]}]
  strong:
    kind: scripted
    replies: [{text: "Emma", logprobs: [-0.05]}]
estimators: [mean_logprob]
policy:
  threshold: 0.5
  rungs: [{escalate: strong}, human]
queue: {path: QUEUE}
"""


class ServeProcess:
    """`python -m demur.cli serve ...` with its stderr (JSON log lines) read on a thread."""

    def __init__(
        self, args: list[str], cwd: Path, env: dict[str, str], open_files: int | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "demur.cli", "serve", "--port", "0", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            # The limit is set in the child only: the test process may hold more files.
            preexec_fn=(lambda: _limit_open_files(open_files)) if open_files else None,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def events(self) -> list[dict]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]

    def wait_for_url(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.events():
                if event.get("event") == "listening":
                    return str(event["url"])
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError("demur serve exited:\n" + "\n".join(self.lines))
            time.sleep(0.05)
        raise AssertionError("demur serve did not start:\n" + "\n".join(self.lines))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._reader.join(5)
        return code


def _limit_open_files(count: int) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))


@contextmanager
def serve_process(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    *,
    open_files: int | None = None,
) -> Iterator[ServeProcess]:
    environment = {k: v for k, v in os.environ.items() if k != "DEMUR_API_KEYS"}
    environment["PYTHONPATH"] = str(ROOT)
    environment.update(env or {})
    process = ServeProcess(args, cwd, environment, open_files)
    try:
        yield process
    finally:
        process.stop()


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DEMUR_API_KEYS"}
    return subprocess.run(
        [sys.executable, "-m", "demur.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer().start()
    yield server
    server.stop()


def test_sigterm_drains_the_request_in_flight_refuses_new_ones_then_exits_0(stub, tmp_path):
    config = tmp_path / "demur.yaml"
    config.write_text(UPSTREAM_CONFIG.replace("BASE_URL", stub.base_url))
    stub.state.hang_s = 2.0
    stub.push("hang")  # the first request takes 2 s upstream
    args = ["--config", str(config), "--traces", "none"]
    with serve_process(args, tmp_path, {"DEMUR_API_KEYS": KEY}) as server:
        url = server.wait_for_url(60)
        results: dict[str, object] = {}

        def slow_request() -> None:
            try:
                results["response"] = httpx.post(
                    f"{url}/v1/chat/completions",
                    json={"model": "demur", "messages": QUESTION},
                    headers={"Authorization": f"Bearer {KEY}"},
                    timeout=30,
                )
            except Exception as exc:
                results["error"] = exc

        caller = threading.Thread(target=slow_request)
        caller.start()
        deadline = time.monotonic() + 15
        while not stub.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stub.requests, "the request never reached the upstream"
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        ready = httpx.get(f"{url}/readyz", timeout=2)  # still listening while it drains
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        assert httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        refused = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "demur", "messages": QUESTION},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=5,
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "shutting_down"
        caller.join(30)
        assert not caller.is_alive()
        assert "error" not in results, results.get("error")
        response = results["response"]
        assert isinstance(response, httpx.Response)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "Paris is the capital"
        assert server.proc.wait(30) == 0
        events = server.events()
    assert len(events) == len([line for line in server.lines if line.strip()])  # all JSON
    requests = [e for e in events if e.get("event") == "request"]
    assert [(r["path"], r["status"]) for r in requests] == [
        ("/readyz", 503),
        ("/healthz", 200),
        ("/v1/chat/completions", 503),
        ("/v1/chat/completions", 200),  # the route in flight, drained
    ]
    assert requests[-1]["key_id"].startswith("key-") and KEY not in json.dumps(events)


def test_serve_refuses_a_public_host_without_keys_before_loading_models(tmp_path):
    config = tmp_path / "demur.yaml"
    config.write_text(SCRIPTED_CONFIG.replace("QUEUE", str(tmp_path / "q.db")))
    result = run_cli(["serve", "--host", "0.0.0.0", "--config", str(config)], tmp_path)
    assert result.returncode == 2
    assert "refusing to serve on 0.0.0.0 without API keys" in result.stderr
    assert "DEMUR_API_KEYS" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "invalid server settings: port"),
        (["--rate-limit", "0"], "invalid server settings: rate_limit_rps"),
        (["--api-key-file", "/nonexistent/keys"], "cannot read the API key file"),
        (["--config", "/nonexistent/demur.yaml"], "does not exist"),
    ],
)
def test_serve_reports_bad_settings_with_exit_2(tmp_path, args, message):
    result = run_cli(["serve", *args], tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_serve_reports_a_port_in_use(tmp_path):
    config = tmp_path / "demur.yaml"
    config.write_text(SCRIPTED_CONFIG.replace("QUEUE", str(tmp_path / "q.db")))
    with serve_process(["--config", str(config), "--traces", "none"], tmp_path) as first:
        port = first.wait_for_url(60).rsplit(":", 1)[1]
        result = run_cli(
            ["serve", "--config", str(config), "--port", port, "--traces", "none"], tmp_path
        )
    assert result.returncode == 2
    assert f"could not serve on 127.0.0.1:{port}" in result.stderr


def test_the_gateway_example_runs(tmp_path):
    config = tmp_path / "demur.yaml"
    config.write_text(SCRIPTED_CONFIG.replace("QUEUE", str(tmp_path / "q.db")))
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "gateway.py"), "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "answer: 'Emma'" in result.stdout
    assert "action=accept status=answered" in result.stdout and "model=strong" in result.stdout
    assert "streamed: 'Emma'" in result.stdout


@pytest.mark.local_model
def test_the_gateway_example_runs_on_the_embedded_defaults(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "gateway.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stderr
    assert "demur: action=" in result.stdout and "streamed: " in result.stdout
    assert "step 0: strong" in result.stdout  # the default route starts at the strong model


@pytest.mark.local_model
def test_demur_serve_with_the_embedded_defaults_answers_through_the_local_models(tmp_path):
    with serve_process([], tmp_path) as server:
        url = server.wait_for_url(300)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)
        raw = client.chat.completions.with_raw_response.create(
            model="demur",
            messages=[{"role": "user", "content": "Who wrote Emma?"}],
            extra_body={"context": ["Emma is a novel by Jane Austen, published in 1815."]},
        )
        completion = raw.parse()
        assert server.stop() == 0
    demur = (completion.model_extra or {})["demur"]
    assert demur["steps"][0]["model"] == "strong"  # where the default route starts
    assert demur["status"] in ("answered", "pending", "abstained")
    assert raw.headers["x-demur-action"] == demur["action"]
    assert completion.choices[0].message.content
    assert 0.0 <= (demur["steps"][0]["confidence"] or 0.0) <= 1.0
    traces = (tmp_path / ".demur" / "traces.jsonl").read_text().splitlines()
    names = {json.loads(line)["name"] for line in traces}
    assert {"POST /v1/chat/completions", "demur.route", "chat qwen2.5-1.5b"} <= names
