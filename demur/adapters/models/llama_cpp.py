"""A local GGUF model run by llama.cpp, with logprobs over the full vocabulary.

Generation is a token loop over llama.cpp's last-position logits: demur computes the
log-softmax and picks the token itself (`_llama_decode`), so logprobs cost one vocabulary row
per token instead of llama-cpp-python's `logits_all=True` buffer (n_ctx x n_vocab floats, about
2 GB for Gemma).

By default the model runs in a worker process (`_worker.ModelWorker`), so a crash inside
llama.cpp fails one call instead of the process that serves users; `isolation="thread"` runs
it in this process. `llama_cpp` is imported on first use; the weights load on the first call.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from demur.adapters.models import catalog
from demur.adapters.models._cpu import cpu_flags, decide_extra_buffers
from demur.adapters.models._llama_decode import Draft, LoadedModel
from demur.adapters.models._worker import Cancelled, ModelWorker, WorkerSpec
from demur.bases import ModelBase
from demur.errors import (
    ConfigError,
    ContextOverflowError,
    DemurError,
    MissingDependencyError,
    ModelError,
    ModelNotFoundError,
    PermanentModelError,
)
from demur.prompts import ChatPrompt, CompletionPrompt, Prompt
from demur.protocols import FREE, Price
from demur.types import Completion, Generation, GenerationRequest, Usage

logger = logging.getLogger("demur.llama_cpp")

_T = TypeVar("_T")

# --- llama.cpp's native log -------------------------------------------------------------------

_recent_log: collections.deque[str] = collections.deque(maxlen=8)
_log_callback: Any = None  # kept referenced: llama.cpp calls it from C


def _install_log_callback(llama_cpp: Any) -> None:
    """Route llama.cpp's stderr chatter to the `demur.llama_cpp` logger at DEBUG.

    The last lines are kept so a failed load can say what llama.cpp complained about. This
    replaces llama.cpp's process-wide log callback.
    """
    global _log_callback
    if _log_callback is not None:
        return

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace").rstrip()
        if line:
            _recent_log.append(line)
            logger.debug("%s", line)

    _log_callback = forward
    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingDependencyError("llama-cpp-python", "local", "LlamaCppModel") from exc
    _install_log_callback(llama_cpp)
    return llama_cpp


Isolation = Literal["process", "thread"]

# Llama() reads llama_model_default_params() while it loads; loads are serialised so that the
# temporary override of that function below is seen by one load only.
_load_lock = threading.Lock()


@contextlib.contextmanager
def _model_defaults(llama_cpp: Any, extra_buffers: bool) -> Iterator[None]:
    """Make the model parameters llama-cpp-python starts from carry our `use_extra_bufts`."""
    module = llama_cpp.llama_cpp
    original = module.llama_model_default_params

    def defaults() -> Any:
        params = original()
        params.use_extra_bufts = extra_buffers
        return params

    with _load_lock:
        module.llama_model_default_params = defaults
        try:
            yield
        finally:
            module.llama_model_default_params = original


# --- the adapter ------------------------------------------------------------------------------


class LlamaCppModel(ModelBase):
    """A GGUF model run locally by llama.cpp: free, private, and with full logprobs.

    Give either `path` (a .gguf file) or `builtin` (one of `catalog.BUILTIN_MODELS`, e.g.
    "smollm2-135m"). `chat` says whether the model is instruction-tuned, which picks the
    default prompt (ChatPrompt or CompletionPrompt); it defaults to the built-in's kind, or
    True for a path. `n_ctx` defaults to the built-in's context size, or 2048.
    Sampling at temperature 0 is greedy; otherwise plain softmax sampling, seeded from
    `request.seed` or `seed` so runs repeat exactly. The same request gives the same answer
    and logprobs whatever was asked before.

    `isolation="process"` (the default) runs llama.cpp in a worker process: a native crash or
    an out-of-memory kill fails that call with `ModelCrashedError`, a hung worker is killed
    after `timeout_s`, and the next call starts a new worker. `isolation="thread"` runs it in
    this process (quicker to start; for notebooks and tests). `extra_buffers` switches
    llama.cpp's repacked weight buffers on or off; unset, they are off on CPUs with AMX,
    where they can crash, and on elsewhere.
    """

    provider = "llama.cpp"
    supports_logprobs = True

    def __init__(
        self,
        name: str,
        *,
        path: str | os.PathLike[str] | None = None,
        builtin: str | None = None,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        chat: bool | None = None,
        max_tokens: int = 64,
        timeout_s: float = 60.0,
        price: Price = FREE,
        default_prompt: Prompt | None = None,
        seed: int = 0,
        isolation: Isolation = "process",
        extra_buffers: bool | None = None,
    ) -> None:
        if (path is None) == (builtin is None):
            raise ConfigError(
                f"LlamaCppModel '{name}' needs exactly one of path= (a .gguf file) or "
                f"builtin= (one of: {', '.join(catalog.BUILTIN_MODELS)})"
            )
        if importlib.util.find_spec("llama_cpp") is None:
            raise MissingDependencyError("llama-cpp-python", "local", "LlamaCppModel")
        entry = catalog.builtin(builtin) if builtin is not None else None
        if entry is not None:
            entry.check()
        self.name = name
        self.builtin = builtin
        self.path: Path | None = None
        if path is not None:
            self.path = Path(path).expanduser()
            if not self.path.is_file():
                raise ModelNotFoundError(
                    f"no model file at {self.path} for '{name}'. Check the path, or use a "
                    f"built-in model: LlamaCppModel('{name}', builtin='smollm2-135m') "
                    f"(built-ins: {', '.join(catalog.BUILTIN_MODELS)})",
                    model=name,
                )
        self.n_ctx = n_ctx or (entry.n_ctx if entry is not None else 2048)
        self.n_threads = n_threads or _available_cores()
        self.chat = chat if chat is not None else (entry.chat if entry is not None else True)
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.price = price
        self.seed = seed
        if default_prompt is not None:
            self.default_prompt: Prompt = default_prompt
        elif entry is not None and self.chat == entry.chat:
            self.default_prompt = entry.default_prompt()
        else:
            self.default_prompt = ChatPrompt() if self.chat else CompletionPrompt()
        if self.n_ctx < 16 or self.n_threads < 1 or max_tokens < 1 or not timeout_s > 0:
            raise ConfigError(
                f"LlamaCppModel '{name}': n_ctx must be >= 16, n_threads >= 1, max_tokens >= 1 "
                f"and timeout_s > 0; got n_ctx={self.n_ctx}, n_threads={self.n_threads}, "
                f"max_tokens={max_tokens}, timeout_s={timeout_s}"
            )
        if isolation not in ("process", "thread"):
            raise ConfigError(
                f"LlamaCppModel '{name}': isolation must be 'process' (a worker process that "
                f"may crash without taking this one down) or 'thread'; got {isolation!r}"
            )
        self.isolation = isolation
        self.extra_buffers = extra_buffers
        self._lock = threading.Lock()
        self._loaded: LoadedModel | None = None
        self._worker: ModelWorker | None = None
        if isolation == "process":
            spec = WorkerSpec(
                module=__name__,
                factory=type(self).__name__,
                kwargs={
                    "name": name,
                    "path": str(self.path) if self.path is not None else None,
                    "builtin": builtin,
                    "n_ctx": self.n_ctx,
                    "n_threads": self.n_threads,
                    "chat": self.chat,
                    "max_tokens": max_tokens,
                    "timeout_s": timeout_s,
                    "seed": seed,
                    "isolation": "thread",
                    "extra_buffers": extra_buffers,
                },
            )
            self._worker = ModelWorker(name, spec)

    @property
    def worker_pid(self) -> int | None:
        """The worker process's id while one runs (None in-process or before the first call)."""
        return self._worker.pid if self._worker is not None else None

    @property
    def model_id(self) -> str:
        """The built-in's name, or the GGUF file's name without its extension."""
        if self.builtin:
            return self.builtin
        return self.path.stem if self.path is not None else self.name

    def __repr__(self) -> str:
        source = f"builtin={self.builtin!r}" if self.builtin else f"path='{self.path}'"
        return f"LlamaCppModel({self.name!r}, {source}, n_ctx={self.n_ctx})"

    # --- lifecycle ----------------------------------------------------------------------------

    async def aload(self) -> None:
        """Load the weights now rather than on the first call."""
        if self._worker is not None:
            await asyncio.to_thread(self._worker.load)
        else:
            await asyncio.to_thread(self.load_blocking)

    async def aclose(self) -> None:
        """Free the weights (and stop the worker); a later call loads them again."""
        if self._worker is not None:
            await asyncio.to_thread(self._worker.close)
        else:
            await asyncio.to_thread(self.close_blocking)

    def load_blocking(self) -> None:
        """Load the weights in the calling thread."""
        self._run_locked(self._ensure_loaded)

    def close_blocking(self) -> None:
        """Free the weights in the calling thread."""
        self._run_locked(self._unload)

    def _run_locked(self, action: Callable[[], _T]) -> _T:
        with self._lock:
            return action()

    def _unload(self) -> None:
        if self._loaded is not None:
            self._loaded.close()
            self._loaded = None

    def _ensure_loaded(self) -> LoadedModel:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded

    def _model_path(self) -> Path:
        if self.path is not None:
            return self.path
        assert self.builtin is not None
        try:
            return catalog.resolve_builtin(self.builtin)
        except DemurError as exc:
            raise PermanentModelError(str(exc), model=self.name) from None

    def _load(self) -> LoadedModel:
        llama_cpp = _import_llama_cpp()
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        path = self._model_path()
        extra_buffers = decide_extra_buffers(self.extra_buffers, cpu_flags())
        logger.debug("%s: %s", self.name, extra_buffers.reason)
        _recent_log.clear()
        try:
            with _model_defaults(llama_cpp, extra_buffers.enabled):
                llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    logits_all=False,
                    # A full-size sliding-window cache lets the context rewind to any prefix.
                    swa_full=True,
                    seed=self.seed,
                    verbose=False,
                )
        except Exception as exc:
            said = "; ".join(
                line for line in list(_recent_log)[-4:] if "failed to load model" not in line
            )
            raise PermanentModelError(
                f"llama.cpp could not load {path} for '{self.name}': {exc}"
                + (f" (llama.cpp said: {said})" if said else "")
                + ". Check that it is a GGUF file this llama-cpp-python version supports.",
                model=self.name,
            ) from None
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        template = llm.metadata.get("tokenizer.chat_template")
        chat_format = None
        if template:
            # Templates may spell out BOS and EOS, so they need their text.
            def text(token: int) -> str:
                raw = llama_cpp.llama_vocab_get_text(vocab, token) if token != -1 else None
                return raw.decode(errors="replace") if raw else ""

            chat_format = Jinja2ChatFormatter(
                template=template,
                eos_token=text(llm.token_eos()),
                bos_token=text(llm.token_bos()),
            )
        return LoadedModel(
            llama_cpp=llama_cpp,
            llm=llm,
            vocab=vocab,
            n_vocab=int(llm.n_vocab()),
            chat_format=chat_format,
            extra_buffers=extra_buffers,
        )

    # --- generation ---------------------------------------------------------------------------

    async def agenerate(self, request: GenerationRequest) -> Generation:
        cancel = threading.Event()
        try:
            if self._worker is not None:
                return await asyncio.to_thread(
                    self._worker.generate, request, cancel, self.timeout_s
                )
            return await asyncio.to_thread(self.generate_blocking, request, cancel)
        except asyncio.CancelledError:
            cancel.set()  # generation stops at its next token and frees the model
            raise

    def generate_blocking(self, request: GenerationRequest, cancel: threading.Event) -> Generation:
        """Generate in this process, in the calling thread."""
        with self._lock:
            if cancel.is_set():
                raise Cancelled
            try:
                return self._generate_locked(request, cancel)
            except (ModelError, Cancelled):
                raise
            except DemurError as exc:
                raise PermanentModelError(str(exc), model=self.name) from None
            except Exception as exc:
                logger.debug("llama.cpp failed in %s", self.name, exc_info=True)
                if self._loaded is not None:
                    self._loaded.llm.reset()
                raise PermanentModelError(
                    f"llama.cpp failed while generating with '{self.name}': "
                    f"{type(exc).__name__}: {exc}",
                    model=self.name,
                ) from None

    def _generate_locked(self, request: GenerationRequest, cancel: threading.Event) -> Generation:
        model = self._ensure_loaded()
        tokens = self._prompt_tokens(model, request)
        if len(tokens) + request.max_tokens > self.n_ctx:
            raise ContextOverflowError(
                f"prompt is {len(tokens)} tokens but {self.name}'s context window is "
                f"{self.n_ctx} (with {request.max_tokens} reserved for the answer); "
                "shorten the question or raise n_ctx",
                model=self.name,
                prompt_tokens=len(tokens),
                limit=self.n_ctx - request.max_tokens,
            )
        first = model.prefill(tokens, cancel)
        base_seed = (request.seed if request.seed is not None else self.seed) % 2**63
        drafts: list[Draft] = []
        for i in range(request.n):
            if drafts and request.temperature == 0:
                drafts.append(drafts[0])  # greedy decoding repeats itself exactly
                continue
            model.truncate(len(tokens))
            rng = np.random.default_rng([base_seed, i])
            drafts.append(model.decode(first, request, rng, cancel))
        return Generation(
            model=self.name,
            completions=tuple(
                Completion(
                    text=d.text,
                    tokens=tuple(d.tokens) if request.logprobs else None,
                    finish_reason=d.finish_reason,
                )
                for d in drafts
            ),
            usage=Usage(input_tokens=len(tokens), output_tokens=sum(d.generated for d in drafts)),
        )

    def _prompt_tokens(self, model: LoadedModel, request: GenerationRequest) -> list[int]:
        if request.messages is not None:
            if model.chat_format is None:
                raise PermanentModelError(
                    f"'{self.name}' has no chat template in its GGUF (a base model?), so it "
                    "cannot take chat messages; give it a CompletionPrompt (or chat=False)",
                    model=self.name,
                )
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            try:
                text = model.chat_format(messages=messages).prompt
            except Exception as exc:
                raise PermanentModelError(
                    f"the chat template of '{self.name}' rejected the messages: {exc}",
                    model=self.name,
                ) from None
            # The template writes any BOS itself and may contain special-token markup.
            tokens = model.llm.tokenize(text.encode(), add_bos=False, special=True)
        elif request.prompt is not None:
            tokens = model.llm.tokenize(request.prompt.encode(), add_bos=True, special=False)
        else:
            raise PermanentModelError(
                "the request has neither messages nor a prompt", model=self.name
            )
        if not tokens:
            raise PermanentModelError(
                f"the prompt for '{self.name}' is empty; pass some text to continue",
                model=self.name,
            )
        return list(tokens)


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
