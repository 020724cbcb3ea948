"""A loaded llama.cpp model and the token loop that decodes from it, in this process.

The loop reads llama.cpp's last-position logits, computes the log-softmax and picks each token
itself, so logprobs cost one vocabulary row per token. `LlamaCppModel` loads the model (here, or
in its worker process) and turns requests into prompt tokens; this module does the rest.
`llama_cpp` itself is never imported here: the loaded model carries the module.
"""

from __future__ import annotations

import codecs
import ctypes
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from demur.adapters.models._cpu import ExtraBuffers
from demur.adapters.models._worker import Cancelled
from demur.types import GenerationRequest, TokenAlternative, TokenLogprob

Logits = npt.NDArray[np.float32]
LogProbs = npt.NDArray[np.float64]

# --- numerics ---------------------------------------------------------------------------------


def log_softmax(logits: Logits) -> LogProbs:
    x = logits.astype(np.float64)
    shifted = x - x.max()
    result: LogProbs = shifted - np.log(np.exp(shifted).sum())
    return result


def top_k(scores: npt.NDArray[np.floating[Any]], k: int) -> npt.NDArray[np.intp]:
    """Indices of the k highest scores, highest first (logits and logprobs rank alike)."""
    k = min(k, scores.size)
    best = np.argpartition(scores, scores.size - k)[-k:]
    ordered: npt.NDArray[np.intp] = best[np.argsort(-scores[best], kind="stable")]
    return ordered


def find_stop(text: str, stops: Sequence[str], start: int) -> int | None:
    """Where the earliest stop string begins in text[start:], or None."""
    found = [i for i in (text.find(s, start) for s in stops if s) if i >= 0]
    return min(found) if found else None


def pick(
    logits: Logits, logprobs: LogProbs | None, temperature: float, rng: np.random.Generator
) -> int:
    """The next token: the argmax at temperature 0, else a draw from the tempered softmax."""
    if temperature == 0 or logprobs is None:
        return int(np.argmax(logits))
    scaled = logprobs / temperature
    weights = np.exp(scaled - scaled.max())
    cumulative = np.cumsum(weights)
    chosen = np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")
    return int(min(chosen, logits.size - 1))


# --- the loaded model -------------------------------------------------------------------------


@dataclass
class Draft:
    """One completion as the token loop builds it."""

    text: str
    tokens: list[TokenLogprob]
    finish_reason: str
    generated: int


@dataclass
class LoadedModel:
    """A llama.cpp model and context, with what the token loop needs at hand."""

    llama_cpp: Any
    llm: Any
    vocab: Any
    n_vocab: int
    chat_format: Any | None
    extra_buffers: ExtraBuffers
    prompt: tuple[int, ...] = ()
    prompt_logits: Logits | None = None

    def piece(self, token: int) -> bytes:
        """The bytes a token decodes to (special tokens render as nothing)."""
        buf = ctypes.create_string_buffer(64)
        n = self.llama_cpp.llama_token_to_piece(self.vocab, token, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self.llama_cpp.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
        return bytes(buf.raw[:n])

    def is_end(self, token: int) -> bool:
        return bool(self.llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def last_logits(self) -> Logits:
        """A copy of the logits at the last evaluated position."""
        pointer = self.llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        if not pointer:
            raise RuntimeError("llama.cpp returned no logits for the last position")
        row: Logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()
        return row

    def truncate(self, n: int) -> None:
        """Forget every evaluated token from position n on."""
        if n >= self.llm.n_tokens:
            return
        memory = self.llama_cpp.llama_get_memory(self.llm.ctx)
        if n > 0 and self.llama_cpp.llama_memory_seq_rm(memory, -1, n, -1):
            self.llm.n_tokens = n
        else:
            self.llm.reset()

    def evaluate(self, tokens: Sequence[int], cancel: threading.Event) -> None:
        """Extend the context with tokens, a batch at a time, stopping if cancelled."""
        step = int(self.llm.n_batch)
        for i in range(0, len(tokens), step):
            if cancel.is_set():
                raise Cancelled
            self.llm.eval(tokens[i : i + step])

    def prefill(self, tokens: Sequence[int], cancel: threading.Event) -> Logits:
        """Evaluate the prompt from an empty context; return its last position's logits.

        llama.cpp's numbers depend on how positions were batched: evaluating only the tail of
        a prompt after a cached prefix gives slightly different logits, and sometimes another
        greedy answer, than evaluating the whole prompt. So the answer never depends on what
        was asked before, only an identical prompt is reused, with the logits it gave.
        """
        key = tuple(tokens)
        if key == self.prompt and self.prompt_logits is not None and self.llm.n_tokens >= len(key):
            self.truncate(len(key))
            return self.prompt_logits.copy()
        self.prompt, self.prompt_logits = (), None
        self.llm.reset()
        self.evaluate(tokens, cancel)
        logits = self.last_logits()
        self.prompt, self.prompt_logits = key, logits
        return logits.copy()

    def close(self) -> None:
        self.llm.close()

    # --- decoding ---

    def decode(
        self,
        logits: Logits,
        request: GenerationRequest,
        rng: np.random.Generator,
        cancel: threading.Event,
    ) -> Draft:
        """Sample one completion, token by token, from the prompt's last logits."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        longest_stop = max((len(s) for s in request.stop), default=0)
        text = ""
        starts: list[int] = []
        tokens: list[TokenLogprob] = []
        for step in range(request.max_tokens):
            if cancel.is_set():
                raise Cancelled
            logprobs = log_softmax(logits) if request.logprobs or request.temperature > 0 else None
            token = pick(logits, logprobs, request.temperature, rng)
            if self.is_end(token):
                return Draft(text, tokens, "stop", step + 1)
            piece = decoder.decode(self.piece(token))
            starts.append(len(text))
            text += piece
            if logprobs is not None and request.logprobs:
                tokens.append(self.token_logprob(piece, token, logits, logprobs, request))
            cut = find_stop(text, request.stop, max(0, starts[-1] - longest_stop + 1))
            if cut is not None:
                kept = sum(1 for s in starts if s < cut)
                return Draft(text[:cut], tokens[:kept], "stop", step + 1)
            if step + 1 < request.max_tokens:
                self.evaluate([token], cancel)
                logits = self.last_logits()
        return Draft(text + decoder.decode(b"", final=True), tokens, "length", request.max_tokens)

    def token_logprob(
        self,
        piece: str,
        token: int,
        logits: Logits,
        logprobs: LogProbs,
        request: GenerationRequest,
    ) -> TokenLogprob:
        """The chosen token's logprob, with the top alternatives when the request asks."""
        top: tuple[TokenAlternative, ...] = ()
        if request.top_logprobs:
            top = tuple(
                TokenAlternative(
                    token=self.piece(int(i)).decode("utf-8", errors="replace"),
                    logprob=float(logprobs[i]),
                )
                for i in top_k(logits, request.top_logprobs)
            )
        return TokenLogprob(token=piece, logprob=float(logprobs[token]), top=top)


__all__ = ["Draft", "LoadedModel", "Logits", "find_stop", "log_softmax", "pick", "top_k"]
