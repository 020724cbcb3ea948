"""A query's own generation settings: they reach the answer's request, and only when given."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from demur import Abstain, Ladder, MeanTokenLogprob, Query, Reply, Router, ScriptedModel
from demur.types import GenerationOptions


def router() -> tuple[Router, ScriptedModel]:
    model = ScriptedModel("only", [Reply.confident("Paris", 0.9)], max_tokens=64)
    return Router([model], estimators=[MeanTokenLogprob()], policy=Ladder(0.5, [Abstain()])), model


def test_without_options_the_request_keeps_the_routers_settings():
    r, model = router()
    r.route("Capital of France?")
    request = model.calls[0]
    assert (request.max_tokens, request.temperature, request.seed) == (64, 0.0, None)
    assert request.stop == ("\n",)  # the default prompt's


def test_a_querys_options_replace_the_settings_and_add_stop_sequences():
    r, model = router()
    options = GenerationOptions(max_tokens=5, temperature=0.7, stop=("END", "\n"), seed=3)
    r.route(Query("Capital of France?", generation=options))
    request = model.calls[0]
    assert (request.max_tokens, request.temperature, request.seed) == (5, 0.7, 3)
    assert request.stop == ("\n", "END")


@pytest.mark.parametrize(
    "bad", [{"max_tokens": 0}, {"temperature": -0.1}, {"temperature": 2.5}, {"nope": 1}]
)
def test_options_out_of_range_are_refused(bad):
    with pytest.raises(ValidationError):
        GenerationOptions(**bad)
