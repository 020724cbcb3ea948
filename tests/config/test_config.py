"""Router configs: validation messages that name the place and the fix, and building routers."""

from __future__ import annotations

import textwrap

import pytest

from demur import ConfigError, Escalate, Ladder, ScriptedModel
from demur.config import default_config, load_config, load_router, parse_config

GOOD_YAML = """\
models:
  weak:
    kind: scripted
    replies: [{text: "Lyon", logprobs: [-1.2]}]
  strong:
    kind: scripted
    replies: [{text: "Paris", logprobs: [-0.05]}]
    price: {input_per_1k: 0.5, output_per_1k: 1.5}
estimators: [mean_logprob, {name: entropy, top_k: 3}]
combine: min
policy:
  kind: ladder
  threshold: 0.5
  per_model: {strong: 0.4}
  rungs:
    - escalate: strong
    - human
    - abstain: "No idea."
queue: {path: QUEUE}
budget: {max_steps: 2, deadline_s: 30}
retry: {max_attempts: 2}
"""


def write(tmp_path, text: str, name: str = "demur.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).replace("QUEUE", str(tmp_path / "q.db")))
    return path


def test_a_yaml_config_builds_a_working_router(tmp_path):
    router = load_router(write(tmp_path, GOOD_YAML))
    assert list(router.models) == ["weak", "strong"]
    assert isinstance(router.models["weak"], ScriptedModel)
    assert isinstance(router.policy, Ladder)
    assert router.policy.rungs[0] == Escalate("strong")
    assert router.budget.max_steps == 2
    assert [e.name for e in router.estimators] == ["mean_logprob", "entropy"]
    verdict = router.route("Capital of France?")
    assert verdict.answer == "Paris"
    assert verdict.model == "strong"


def test_a_toml_config_works_too(tmp_path):
    path = write(
        tmp_path,
        """\
        [models.only]
        kind = "scripted"
        replies = ["Paris"]

        [policy]
        threshold = 0.5
        """,
        name="demur.toml",
    )
    verdict = load_router(path).route("Capital?")
    # No logprobs from this script, so no confidence: the default rung abstains.
    assert verdict.status == "abstained"


def test_typos_are_reported_with_file_line_path_and_suggestion(tmp_path):
    bad = GOOD_YAML.replace("threshold: 0.5", "treshold: 0.5").replace("max_steps", "max_stepz")
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, bad))
    message = str(err.value)
    assert "2 problems" in message
    assert (
        "demur.yaml, line 13, policy: unknown option 'treshold'. Did you mean 'threshold'?"
        in message
    )
    assert "line 20, budget: unknown option 'max_stepz'. Did you mean 'max_steps'?" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("threshold: 0.5", "threshold: 1.5"),
            "policy.threshold: must be a number in [0, 1] (e.g. 0.6)",
        ),
        (("escalate: strong", "escalate: strnog"), "names model 'strnog'"),
        (("[mean_logprob,", "[mean_logprb,"), "Did you mean 'mean_logprob'?"),
        (
            (
                'kind: scripted\n    replies: [{text: "Lyon"',
                'kind: scriptd\n    replies: [{text: "Lyon"',
            ),
            "models.weak",
        ),
        (("queue: {path: QUEUE}", ""), "add `queue: {path: .demur/queue.db}`"),
        (("- human", "- humane"), "unknown rung 'humane'"),
    ],
)
def test_each_mistake_gets_a_clear_message(tmp_path, change, expected):
    with pytest.raises(ConfigError, match=None) as err:
        load_config(write(tmp_path, GOOD_YAML.replace(*change)))
    assert expected in str(err.value)


