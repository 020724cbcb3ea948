"""A pydantic ValidationError as one ConfigError: for each problem, where it is (file, line, key
path), what was given, what is accepted, a did-you-mean for a near miss, and the fix.

Every pydantic error type reads as a plain sentence here, never as pydantic's own text:

    demur.yaml, line 3, models.weak.kind: unknown kind 'llamacpp'. Did you mean 'llama_cpp'?
    Accepted: llama_cpp, openai, scripted
"""

from __future__ import annotations

import re
import types
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from demur.errors import ConfigError, did_you_mean

Loc = Sequence[int | str]

# What to add for a missing key, where a bare `key: ...` would not say enough.
_EXAMPLES = {
    "models": "models: {answerer: {kind: llama_cpp, builtin: smollm2-135m}}",
    "policy": "policy: {threshold: 0.5}",
    "threshold": "threshold: 0.5",
    "base_url": "base_url: http://localhost:8080/v1",
    "replies": "replies: [Paris]",
    "text": "text: Paris",
    "name": "name: mean_logprob",
}

# What a value of the wrong type should have been, by pydantic error type.
_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "iterable_type": "a list",
    "dict_type": "a mapping",
    "mapping_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dataclass_type": "a mapping",
}

_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}
_OWN = ("value_error", "assertion_error")  # messages demur's validators wrote


# --- where: the schema's types along a location ----------------------------------------------


def _alternatives(tp: Any) -> list[Any]:
    """The types an annotation allows: Annotated and Optional peeled off, unions split."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _alternatives(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [alt for arg in get_args(tp) for alt in _alternatives(arg)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _literals(tp: Any) -> list[Any]:
    return [v for alt in _alternatives(tp) if get_origin(alt) is Literal for v in get_args(alt)]


def _tags(model: type[BaseModel], field: str) -> list[Any]:
    """The values `model`'s discriminator `field` accepts (its Literal)."""
    info = model.model_fields.get(field)
    return _literals(info.annotation) if info is not None else []


def _labels(tp: Any) -> set[Any]:
    """The names pydantic gives a union branch in an error's location."""
    if _is_model(tp):
        tags = {v for info in tp.model_fields.values() for v in _literals(info.annotation)}
        return {tp.__name__, *tags}
    return {getattr(tp, "__name__", None), str(tp)}


@dataclass
class _Place:
    """An error's location as the file writes it (union branches dropped), and its types."""

    path: list[int | str]
    types: list[Any]
    union_at: str | None  # where the last union on the way was, when the error is in one branch


def _walk(root: type[BaseModel] | None, loc: Loc) -> _Place:
    if root is None:
        return _Place(list(loc), [], None)
    path: list[int | str] = []
    here: list[Any] = [root]
    union_at = None
    for part in loc:
        options = [alt for tp in here for alt in _alternatives(tp)]
        is_field = any(_is_model(t) and part in t.model_fields for t in options)
        chosen = [t for t in options if part in _labels(t)] if not is_field else []
        if len(options) > 1 and chosen:
            here, union_at = chosen, _format_location(path)
            continue
        path.append(part)
        following: list[Any] = []
        for t in options:
            args = get_args(t)
            if _is_model(t) and isinstance(part, str) and part in t.model_fields:
                following.append(t.model_fields[part].annotation)
            elif get_origin(t) in (dict, Mapping) and len(args) == 2:
                following.append(args[1])
            elif get_origin(t) in (list, tuple, set, frozenset, Sequence) and args:
                following.append(args[0])
        here = following
    return _Place(path, here, union_at)


def _fields(tps: Sequence[Any]) -> list[str]:
    return sorted(
        {name for t in tps for a in _alternatives(t) if _is_model(a) for name in a.model_fields}
    )


def _mapping_of(tps: Sequence[Any]) -> str:
    """What a mapping at a place holds: its options, or for a union of sections the key that
    says which one (e.g. " with 'kind': one of llama_cpp, openai, scripted")."""
    models = [a for t in tps for a in _alternatives(t) if _is_model(a)]
    if len(models) > 1:
        for key in models[0].model_fields:
            tags = [str(v) for m in models for v in _tags(m, key)]
            if all(_tags(m, key) for m in models):
                return f" with '{key}': one of {', '.join(tags)}"
    fields = _fields(models)
    return f" of options: {', '.join(fields)}" if fields else " of names to values"


