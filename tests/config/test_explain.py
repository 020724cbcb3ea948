"""`explain_validation`: the one way a pydantic ValidationError becomes a ConfigError."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError

from demur.config.load import explain_validation
from demur.errors import ConfigError


class Settings(BaseModel):
    port: int = Field(default=8000, ge=0, le=65535)
    secret: str | None = Field(default=None, repr=False, min_length=16)


def error(**values: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    return caught.value


def test_a_file_gets_a_line_per_problem_with_the_yaml_line():
    text = "port: 70000\n"
    explained = explain_validation(error(port=70000), "demur.yaml", text)
    assert isinstance(explained, ConfigError)
    assert str(explained) == (
        "invalid router config (1 problem):\n"
        "  demur.yaml, line 1, port: Input should be less than or equal to 65535 (got 70000)"
    )


def test_settings_from_flags_share_one_line_and_name_what_they_are():
    explained = explain_validation(error(port=-1, secret="short"), what="review settings")
    assert str(explained) == (
        "invalid review settings: port: Input should be greater than or equal to 0 (got -1); "
        "secret: String should have at least 16 characters (got 'short')"
    )


def test_secret_values_are_never_shown():
    explained = explain_validation(error(secret="short"), what="review settings", secret=["secret"])
    assert "short" not in str(explained)
    assert "secret: String should have at least 16 characters" in str(explained)
