"""`demur predictor fit` and `demur predictor eval` on small records files."""

from __future__ import annotations

import json

import pytest

from demur.adapters.embeddings import minilm
from demur.cli import main
from demur.embedders import register_embedder
from demur.errors import MissingDependencyError
from demur.pregen import Predictor
from tests.pregen.conftest import EMBEDDER, TopicEmbedder, topic_rows


@pytest.fixture
def topic_embedder() -> TopicEmbedder:
    embedder = TopicEmbedder()
    register_embedder(EMBEDDER, lambda: embedder, replace=True)
    return embedder


def _records(path, rows):
    lines = []
    for row in rows:
        record = {"question": row.question, "context": list(row.context)}
        for model, outcome in row.outcomes.items():
            record[model] = {"correct": outcome.correct, "seconds": outcome.seconds}
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fit_then_eval(tmp_path, capsys, topic_embedder):
    records = _records(tmp_path / "records.jsonl", topic_rows())
    out = tmp_path / "predictor.json"
    fit = ["predictor", "fit", str(records), "--learner", "knn", "--k", "10"]
    code = main([*fit, "--embedder", EMBEDDER, "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "knn(k=10, prior=2.0) on test-topics, fitted on 90 questions" in printed
    assert f"written to {out}" in printed
    predictor = Predictor.load(out)
    assert predictor.training.data == str(records)
    assert predictor.predict("about football")["weak"] > 0.6

    assert main(["predictor", "eval", str(out), str(records), "--folds", "3"]) == 0
    printed = capsys.readouterr().out
    assert ": 90 questions, 3-fold cross-fitted (these are the rows it was fitted on)" in printed
    assert "weak → strong: skip weak for the lowest P(weak)" in printed
    assert "random routing" in printed
    assert "PreGenerationRouter at min_success 0.5 starts at: weak" in printed


def test_errors_are_reported_without_a_traceback(tmp_path, capsys, topic_embedder):
    bad = tmp_path / "rows.jsonl"
    bad.write_text(json.dumps({"row": 1, "weak": {"correct": True}}) + "\n")
    assert main(["predictor", "fit", str(bad), "--embedder", EMBEDDER]) == 2
    assert "line 1: 'question' is missing" in capsys.readouterr().err
    assert main(["predictor", "eval", str(tmp_path / "none.json"), str(bad)]) == 2
    assert "cannot read the predictor file" in capsys.readouterr().err


def _have_minilm() -> bool:
    try:
        minilm.check_minilm()
    except MissingDependencyError:
        return False
    return True


@pytest.mark.skipif(not _have_minilm(), reason=minilm.INSTALL)
def test_fit_and_eval_with_the_real_minilm_embedder(tmp_path, capsys):
    records = _records(tmp_path / "records.jsonl", topic_rows(12))
    out = tmp_path / "predictor.json"
    assert main(["predictor", "fit", str(records), "--learner", "logistic", "--out", str(out)]) == 0
    assert "logistic(C=0.1) on minilm-l6, fitted on 36 questions" in capsys.readouterr().out
    predictor = Predictor.load(out)
    assert predictor.dimension == 384
    football, chemistry = (
        predictor.predict(f"question 99 about {topic} number 5")["weak"]
        for topic in ("football", "chemistry")
    )
    assert football > chemistry
    assert main(["predictor", "eval", str(out), str(records), "--folds", "3"]) == 0
    assert "P(success) per model: AUROC" in capsys.readouterr().out
