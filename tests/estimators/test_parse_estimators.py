"""`demur.estimators.parse_estimators`: the estimator spec the CLI and the benchmarks share."""

import pytest

from demur import ConfigError, MeanTokenEntropy, MeanTokenLogprob
from demur.estimators import parse_estimators
from demur.estimators.registry import parse_spec_entries


def test_names_and_typed_options():
    mean, entropy = parse_estimators(" mean_logprob , entropy:top_k=3 ,")
    assert isinstance(mean, MeanTokenLogprob)
    assert isinstance(entropy, MeanTokenEntropy)
    assert entropy.needs.top_logprobs == 3


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("entropy:top_k", "needs key=value"),
        (" , ", "name at least one"),
        ("mean_logprb", "Did you mean 'mean_logprob'"),
    ],
)
def test_bad_specs_raise_config_error(spec: str, message: str):
    with pytest.raises(ConfigError, match=message):
        parse_estimators(spec)


def test_name_lets_one_estimator_run_with_several_measures():
    jaccard, rouge = parse_estimators(
        "agreement:similarity=jaccard,name=agreement_j,agreement:similarity=rougeL:name=agr_r"
    )
    assert (jaccard.name, jaccard.similarity) == ("agreement_j", "jaccard")
    assert (rouge.name, rouge.similarity) == ("agr_r", "rougeL")


def test_an_option_after_a_comma_continues_the_estimator_before_it():
    (agreement,) = parse_estimators("agreement:similarity=jaccard,samples=3")
    assert (agreement.similarity, agreement.samples) == ("jaccard", 3)


def test_defaults_fill_only_options_the_spec_leaves_out():
    plain, capped, mean = parse_estimators(
        "agreement,agreement:similarity=jaccard:samples=3,mean_logprob", defaults={"samples": 19}
    )
    assert (plain.samples, capped.samples) == (19, 3)
    assert isinstance(mean, MeanTokenLogprob)


def test_specs_are_checked_without_building():
    (entry,) = parse_spec_entries("agreement:samples=4:name=a4")
    assert (entry.kind, dict(entry.options), entry.name) == ("agreement", {"samples": 4}, "a4")
    assert entry.accepts("samples") and not entry.accepts("top_k")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("agreement,agreement", "two estimators are named 'agreement_rougeL'"),
        ("samples=3,agreement", "comes before any estimator"),
        ("agreement:name=a b", "must be letters, digits"),
        ("agreement:samples=3,samples=4", "given twice"),
    ],
)
def test_bad_names_and_repeated_options_raise_config_error(spec: str, message: str):
    with pytest.raises(ConfigError, match=message):
        parse_estimators(spec)


def test_entries_name_the_models_their_estimators_ask():
    judge, verbal, mean = parse_spec_entries("judge:judge=strong,verbal:model=weak,mean_logprob")
    assert (judge.asked_models(), verbal.asked_models(), mean.asked_models()) == (
        ["strong"],
        ["weak"],
        [],
    )