def test_missing_file_and_bad_syntax(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "models: [unclosed"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "models = [", name="x.toml"))
    with pytest.raises(ConfigError, match="must end in .yaml, .yml or .toml"):
        load_config(write(tmp_path, "{}", name="x.json"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config(["not", "a", "mapping"])


def test_a_missing_model_file_is_a_clear_error(tmp_path):
    config = parse_config(
        {
            "models": {"m": {"kind": "llama_cpp", "path": str(tmp_path / "missing.gguf")}},
            "policy": {"threshold": 0.5},
        }
    )
    from demur.config import build_router

    with pytest.raises(ConfigError, match="missing.gguf"):
        build_router(config)


def test_llama_cpp_needs_exactly_one_source():
    with pytest.raises(ConfigError, match="exactly one of 'builtin'"):
        parse_config({"models": {"m": {"kind": "llama_cpp"}}, "policy": {"threshold": 0.5}})


def test_the_embedded_default_config_is_valid():
    config = default_config()
    assert set(config.models) == {"weak", "strong"}
    assert {m.builtin for m in config.models.values()} == {"qwen2.5-0.5b", "qwen2.5-1.5b"}
    assert config.queue is not None
    assert config.tracing.exporter == "jsonl"
    assert not config.tracing.capture_content


def test_the_default_thresholds_are_the_fitted_ones():
    """default_config.toml and demur/demo/thresholds.json (bench_ladder.py --defaults) agree."""
    from demur.demo.runner import default_guarantee

    config, fitted = default_config(), default_guarantee()
    assert config.estimators[0].name == "mean_logprob"
    for model, threshold in config.policy.per_model.items():
        assert threshold == fitted.thresholds[model], model
    assert set(config.policy.per_model) == set(fitted.thresholds)


def test_estimator_options_are_checked_when_the_config_is_read(tmp_path):
    # A misspelt option: the file, the line, the key and the fix, from `config check` onwards.
    path = write(
        tmp_path,
        """\
        models:
          m: {kind: scripted, replies: ["x"]}
        estimators:
          - name: entropy
            topk: 5
        policy:
          threshold: 0.5
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (
        f"{path}, line 5, estimators[0]: unknown option 'topk' for estimator 'entropy'. "
        "Did you mean 'top_k'? It accepts: top_k." in str(info.value)
    )
    # A value out of range: the constructor's own message, located.
    with pytest.raises(ConfigError, match=r"estimators\[0\]: .*top_k must be in 2..20"):
        parse_config(
            {
                "models": {"m": {"kind": "scripted", "replies": ["x"]}},
                "estimators": [{"name": "entropy", "top_k": 1}],
                "policy": {"threshold": 0.5},
            }
        )


def test_sampling_section(tmp_path):
    config = parse_config(
        {
            "models": {"m": {"kind": "scripted", "replies": ["x"]}},
            "policy": {"threshold": 0.5},
            "sampling": {"temperature": 0.7, "adaptive": True, "batch_size": 3},
        }
    )
    assert config.sampling.adaptive and config.sampling.batch_size == 3
    with pytest.raises(ConfigError, match="Did you mean 'adaptive'"):
        parse_config(
            {
                "models": {"m": {"kind": "scripted", "replies": ["x"]}},
                "policy": {"threshold": 0.5},
                "sampling": {"adaptiv": True},
            }
        )


# --- retrieval ---------------------------------------------------------------------------------

RAG_YAML = """\
models:
  weak: {kind: scripted, replies: ["Paris"]}
estimators: [mean_logprob]
policy:
  threshold: 0.5
  rungs:
    - retrieve_more: {k: 10}
    - retrieve_more: {retriever: e5-small, cutoff: true}
    - retrieve_more
    - abstain
"""


def test_retrieve_more_rungs_parse_into_actions():
    from demur import RetrieveMore

    config = parse_config(
        __import__("yaml").safe_load(
            RAG_YAML + "retrieval: {embedders: [minilm-l6, e5-small], store: STORE}\n"
        )
    )
    actions = [r.to_action() for r in config.policy.rungs]
    assert actions[:3] == [
        RetrieveMore(k=10),
        RetrieveMore(retriever="e5-small", cutoff=True),
        RetrieveMore(),
    ]


def test_retrieve_more_without_a_retrieval_section_says_what_to_add(tmp_path):
    with pytest.raises(ConfigError, match="no 'retrieval' section"):
        load_config(write(tmp_path, RAG_YAML))


def test_retrieval_names_are_checked_against_the_embedders(tmp_path):
    with pytest.raises(ConfigError, match="names 'mpnet'.*Did you mean 'mpnet-base'"):
        load_config(
            write(
                tmp_path,
                RAG_YAML.replace("retriever: e5-small", "retriever: mpnet")
                + "retrieval: {embedders: [minilm-l6, mpnet-base]}\n",
            )
        )
    with pytest.raises(ConfigError, match="cutoffs names embedder 'e5-small'"):
        load_config(
            write(
                tmp_path,
                RAG_YAML.replace("retriever: e5-small, ", "")
                + "retrieval: {embedders: [minilm-l6], cutoffs: {e5-small: c.json}}\n",
            )
        )


def test_confident_rag_needs_two_embedders(tmp_path):
    text = RAG_YAML.replace("retriever: e5-small, ", "") + (
        "retrieval: {embedders: [minilm-l6], grounding: {kind: confident_rag}}\n"
    )
    with pytest.raises(ConfigError, match="at least 2 in retrieval.embedders"):
        load_config(write(tmp_path, text))


def test_a_config_shares_one_embedder_between_its_retriever_and_estimators(tmp_path):
    from demur.adapters.embeddings import minilm
    from demur.errors import MissingDependencyError

    try:
        minilm.check_minilm()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    text = GOOD_YAML.replace(
        "estimators: [mean_logprob, {name: entropy, top_k: 3}]",
        "estimators:\n"
        "  - {name: groundedness, method: embedding, embedder: minilm-l6}\n"
        "  - {name: agreement, similarity: embedding, embedder: minilm-l6}\n",
    )
    store = tmp_path / "chroma"
    text += f"retrieval: {{embedders: [minilm-l6], store: {store}, allow_empty_store: true}}\n"
    router = load_router(write(tmp_path, text))
    retriever_embedder = router.retrievers["minilm-l6"].embedder
    assert all(e.embedder is retriever_embedder for e in router.estimators)
