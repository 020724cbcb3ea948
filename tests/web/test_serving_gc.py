"""The garbage-collector settings a serving process runs with."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from demur.web.serving import SERVING_GC_THRESHOLD, tune_gc_for_serving


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tuning_freezes_what_is_alive_and_collects_the_young_less_often(restored_gc):
    before = gc.get_freeze_count()
    tune_gc_for_serving()
    assert gc.get_threshold()[0] == SERVING_GC_THRESHOLD
    assert gc.get_freeze_count() > before
    # Garbage made after tuning is still collected.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1


def test_a_foreground_server_tunes_its_process_once_started():
    # In a process of its own: run_in_foreground changes the whole interpreter's collector.
    code = textwrap.dedent(
        """
        import gc, os, signal, threading
        from starlette.applications import Starlette
        from demur.web.serving import ListeningServer, run_in_foreground, uvicorn_config
        from demur.web.settings import ListenerSettings

        seen = {}
        class Server(ListeningServer):
            async def startup(self, sockets=None):
                await super().startup(sockets)
                seen["threshold"] = gc.get_threshold()[0]
                seen["frozen"] = gc.get_freeze_count()
                os.kill(os.getpid(), signal.SIGTERM)

        config = uvicorn_config(Starlette(), "127.0.0.1", 0, "warning", 1.0, ListenerSettings())
        run_in_foreground(Server(config, "test"), "127.0.0.1", 0)
        print(seen["threshold"], seen["frozen"] > 0)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == [str(SERVING_GC_THRESHOLD), "True"]
