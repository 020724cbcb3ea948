"""`demur.estimators.parse_estimators`: the estimator spec the CLI and the benchmarks share."""

import pytest

from demur import ConfigError, MeanTokenEntropy, MeanTokenLogprob
from demur.estimators import parse_estimators


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
