"""Reading router configs from YAML or TOML; `_explain` turns validation errors into messages.

    config = load_config("demur.yaml")

Errors name the file, the line, the key path, the value given and the likely fix:

    ConfigError: demur.yaml, line 12, policy: unknown option 'treshold'. Did you mean 'threshold'?
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from demur.config._explain import explain_validation
from demur.config.schema import RouterConfig
from demur.errors import ConfigError, MissingDependencyError


def _read(path: Path) -> tuple[Any, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist; check the path, or run without --config "
            "to use the built-in defaults"
        ) from None
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text), text
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise MissingDependencyError("pyyaml", "yaml", "YAML configs") from None
        try:
            return yaml.safe_load(text), text
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    raise ConfigError(f"{path}: config files must end in .yaml, .yml or .toml")


def parse_config(data: Any, *, source: str = "<config>", text: str | None = None) -> RouterConfig:
    """Validate a config mapping; ConfigError explains every problem found."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a router config must be a mapping, got {type(data).__name__}")
    try:
        return RouterConfig.model_validate(data)
    except ValidationError as exc:
        raise explain_validation(exc, source, text, schema=RouterConfig) from None


def load_config(path: str | Path) -> RouterConfig:
    """Read and validate a YAML or TOML router config."""
    path = Path(path)
    data, text = _read(path)
    return parse_config(data, source=str(path), text=text)


def default_config() -> RouterConfig:
    """The embedded defaults: SmolLM2 answers, Gemma-3 takes escalations, then a person."""
    text = resources.files("demur").joinpath("default_config.toml").read_text(encoding="utf-8")
    return parse_config(tomllib.loads(text), source="demur/default_config.toml")


__all__ = ["default_config", "explain_validation", "load_config", "parse_config"]
