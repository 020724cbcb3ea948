import json

import numpy as np
import pytest

from demur.errors import ConfigError, DataError
from demur.pregen import (
    KnnPredictor,
    LogisticPredictor,
    Outcome,
    Predictor,
    RoutingRow,
    cross_fit,
    evaluate_predictor,
)
from demur.types import Query
from tests.pregen.conftest import EMBEDDER, topic_rows

LEARNERS = [
    pytest.param(lambda: KnnPredictor(EMBEDDER, k=10), id="knn"),
    pytest.param(lambda: LogisticPredictor(EMBEDDER, C=1.0), id="logistic"),
]


@pytest.mark.parametrize("make", LEARNERS)
def test_predictions_follow_the_topic(make, rows, topic_embedder):
    predictor = make().fit(rows, data="topics")
    football = predictor.predict(Query("new question about football"))
    painting = predictor.predict("new question about painting")
    chemistry = predictor.predict("new question about chemistry")
    assert set(football) == {"weak", "strong"}
    assert football["weak"] > 0.6 > painting["weak"]
    assert football["weak"] > chemistry["weak"]
    assert painting["strong"] > 0.6 > chemistry["strong"]
    assert predictor.training is not None
    assert predictor.training.rows == len(rows)
    assert predictor.training.per_model == {"weak": 90, "strong": 90}
    assert predictor.training.data == "topics"
    assert predictor.costs == {"weak": 1.0, "strong": 3.0}
    assert predictor.predicted_models == ("weak", "strong")


@pytest.mark.parametrize("make", LEARNERS)
def test_cross_fitted_predictions_rank_the_held_out_rows(make, rows, topic_embedder):
    predictor = make()
    features = predictor.featurizer.features([r.question for r in rows], [r.context for r in rows])
    weak = np.array([float(r.outcomes["weak"].success) for r in rows])
    oof = cross_fit(predictor, features, {"weak": weak}, folds=3, seed=1)
    assert not np.isnan(oof["weak"]).any()
    assert oof["weak"][weak == 1].mean() > oof["weak"][weak == 0].mean() + 0.3


@pytest.mark.parametrize("make", LEARNERS)
def test_a_model_with_few_rows_or_one_label_gets_no_prediction(make, topic_embedder):
    rows = topic_rows(10)
    rows = [
        RoutingRow(
            r.question,
            r.context,
            {**r.outcomes, "perfect": Outcome(correct=True)}
            | ({"rare": Outcome(correct=i % 2 == 0)} if i < 5 else {}),
        )
        for i, r in enumerate(rows)
    ]
    predictor = make().fit(rows)
    predicted = predictor.predict("question about football")
    assert predicted["perfect"] is None and predicted["rare"] is None
    assert predicted["weak"] is not None
    assert predictor.training.per_model["rare"] == 5


def test_a_row_without_outcomes_or_no_rows_is_refused(topic_embedder):
    with pytest.raises(DataError, match="no rows"):
        KnnPredictor(EMBEDDER).fit([])
    with pytest.raises(DataError, match="have no model outcome"):
        KnnPredictor(EMBEDDER).fit([RoutingRow("q about football")])
    with pytest.raises(ConfigError, match="not fitted"):
        KnnPredictor(EMBEDDER).predict("q")


def test_options_are_checked():
    with pytest.raises(ConfigError, match=r"KnnPredictor\(k=0\): k must be >= 1"):
        KnnPredictor(EMBEDDER, k=0)
    with pytest.raises(ConfigError, match=r"LogisticPredictor\(C=0\): C must be > 0"):
        LogisticPredictor(EMBEDDER, C=0)
    with pytest.raises(ConfigError, match="min_rows must be >= 2"):
        KnnPredictor(EMBEDDER, min_rows=1)


