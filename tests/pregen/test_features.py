import math

import numpy as np
import pytest

from demur.errors import ConfigError
from demur.pregen import CHEAP_FEATURES, Featurizer
from tests.pregen.conftest import EMBEDDER


def test_features_of_questions_with_and_without_passages(topic_embedder):
    features = Featurizer(EMBEDDER).features(
        ["Who won the football final?", "What is chemistry?"],
        [["football report one", "a painting"], []],
    )
    assert len(features) == 2
    assert features.names == CHEAP_FEATURES
    assert features.embedding.shape == (2, topic_embedder.dimension)
    np.testing.assert_allclose(np.linalg.norm(features.embedding, axis=1), 1.0, rtol=1e-6)
    first, second = (
        dict(zip(CHEAP_FEATURES, features.cheap[0], strict=True)),
        dict(zip(CHEAP_FEATURES, features.cheap[1], strict=True)),
    )
    assert first["question_words"] == pytest.approx(math.log1p(5))
    assert first["passages"] == pytest.approx(math.log1p(2))
    assert first["passage_words"] == pytest.approx(math.log1p(2.5))
    # the football passage is close to the football question, the painting one is not
    assert first["similarity_max"] > 0.8 > first["similarity_mean"]
    assert second["passages"] == second["passage_words"] == second["similarity_max"] == 0.0
    assert ("query", 2) in topic_embedder.calls and ("passage", 2) in topic_embedder.calls


def test_without_similarity_passages_are_not_embedded(topic_embedder):
    features = Featurizer(EMBEDDER, similarity=False).features(["q about football"], [["p"]])
    assert features.cheap.shape == (1, 3)
    assert [kind for kind, _ in topic_embedder.calls] == ["query"]


def test_take_selects_rows(topic_embedder):
    features = Featurizer(EMBEDDER).features(["football", "painting", "chemistry"])
    part = features.take(np.array([True, False, True]))
    assert len(part) == 2 and part.names == features.names
    np.testing.assert_array_equal(part.embedding[1], features.embedding[2])


def test_mistakes_are_named(topic_embedder):
    featurizer = Featurizer(EMBEDDER)
    with pytest.raises(ConfigError, match="list of questions, not one string"):
        featurizer.features("football")
    with pytest.raises(ConfigError, match="2 questions and 1 contexts"):
        featurizer.features(["a", "b"], [[]])
    with pytest.raises(ConfigError, match="embedder name such as 'minilm-l6'"):
        Featurizer(42)  # type: ignore[arg-type]
