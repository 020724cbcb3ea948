"""A model that replays answers already given, so logged traffic can be scored offline."""

from __future__ import annotations

from collections.abc import Sequence

from demur.bases import ModelBase
from demur.errors import PermanentModelError
from demur.types import Completion, Generation, GenerationRequest, TokenLogprob


class ReplayModel(ModelBase):
    """Answers with a logged response (greedy requests) and logged samples (sampled requests).

    Call `load` before each route. Requests it cannot answer from the log (a judge prompt,
    more samples than were logged) raise PermanentModelError saying so, which the router
    records on the estimator that asked.
    """

    provider = "replay"
    supports_logprobs = True

    def __init__(self, name: str = "logged") -> None:
        self.name = name
        self._response = ""
        self._tokens: tuple[TokenLogprob, ...] | None = None
        self._samples: list[str] = []
        self._served = False

    def load(
        self, response: str, samples: Sequence[str] = (), logprobs: Sequence[float] | None = None
    ) -> None:
        self._response = response
        self._samples = list(samples)
        self._tokens = None
        if logprobs is not None:
            # Logged logprobs come without token texts; estimators only read the numbers.
            self._tokens = tuple(TokenLogprob(token="", logprob=lp) for lp in logprobs)
        self._served = False

    async def agenerate(self, request: GenerationRequest) -> Generation:
        if request.temperature == 0:
            if self._served:
                error = PermanentModelError(
                    f"'{self.name}' replays logged answers and cannot answer a new prompt; "
                    "estimators that ask a model need a live model (demur eval --model)",
                    model=self.name,
                )
                error.public_message = True  # names the fix, quotes nothing
                raise error
            self._served = True
            tokens = self._tokens if request.logprobs else None
            return Generation(
                model=self.name,
                completions=(Completion(text=self._response, tokens=tokens, finish_reason="stop"),),
            )
        if not self._samples:
            raise PermanentModelError(f"no more logged samples for '{self.name}'", model=self.name)
        taken, self._samples = self._samples[: request.n], self._samples[request.n :]
        return Generation(
            model=self.name,
            completions=tuple(Completion(text=t, finish_reason="stop") for t in taken),
        )
