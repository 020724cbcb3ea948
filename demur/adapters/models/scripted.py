"""A scripted model for tests and benchmarks: it replies from a list, instantly or after a delay."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from demur.bases import ModelBase
from demur.prompts import ChatPrompt, Prompt
from demur.protocols import FREE, Price
from demur.types import (
    Completion,
    Generation,
    GenerationRequest,
    TokenAlternative,
    TokenLogprob,
    Usage,
)


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    `logprobs` gives one log-probability per token (tokens are the whitespace-separated words
    of `text`); None means the reply carries no logprobs. `error`, when set, is raised instead
    of replying, after `delay_s`.
    """

    text: str = ""
    logprobs: tuple[float, ...] | None = None
    delay_s: float = 0.0
    error: BaseException | None = None
    top: tuple[tuple[tuple[str, float], ...], ...] | None = field(default=None)

    @classmethod
    def confident(cls, text: str, probability: float) -> Reply:
        """A reply whose every token has the given probability."""
        n = max(1, len(text.split()))
        return cls(text=text, logprobs=(math.log(probability),) * n)


ReplySpec = Reply | str | BaseException
Script = Callable[[GenerationRequest], ReplySpec]


def _as_reply(spec: ReplySpec) -> Reply:
    if isinstance(spec, Reply):
        return spec
    if isinstance(spec, BaseException):
        return Reply(error=spec)
    return Reply(text=spec)


def _tokens(reply: Reply, top_k: int) -> tuple[TokenLogprob, ...]:
    assert reply.logprobs is not None
    words = reply.text.split() or [""]
    if len(reply.logprobs) != len(words):
        raise ValueError(
            f"Reply({reply.text!r}) has {len(words)} tokens but {len(reply.logprobs)} logprobs"
        )
    tokens = []
    for i, (word, logprob) in enumerate(zip(words, reply.logprobs, strict=True)):
        if reply.top is not None:
            top = tuple(TokenAlternative(token=t, logprob=lp) for t, lp in reply.top[i][:top_k])
        else:
            top = (TokenAlternative(token=word, logprob=logprob),)[:top_k]
        tokens.append(TokenLogprob(token=word, logprob=logprob, top=top))
    return tuple(tokens)


class ScriptedModel(ModelBase):
    """A model that answers from a script instead of a network or weights.

    `replies` is either a sequence, consumed in order (the last reply repeats), a mapping from
    question text to reply, or a function of the request. A reply is a `Reply`, a plain string,
    or an exception to raise.
    """

    def __init__(
        self,
        name: str,
        replies: Iterable[ReplySpec] | Mapping[str, ReplySpec] | Script,
        *,
        price: Price = FREE,
        default_prompt: Prompt | None = None,
        max_tokens: int = 64,
        timeout_s: float = 30.0,
    ) -> None:
        self.name = name
        self.price = price
        self.default_prompt: Prompt = default_prompt or ChatPrompt()
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.supports_logprobs = True
        self.calls: list[GenerationRequest] = []
        self._script = self._make_script(replies)

    @staticmethod
    def _make_script(
        replies: Iterable[ReplySpec] | Mapping[str, ReplySpec] | Script,
    ) -> Script:
        if callable(replies):
            return replies
        if isinstance(replies, Mapping):
            table: dict[str, ReplySpec] = dict(replies)

            def by_question(request: GenerationRequest) -> ReplySpec:
                text = request.prompt or (request.messages[-1].content if request.messages else "")
                for question, reply in table.items():
                    if question in text:
                        return reply
                raise KeyError(f"ScriptedModel has no reply for {text!r}")

            return by_question
        queue = list(replies)
        if not queue:
            raise ValueError("ScriptedModel needs at least one reply")
        cursor: Iterator[ReplySpec] = itertools.chain(queue, itertools.repeat(queue[-1]))

        def in_order(request: GenerationRequest) -> ReplySpec:
            return next(cursor)

        return in_order

    async def agenerate(self, request: GenerationRequest) -> Generation:
        self.calls.append(request)
        completions = []
        for _ in range(request.n):
            reply = _as_reply(self._script(request))
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if reply.error is not None:
                raise reply.error
            tokens = None
            if request.logprobs and reply.logprobs is not None:
                tokens = _tokens(reply, request.top_logprobs)
            completions.append(Completion(text=reply.text, tokens=tokens, finish_reason="stop"))
        output_tokens = sum(len(c.text.split()) for c in completions)
        prompt = request.prompt or " ".join(m.content for m in request.messages or ())
        return Generation(
            model=self.name,
            completions=tuple(completions),
            usage=Usage(input_tokens=len(prompt.split()), output_tokens=output_tokens),
        )
