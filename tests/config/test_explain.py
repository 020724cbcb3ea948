"""`explain_validation`: the one way a pydantic ValidationError becomes a ConfigError.

Every pydantic error type reads as a located, plain sentence with the fix, never as pydantic's
own text.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field, ValidationError

from demur.config import load_config
from demur.config.load import explain_validation
from demur.errors import ConfigError

PYDANTIC_PHRASES = (
    "Input should be",
    "validation error for",
    "https://errors.pydantic.dev",
    "Field required",
    "Extra inputs are not permitted",
    "Unable to extract tag",
    "does not match any of the expected tags",
    "should have at least",
    "unable to parse",
)


class Settings(BaseModel):
    port: int = Field(default=8000, ge=0, le=65535)
    secret: str | None = Field(default=None, repr=False, min_length=16)


def error(**values: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    return caught.value


def test_a_file_gets_a_line_per_problem_with_the_yaml_line():
    text = "port: 70000\n"
    explained = explain_validation(error(port=70000), "demur.yaml", text, schema=Settings)
    assert isinstance(explained, ConfigError)
    assert str(explained) == (
        "invalid router config (1 problem):\n"
        "  demur.yaml, line 1, port: must be <= 65535 (got 70000)"
    )


def test_settings_from_flags_share_one_line_and_name_what_they_are():
    explained = explain_validation(error(port=-1, secret="short"), what="review settings")
    assert str(explained) == (
        "invalid review settings: port: must be >= 0 (got -1); "
        "secret: must be at least 16 characters (got 'short')"
    )


def test_secret_values_are_never_shown():
    explained = explain_validation(error(secret="short"), what="review settings", secret=["secret"])
    assert "short" not in str(explained)
    assert "secret: must be at least 16 characters" in str(explained)


# --- every kind of mistake in a router config ------------------------------------------------

MODEL = "models:\n  weak:\n    kind: scripted\n    replies: [Paris]\n"
POLICY = "policy:\n  threshold: 0.5\n"


def problem(tmp_path: Path, text: str, name: str = "demur.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    for phrase in PYDANTIC_PHRASES:
        assert phrase not in message, message
    return message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(  # union_tag_invalid: a misspelt model kind
            "models:\n  weak:\n    kind: llamacpp\n    builtin: smollm2-135m\n" + POLICY,
            "demur.yaml, line 3, models.weak.kind: unknown kind 'llamacpp'. "
            "Did you mean 'llama_cpp'? Accepted: llama_cpp, openai, scripted",
            id="union_tag_invalid",
        ),
        pytest.param(  # union_tag_not_found: a model without a kind
            "models:\n  weak:\n    builtin: smollm2-135m\n" + POLICY,
            "line 2, models.weak.kind: 'kind' is missing; add one of llama_cpp, openai, "
            "scripted, e.g. `kind: llama_cpp`",
            id="union_tag_not_found",
        ),
        pytest.param(  # the same for a nested union: a prompt's kind
            "models:\n  weak:\n    kind: scripted\n    replies: [Paris]\n"
            "    prompt: {kind: chatt}\n" + POLICY,
            "line 5, models.weak.prompt.kind: unknown kind 'chatt'. Did you mean 'chat'? "
            "Accepted: chat, few_shot",
            id="union_tag_invalid-nested",
        ),
        pytest.param(  # missing: a required section
            POLICY,
            "demur.yaml, models: the required section 'models' is missing; add it, e.g. "
            "`models: {answerer: {kind: llama_cpp, builtin: smollm2-135m}}`",
            id="missing-section",
        ),
        pytest.param(  # missing: a required option inside a section
            "models:\n  weak:\n    kind: openai\n" + POLICY,
            "line 2, models.weak.base_url: the required option 'base_url' is missing; add it, "
            "e.g. `base_url: http://localhost:8080/v1`",
            id="missing-option",
        ),
        pytest.param(  # literal_error
            MODEL + POLICY + "retrieval:\n  grounding: {kind: ragg}\n",
            "line 8, retrieval.grounding.kind: unknown value 'ragg'. Did you mean 'rag'? "
            "Accepted: rag, confident_rag, situated",
            id="literal_error",
        ),
        pytest.param(
            MODEL + POLICY + "tracing: {exporter: otlpp}\n",
            "line 7, tracing.exporter: unknown value 'otlpp'. Did you mean 'otlp'? "
            "Accepted: jsonl, console, otlp, none",
            id="literal_error-tracing",
        ),
        pytest.param(  # extra_forbidden, from a model class that is not a config section
            "models:\n  weak:\n    kind: scripted\n    replies: [Paris]\n"
            "    price: {inpt_per_1k: 1}\n" + POLICY,
            "line 5, models.weak.price: unknown option 'inpt_per_1k'. Did you mean "
            "'input_per_1k'? Allowed: input_per_1k, output_per_1k",
            id="extra_forbidden",
        ),
        pytest.param(  # int_parsing
            MODEL + "    max_tokens: lots\n" + POLICY,
            "line 5, models.weak.max_tokens: must be a whole number (got 'lots')",
            id="int_parsing",
        ),
        pytest.param(  # float_parsing
            MODEL + "    timeout_s: soon\n" + POLICY,
            "line 5, models.weak.timeout_s: must be a number (got 'soon')",
            id="float_parsing",
        ),
        pytest.param(  # bool_parsing
            MODEL + POLICY + "tracing: {capture_content: maybe}\n",
            "line 7, tracing.capture_content: must be true or false (got 'maybe')",
            id="bool_parsing",
        ),
        pytest.param(  # greater_than_equal
            MODEL + POLICY + "budget: {max_steps: 0}\n",
            "line 7, budget.max_steps: must be >= 1 (got 0)",
            id="greater_than_equal",
        ),
        pytest.param(  # less_than_equal
            MODEL + "policy:\n  threshold: 0.5\n  per_model: {weak: 2}\n",
            "line 7, policy.per_model.weak: must be <= 1 (got 2)",
            id="less_than_equal",
        ),
        pytest.param(  # string_type: a number where text goes
            "models:\n  weak:\n    kind: openai\n    base_url: 5\n" + POLICY,
            'line 4, models.weak.base_url: must be text, got 5; write it in quotes: "5"',
            id="string_type",
        ),
        pytest.param(  # list_type
            "models:\n  weak:\n    kind: scripted\n    replies: Paris\n" + POLICY,
            "line 4, models.weak.replies: must be a list; for one item write [Paris]",
            id="list_type",
        ),
        pytest.param(  # dict_type
            "models: [weak]\n" + POLICY,
            "line 1, models: must be a mapping of names to values",
            id="dict_type",
        ),
        pytest.param(  # model_type: a section that is not a mapping
            MODEL + "policy: 0.5\n",
            "line 5, policy: must be a mapping of options: kind, per_model, rungs, threshold "
            "(got 0.5)",
            id="model_type",
        ),
        pytest.param(  # model_attributes_type: a model that is not a mapping
            "models:\n  weak: 5\n" + POLICY,
            "line 2, models.weak: must be a mapping with 'kind': one of llama_cpp, openai, "
            "scripted (got 5)",
            id="model_attributes_type",
        ),
        pytest.param(  # too_short
            "models: {}\n" + POLICY,
            "line 1, models: needs at least 1 entry, got none; add one, e.g. `models: ",
            id="too_short",
        ),
        pytest.param(  # a union branch's own message wins over the other branch's type error
            "models:\n  weak:\n    kind: scripted\n    replies: [{text: Paris, logprob: [-1]}]\n"
            + POLICY,
            "line 4, models.weak.replies[0]: unknown option 'logprob'. Did you mean 'logprobs'? "
            "Allowed: logprobs, text",
            id="value_error-union",
        ),
        pytest.param(  # no branch of a union fits: what each would have taken
            "models:\n  weak:\n    kind: scripted\n    replies: [5]\n" + POLICY,
            "line 4, models.weak.replies[0]: must be a mapping or text (got 5)",
            id="union-types",
        ),
    ],
)
def test_each_error_type_is_located_and_says_the_fix(tmp_path, text, expected):
    message = problem(tmp_path, text)
    assert expected in message
    assert message.count("\n") == 1, message  # one problem, one line


def test_toml_errors_get_the_same_form_without_a_line(tmp_path):
    message = problem(
        tmp_path, '[models.weak]\nkind = "llamacpp"\nbuiltin = "x"\n', name="demur.toml"
    )
    assert "demur.toml, models.weak.kind: unknown kind 'llamacpp'. Did you mean 'llama_cpp'?" in (
        message
    )
    assert "demur.toml, policy: the required section 'policy' is missing" in message
