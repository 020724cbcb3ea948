"""`demur serve` as a real process under a crowd of slow clients, with few file descriptors:
it keeps answering, and its connection flags take effect."""

from __future__ import annotations

import contextlib
import socket
import time

import httpx

from tests.server.conftest import KEY
from tests.server.test_serve_process import SCRIPTED_CONFIG, serve_process

OPEN_FILES = 256


def test_300_half_sent_requests_do_not_lock_out_healthz_with_256_descriptors(tmp_path):
    config = tmp_path / "demur.yaml"
    config.write_text(SCRIPTED_CONFIG.replace("QUEUE", str(tmp_path / "q.db")))
    args = ["--config", str(config), "--traces", "none", "--header-timeout", "3"]
    args += ["--metrics-require-auth"]
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(
            serve_process(args, tmp_path, {"DEMUR_API_KEYS": KEY}, open_files=OPEN_FILES)
        )
        url = server.wait_for_url(60)
        port = int(url.rsplit(":", 1)[1])
        slow = []
        for _ in range(300):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(sock)
        started = time.monotonic()
        health = httpx.get(f"{url}/healthz", timeout=10)
        assert health.status_code == 200
        assert time.monotonic() - started < 5
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
        auth = {"Authorization": f"Bearer {KEY}"}
        assert httpx.get(f"{url}/metrics", headers=auth, timeout=10).status_code == 200
        # Past --header-timeout none of the half-sent requests holds a connection.
        time.sleep(3.5)
        still_open = 0
        for sock in slow:
            sock.settimeout(0.01)
            try:
                while sock.recv(65536):
                    pass
            except TimeoutError:
                still_open += 1
            except OSError:
                pass
        assert still_open == 0
        assert server.proc.poll() is None
    assert not [line for line in server.lines if "Traceback" in line or "Too many open" in line]
