"""Reading router configs from YAML or TOML, and the one explainer of validation errors.

    config = load_config("demur.yaml")

Errors name the file, the line, the key path, the value given and the likely fix:

    ConfigError: demur.yaml, line 12, policy: unknown option 'treshold'. Did you mean 'threshold'?
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

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


def _yaml_line(text: str, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the YAML node at `loc`, skipping segments pydantic adds."""
    try:
        import yaml

        node = yaml.compose(text)
    except Exception:
        return None
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(key)), None)
            hit = next((k for k, v in node.value if k.value == str(key)), None)
            if match is None:
                continue  # a union tag such as 'llama_cpp' that is not in the file
            line = (hit or match).start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if key >= len(node.value):
                break
            node = node.value[key]
            line = node.start_mark.line + 1
    return line


def _format_location(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def explain_validation(
    exc: ValidationError,
    source: str | None = None,
    text: str | None = None,
    *,
    what: str = "router config",
    secret: Collection[str] = (),
) -> ConfigError:
    """One ConfigError that explains every problem in `exc`: where, the key path, the message
    and the value given.

    With a `source` (a file name) each problem gets a line of its own, with the YAML line number
    when `text` is the file's YAML; without one (settings from command-line flags) the problems
    share one line. The values of the fields named in `secret` are never shown.
    """
    lines = []
    for error in exc.errors():
        loc = [p for p in error["loc"] if p not in ("llama_cpp", "openai", "scripted")]
        message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        place = _format_location(loc) or "(top level)"
        given = error.get("input")
        hidden = bool(loc) and loc[0] in secret
        shown = (
            ""
            if hidden or given is None or isinstance(given, Mapping | list | tuple | set)
            else f" (got {given!r})"
        )
        if source is None:
            lines.append(f"{place}: {message}{shown}")
            continue
        where = source
        if text is not None and source.endswith(("yaml", "yml")):
            key = message.split("'")[1] if message.startswith("unknown option '") else None
            line = _yaml_line(text, [*error["loc"], *([key] if key else [])])
            if line is not None:
                where += f", line {line}"
        lines.append(f"{where}, {place}: {message}{shown}")
    if source is None:
        return ConfigError(f"invalid {what}: " + "; ".join(lines))
    count = len(lines)
    header = f"invalid {what} ({count} problem{'s' if count > 1 else ''}):\n  "
    return ConfigError(header + "\n  ".join(lines))


def parse_config(data: Any, *, source: str = "<config>", text: str | None = None) -> RouterConfig:
    """Validate a config mapping; ConfigError explains every problem found."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a router config must be a mapping, got {type(data).__name__}")
    try:
        return RouterConfig.model_validate(data)
    except ValidationError as exc:
        raise explain_validation(exc, source, text) from None


def load_config(path: str | Path) -> RouterConfig:
    """Read and validate a YAML or TOML router config."""
    path = Path(path)
    data, text = _read(path)
    return parse_config(data, source=str(path), text=text)


def default_config() -> RouterConfig:
    """The embedded defaults: SmolLM2 answers, Gemma-3 takes escalations, then a person."""
    text = resources.files("demur").joinpath("default_config.toml").read_text(encoding="utf-8")
    return parse_config(tomllib.loads(text), source="demur/default_config.toml")