def _format_location(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _yaml_line(text: str, loc: Loc) -> int | None:
    """The 1-based line of the YAML node at `loc`, or of its nearest ancestor in the file."""
    try:
        import yaml

        node = yaml.compose(text)
    except Exception:
        return None
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == str(key)), None)
            if found is None:
                continue  # not in the file: a union tag, or a key that is missing
            line = found[0].start_mark.line + 1
            node = found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if key >= len(node.value):
                break
            node = node.value[key]
            line = node.start_mark.line + 1
    return line


# --- what: a plain sentence per pydantic error type ------------------------------------------


def _quoted(listing: str) -> list[str]:
    """The values in pydantic's "'a', 'b' or 'c'"; the text itself when nothing is quoted."""
    return re.findall(r"'([^']*)'", listing) or [listing]


def _unknown(what: str, given: Any, accepted: Sequence[Any]) -> str:
    names = [str(a) for a in accepted]
    return (
        f"unknown {what} {given!r}.{did_you_mean(str(given), names)} Accepted: {', '.join(names)}"
    )


def _bound(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _placeholder(tps: Sequence[Any]) -> str:
    for t in (a for tp in tps for a in _alternatives(tp)):
        if _is_model(t) or get_origin(t) in (dict, Mapping):
            return "{...}"
        if get_origin(t) in (list, tuple, set, Sequence):
            return "[...]"
        if get_origin(t) is Literal:
            return str(get_args(t)[0])
        if t in (int, float):
            return "1" if t is int else "0.5"
        if t is bool:
            return "true"
    return "..."


@dataclass
class _Problem:
    place: str
    line_loc: list[int | str]
    message: str
    type: str
    given: str  # " (got ...)", or ""
    union_at: str | None
    shallow: bool  # about the value a union got as a whole, not about something inside it
    expects: list[str]  # for a value of the wrong type: what it should have been


def _problem(error: Any, root: type[BaseModel] | None, secret: Collection[str]) -> _Problem:
    kind, ctx = error["type"], error.get("ctx") or {}
    given = error.get("input")
    at = _walk(root, error["loc"])
    path, line_loc = list(at.path), list(at.path)
    show_given = True
    if kind == "missing":
        field = path[-1] if path else "?"
        example = _EXAMPLES.get(str(field)) or f"{field}: {_placeholder(at.types)}"
        what = "section" if len(path) == 1 else "option"
        message = f"the required {what} '{field}' is missing; add it, e.g. `{example}`"
        show_given = False
    elif kind == "extra_forbidden":
        field = str(path.pop()) if path else "?"
        allowed = _fields(_walk(root, error["loc"][:-1]).types)
        hint = did_you_mean(field, allowed) if allowed else ""
        known = f" Allowed: {', '.join(allowed)}" if allowed else " Remove it."
        message = f"unknown option '{field}'.{hint}{known}"
        show_given = False
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        key = str(ctx.get("discriminator", "kind")).strip("'")
        path.append(key)
        line_loc = list(path)
        if kind == "union_tag_invalid":
            message = _unknown(key, ctx.get("tag"), _quoted(str(ctx.get("expected_tags", ""))))
        else:
            tags = [
                str(v)
                for t in at.types
                for a in _alternatives(t)
                if _is_model(a)
                for v in _tags(a, key)
            ]
            choice = f" one of {', '.join(tags)}, e.g. `{key}: {tags[0]}`" if tags else f" `{key}`"
            message = f"'{key}' is missing; add{choice}"
        show_given = False
    elif kind in ("literal_error", "enum"):
        message = _unknown("value", given, _quoted(str(ctx.get("expected", ""))))
        show_given = False
    elif kind == "string_type" and isinstance(given, int | float):
        message = f'must be text, got {given!r}; write it in quotes: "{given}"'
        show_given = False
    elif kind in _EXPECTED and kind.startswith(("model", "dict", "mapping", "dataclass")):
        message = f"must be a mapping{_mapping_of(at.types)}"
    elif kind in ("list_type", "tuple_type", "set_type") and isinstance(given, str | int | float):
        message = f"must be a list; for one item write [{given}]"
    elif kind in _EXPECTED:
        message = f"must be {_EXPECTED[kind]}"
    elif kind in ("too_short", "too_long"):
        least = kind == "too_short"
        limit = ctx.get("min_length" if least else "max_length", 0)
        actual = ctx.get("actual_length", 0)
        items = "entry" if str(ctx.get("field_type", "")).lower() == "dictionary" else "item"
        message = (
            f"needs {'at least' if least else 'at most'} {_plural(int(limit), items)}, "
            f"got {actual or 'none'}"
        )
        if least and path and str(path[-1]) in _EXAMPLES:
            message += f"; add one, e.g. `{_EXAMPLES[str(path[-1])]}`"
        show_given = False
    elif kind in ("string_too_short", "string_too_long"):
        least = kind == "string_too_short"
        limit = ctx.get("min_length" if least else "max_length", 0)
        message = f"must be {'at least' if least else 'at most'} {_plural(int(limit), 'character')}"
    elif kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        message = f"must be {_BOUNDS[kind]} {_bound(bound)}"
    elif kind == "multiple_of":
        message = f"must be a multiple of {_bound(ctx.get('multiple_of'))}"
    elif kind == "finite_number":
        message = "must be a finite number"
    elif kind == "string_pattern_mismatch":
        message = f"must match the pattern {ctx.get('pattern')}"
    else:
        # demur's own validators, and any type not above, in plain words.
        message = (
            error["msg"]
            .removeprefix("Value error, ")
            .removeprefix("Assertion failed, ")
            .replace("Input should be", "must be")
            .replace("Input should", "must")
            .replace("Field required", "required")
        )
        if kind in _OWN and message.startswith("unknown option '"):
            line_loc.append(message.split("'")[1])
    hidden = bool(path) and path[0] in secret
    shown = (
        f" (got {given!r})"
        if show_given
        and not hidden
        and given is not None
        and not isinstance(given, Mapping | list | tuple | set)
        else ""
    )
    return _Problem(
        place=_format_location(path) or "(top level)",
        line_loc=line_loc,
        message=message,
        type=kind,
        given=shown,
        union_at=at.union_at,
        shallow=at.union_at is not None and at.union_at == _format_location(at.path),
        expects=[_EXPECTED[kind]] if kind in _EXPECTED else [],
    )


def _merge_branches(problems: list[_Problem]) -> list[_Problem]:
    """One problem per value that fits no branch of a union.

    A branch that took the value in and found something wrong inside it says more than the
    others' "must be X"; so does a message of demur's own. Failing those, "must be X or Y".
    """
    deeper = {p.union_at for p in problems if p.union_at is not None and not p.shallow}
    out: list[_Problem] = []
    for problem in problems:
        if problem.shallow and problem.union_at in deeper and problem.type not in _OWN:
            continue
        twin = next(
            (p for p in out if p.shallow and problem.shallow and p.place == problem.place), None
        )
        if twin is None:
            out.append(problem)
        elif twin.type in _OWN:
            continue
        elif problem.type in _OWN:
            out[out.index(twin)] = problem
        elif twin.expects and problem.expects:
            twin.expects += [e for e in problem.expects if e not in twin.expects]
            twin.message = f"must be {' or '.join(twin.expects)}"
        else:
            out.append(problem)
    return out


def explain_validation(
    exc: ValidationError,
    source: str | None = None,
    text: str | None = None,
    *,
    what: str = "router config",
    secret: Collection[str] = (),
    schema: type[BaseModel] | None = None,
) -> ConfigError:
    """One ConfigError that explains every problem in `exc`: where, the key path, what was
    given, what is accepted and the fix.

    With a `source` (a file name) each problem gets a line of its own, with the YAML line number
    when `text` is the file's YAML; without one (settings from command-line flags) the problems
    share one line. `schema`, the model validated, names the accepted options and kinds. The
    values of the fields named in `secret` are never shown.
    """
    problems = _merge_branches([_problem(e, schema, secret) for e in exc.errors()])
    lines = []
    for problem in problems:
        said = f"{problem.place}: {problem.message}{problem.given}"
        if source is None:
            lines.append(said)
            continue
        where = source
        if text is not None and source.endswith(("yaml", "yml")):
            line = _yaml_line(text, problem.line_loc)
            if line is not None:
                where += f", line {line}"
        lines.append(f"{where}, {said}")
    if source is None:
        return ConfigError(f"invalid {what}: " + "; ".join(lines))
    count = len(lines)
    header = f"invalid {what} ({count} problem{'s' if count > 1 else ''}):\n  "
    return ConfigError(header + "\n  ".join(lines))


__all__ = ["explain_validation"]