# --- files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("make", LEARNERS)
def test_save_and_load_round_trip(make, rows, tmp_path, topic_embedder):
    predictor = make().fit(rows)
    path = tmp_path / "p.json"
    predictor.save(path)
    document = json.loads(path.read_text())
    assert document["kind"] == "pregen_predictor" and document["version"] == 1
    assert document["embedder"] == EMBEDDER and document["learner"] == predictor.learner
    assert document["training"]["sha256"] == predictor.training.sha256
    loaded = Predictor.load(path)
    assert type(loaded) is type(predictor)
    assert loaded.options() == predictor.options()
    assert type(predictor).load(path).describe() == predictor.describe()
    questions = ["about football", "about painting", "about chemistry"]
    for model, p in predictor.predict_many(questions).items():
        np.testing.assert_allclose(loaded.predict_many(questions)[model], p, rtol=1e-5)


def test_a_learner_class_reads_only_its_own_files(rows, tmp_path, topic_embedder):
    KnnPredictor(EMBEDDER).fit(rows).save(tmp_path / "knn.json")
    with pytest.raises(ConfigError, match="holds a 'knn' predictor; load it with KnnPredictor"):
        LogisticPredictor.load(tmp_path / "knn.json")


def _damage(tmp_path, rows, change):
    path = tmp_path / "p.json"
    KnnPredictor(EMBEDDER).fit(rows).save(path)
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(kind="ensemble"), "holds kind 'ensemble', not 'pregen_predictor'"),
        (lambda d: d.update(version=7), "format version 7; this demur reads version 1"),
        (lambda d: d.update(learner="forest"), "learner 'forest' is unknown; known learners"),
        (lambda d: d.pop("models"), "models: Field required"),
        (lambda d: d["options"].update(k=0), r"k must be >= 1"),
        (lambda d: d["options"].update(depth=3), "options do not fit KnnPredictor"),
        (
            lambda d: d["state"]["embeddings"].update(shape=[3, 5]),
            r"state.embeddings holds \d+ bytes, but dtype float32 and shape \[3, 5\] need 60",
        ),
        (
            lambda d: d["state"]["embeddings"].update(base64="!!"),
            "state.embeddings.base64 is not valid base64",
        ),
        (lambda d: d["state"]["labels"].pop("weak") and d["state"].pop("base_rates"), "base_rates"),
        (lambda d: d.update(features=["question_words"]), "features .* do not match the options"),
    ],
)
def test_bad_files_name_the_field_and_the_fix(change, message, rows, tmp_path, topic_embedder):
    path = _damage(tmp_path, rows, change)
    with pytest.raises(ConfigError, match=message) as error:
        Predictor.load(path)
    assert "p.json" in str(error.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the predictor file"):
        Predictor.load(tmp_path / "nothing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        Predictor.load(tmp_path / "bad.json")


def test_logistic_weights_of_the_wrong_length(rows, tmp_path, topic_embedder):
    path = tmp_path / "p.json"
    LogisticPredictor(EMBEDDER).fit(rows).save(path)
    document = json.loads(path.read_text())
    document["state"]["weights"]["weak"]["coef"].pop()
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=r"weights.weak.coef has 9 values; it needs one per"):
        Predictor.load(path)


def test_another_embedder_dimension_is_refused(rows, tmp_path, topic_embedder):
    predictor = KnnPredictor(EMBEDDER).fit(rows)
    features = predictor.featurizer.features(["football"])
    narrower = type(features)(features.embedding[:, :3], features.cheap, features.names)
    with pytest.raises(ConfigError, match="fitted on 5-d embeddings"):
        predictor.predict_features(narrower)


# --- evaluation --------------------------------------------------------------------------------


def test_evaluate_predictor(rows, topic_embedder):
    predictor = LogisticPredictor(EMBEDDER, C=1.0).fit(rows)
    report = evaluate_predictor(predictor, rows, folds=3, min_success=0.5)
    assert report.in_sample and report.ladder == ("weak", "strong")
    figures = {f.model: f for f in report.models}
    assert figures["weak"].auroc_cross_fitted > 0.8
    assert figures["weak"].success_rate == pytest.approx(33 / 90)
    first, last = report.curve[0], report.curve[-1]
    assert first.share == 0 and first.accuracy == pytest.approx(33 / 90)
    assert last.share == 1 and last.accuracy == pytest.approx(57 / 90)
    assert report.curve[3].accuracy > report.random[3].accuracy
    assert report.starts["strong"] == pytest.approx(2 / 3, abs=0.1)
    assert report.routed_accuracy > 0.6
