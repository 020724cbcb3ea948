"""`construct` and `replace` build the same models as pydantic's model_construct and model_copy."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from demur._construct import construct, replace
from demur.types import Candidate, GenerationRequest, Step, Usage


class WithFactory(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    tags: list[str] = Field(default_factory=list)
    usage: Usage = Usage()


def test_construct_matches_model_construct_with_defaults_and_fields_set():
    candidate = Candidate(text="Paris", model="weak")
    values = {"index": 0, "model": "weak", "candidate": candidate, "calls": 1, "latency_s": 0.1}
    built, reference = construct(Step, **values), Step.model_construct(**values)
    assert built == reference
    assert built.model_dump() == reference.model_dump()
    assert built.model_fields_set == reference.model_fields_set == set(values)
    assert hash(built) == hash(reference)  # frozen models hash by their fields


def test_factories_give_each_model_its_own_default():
    first, second = construct(WithFactory, name="a"), construct(WithFactory, name="b")
    assert first.tags == [] and first.tags is not second.tags
    assert construct(WithFactory, name="c", tags=["x"]).tags == ["x"]
    assert first.usage == Usage()


def test_replace_matches_model_copy_and_leaves_the_original_alone():
    request = GenerationRequest(prompt="Who wrote Emma?")
    changed = replace(request, max_tokens=5, logprobs=True)
    assert changed == request.model_copy(update={"max_tokens": 5, "logprobs": True})
    assert changed.model_fields_set == request.model_fields_set | {"max_tokens", "logprobs"}
    assert request.max_tokens != 5 and not request.logprobs
    assert type(changed) is GenerationRequest
