"""The `demur` command, end to end in a subprocess-free way (main(argv)) and through real models."""

from __future__ import annotations

import json
import textwrap
import tomllib

import pytest

from demur import Verdict
from demur.cli import main
from demur.config import parse_config

SCRIPTED = """\
models:
  weak:
    kind: scripted
    replies: [{text: "Lyon", logprobs: [-1.5]}]
  strong:
    kind: scripted
    replies: [{text: "Paris", logprobs: [-0.05]}]
estimators: [mean_logprob]
policy:
  threshold: 0.5
  rungs: [{escalate: strong}, human]
queue: {path: QUEUE}
tracing: {exporter: jsonl, path: TRACES}
"""


@pytest.fixture
def scripted_config(tmp_path):
    path = tmp_path / "demur.yaml"
    text = SCRIPTED.replace("QUEUE", str(tmp_path / "q.db"))
    path.write_text(text.replace("TRACES", str(tmp_path / "traces.jsonl")))
    return path


def spans(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_config_show_prints_the_valid_defaults(capsys):
    assert main(["config", "show"]) == 0
    parse_config(tomllib.loads(capsys.readouterr().out))


def test_config_check(scripted_config, tmp_path, capsys):
    assert main(["config", "check", str(scripted_config)]) == 0
    assert "valid; models weak, strong" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(SCRIPTED.replace("threshold", "treshold"))
    assert main(["config", "check", str(bad)]) == 2
    assert "Did you mean 'threshold'?" in capsys.readouterr().err


def test_ask_prints_steps_and_writes_a_trace(scripted_config, tmp_path, capsys):
    assert main(["ask", "What is the capital of France?", "--config", str(scripted_config)]) == 0
    out = capsys.readouterr().out
    assert "escalate" in out and "Paris" in out and "confidence 0.95" in out
    written = spans(tmp_path / "traces.jsonl")
    assert {"demur.route", "demur.attempt", "chat weak", "chat strong"} <= {
        s["name"] for s in written
    }
    [route] = [s for s in written if s["name"] == "demur.route"]
    assert [e["attributes"]["demur.action"] for e in route["events"]] == ["escalate", "accept"]
    assert route["resource"]["service.name"] == "demur-cli"


def test_ask_json_is_a_verdict(scripted_config, capsys):
    assert main(["ask", "Capital?", "--config", str(scripted_config), "--json"]) == 0
    verdict = Verdict.model_validate_json(capsys.readouterr().out)
    assert verdict.answer == "Paris"
    assert [s.model for s in verdict.steps] == ["weak", "strong"]


def test_ask_with_context_and_trace_override(scripted_config, tmp_path, capsys):
    other = tmp_path / "elsewhere.jsonl"
    argv = [
        "ask",
        "Capital?",
        "--context",
        "Paris is the capital of France.",
        "--config",
        str(scripted_config),
        "--trace-file",
        str(other),
    ]
    assert main(argv) == 0
    assert other.exists() and spans(other)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ask", "  "], "the question is empty"),
        (["ask", "Q?", "--config", "/nonexistent/demur.yaml"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_demo_on_a_question_file_of_your_own(scripted_config, tmp_path, capsys):
    questions = tmp_path / "questions.jsonl"
    rows = [
        {"id": "q1", "question": "Capital of France?", "context": "Paris.", "answers": ["Paris"]},
        {"id": "q2", "question": "Capital of Italy?", "answers": ["Rome"]},
    ]
    questions.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = tmp_path / "report.json"
    argv = [
        "demo",
        "--config",
        str(scripted_config),
        "--questions",
        str(questions),
        "--json",
        str(report),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Summary" in out and "accuracy, always strong" in out
    summary = json.loads(report.read_text())
    assert summary["questions"] == 2
    assert summary["answered"] == 2
    assert summary["escalated"] == 2
    assert summary["answered_accuracy"] == 0.5  # "Paris" is right once, wrong for Rome
    assert summary["baseline_accuracy"] == {"weak": 0.0, "strong": 0.5}
    assert summary["model_call_share"]["strong"] == 1.0
    assert summary["reached"] == {"weak": 2, "strong": 2}
    assert "questions asked of strong" in out and "model-seconds" in out
    # Both routes asked the strong model, so always-strong cost what its steps did.
    assert summary["always_strong_seconds"] > 0
    assert summary["guarantee"] is None  # these thresholds are not the fitted defaults
    assert "error guarantee" not in out


def test_demo_reports_whether_the_default_guarantee_held(tmp_path, capsys):
    from demur.demo.runner import default_guarantee

    fitted = default_guarantee()
    config = tmp_path / "demur.yaml"
    per_model = ", ".join(f"{m}: {t}" for m, t in fitted.thresholds.items())
    config.write_text(
        SCRIPTED.replace("QUEUE", str(tmp_path / "q.db"))
        .replace("TRACES", str(tmp_path / "traces.jsonl"))
        .replace("  threshold: 0.5\n", f"  threshold: 0.5\n  per_model: {{{per_model}}}\n")
    )
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        json.dumps({"id": "q1", "question": "Capital of France?", "answers": ["Paris"]}) + "\n"
    )
    report = tmp_path / "report.json"
    argv = ["demo", "--config", str(config), "--questions", str(questions), "--json", str(report)]
    assert main(argv) == 0
    guarantee = json.loads(report.read_text())["guarantee"]
    assert guarantee["alpha"] == fitted.alpha and guarantee["delta"] == fitted.delta
    assert guarantee["observed_error"] == 0.0 and guarantee["held"] is True
    assert "error guarantee" in capsys.readouterr().out


@pytest.mark.local_model
def test_demo_runs_the_real_local_cascade(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--limit", "3", "--json", "report.json"]) == 0
    out = capsys.readouterr().out
    assert "demur demo: 3 HaluEval-QA questions" in out
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["questions"] == 3
    assert summary["answered"] + summary["pending_human"] + summary["abstained"] == 3
    names = [s["name"] for s in spans(tmp_path / ".demur" / "traces.jsonl")]
    assert names.count("demur.route") == 3
    assert "chat qwen2.5-1.5b" in names  # the default route starts at the strong model


@pytest.mark.local_model
def test_ask_through_the_real_local_models(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "ask",
            "Who wrote Emma?",
            "--context",
            "Emma is a novel by Jane Austen, published in 1815.",
            "--json",
        ]
    )
    assert code == 0
    verdict = Verdict.model_validate_json(capsys.readouterr().out)
    first = verdict.steps[0]
    assert first.model == "strong" and first.candidate is not None
    assert first.candidate.tokens  # real per-token logprobs
    assert 0.0 < (first.confidence or 0.0) <= 1.0
    assert textwrap.dedent(verdict.trace_id or "") != ""


RAG_CONFIG = """\
models:
  weak: {kind: llama_cpp, builtin: smollm2-135m, max_tokens: 24}
estimators: [mean_logprob, {name: retrieval, statistic: top1}]
policy:
  threshold: 0.99
  rungs: [{retrieve_more: {k: 2, rewrite: true}}, abstain]
retrieval:
  store: STORE
  embedders: [minilm-l6, e5-small]
  grounding: {kind: confident_rag, k: 1}
tracing: {exporter: jsonl, path: TRACES}
"""


@pytest.mark.local_model
def test_index_then_ask_with_confident_rag_through_real_chroma_and_a_real_model(tmp_path, capsys):
    notes = tmp_path / "notes.md"
    notes.write_text(
        "# Towers\n\nThe Eiffel Tower in Paris was completed in 1889.\n\n"
        "# Rivers\n\nThe Danube flows into the Black Sea.\n"
    )
    store = tmp_path / "chroma"
    assert main(["index", str(notes), "--store", str(store), "--chunk-size", "12",
                 "--overlap", "2", "--embedders", "minilm-l6,e5-small"]) == 0  # fmt: skip
    config = tmp_path / "demur.yaml"
    text = RAG_CONFIG.replace("STORE", str(store))
    config.write_text(text.replace("TRACES", str(tmp_path / "traces.jsonl")))
    capsys.readouterr()
    assert main(["ask", "When was the Eiffel Tower completed?", "--config", str(config),
                 "--json"]) == 0  # fmt: skip
    verdict = Verdict.model_validate_json(capsys.readouterr().out)
    first, second = verdict.steps
    assert [b.name for b in first.branches] == ["minilm-l6", "e5-small"]
    assert all("Eiffel" in b.candidate.documents[0].text for b in first.branches)
    assert first.decision is not None and first.decision.action.kind == "retrieve_more"
    assert all(len(b.retrieval.documents) == 2 and b.retrieval.rewritten is not None
               for b in second.branches)  # fmt: skip
    names = [s["name"] for s in spans(tmp_path / "traces.jsonl")]
    assert names.count("retrieval") == 4 and "demur.branch minilm-l6" in names
