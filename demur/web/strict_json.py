"""Parsing untrusted JSON without surprises: every way a body can break the code behind the
parser becomes a `JsonRefused` that says what is wrong.

Python's `json` module accepts `NaN` and `Infinity`, turns `1e999` into infinity, fails
with ValueError on an integer over 4,300 digits and with RecursionError on deep nesting,
and keeps lone surrogates (`"\\ud800"`) that no UTF-8 encoder will write back out.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64
MAX_INT_DIGITS = 100
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonRefused(ValueError):
    """The text is not JSON this server accepts; the message names the problem."""


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused(f"the number {text[:40]} is too large; numbers must be finite")
    return value


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonRefused(
            f"an integer of {len(text.lstrip('-'))} digits is too long; "
            f"send at most {MAX_INT_DIGITS} digits"
        )
    return int(text)


def _constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not JSON; numbers must be finite")


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in `raw` (UTF-8); JsonRefused when it is not valid JSON, nests deeper
    than `max_depth`, holds a non-finite or over-long number, or a lone surrogate."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise JsonRefused(f"it is not valid UTF-8: {exc}") from None
    try:
        value = json.loads(text, parse_float=_number, parse_int=_integer, parse_constant=_constant)
    except JsonRefused:
        raise
    except json.JSONDecodeError as exc:
        raise JsonRefused(str(exc)) from None
    except RecursionError:
        raise JsonRefused(f"it nests deeper than {max_depth} levels") from None
    check_value(value, max_depth)
    return value


def check_value(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """JsonRefused when `value` nests deeper than `max_depth` or holds a lone surrogate.

    Walks without recursion, so depth itself cannot fail the walk.
    """
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise JsonRefused(
                    f"the text at {where or 'the top'} holds a lone UTF-16 surrogate "
                    "(an unpaired \\ud800-\\udfff escape); send valid Unicode text"
                )
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > max_depth:
            raise JsonRefused(f"it nests deeper than {max_depth} levels (at {where})")
        if isinstance(item, dict):
            for key, child in item.items():
                if _SURROGATE.search(key):
                    raise JsonRefused(
                        f"a key in {where or 'the top object'} holds a lone UTF-16 surrogate "
                        "(an unpaired \\ud800-\\udfff escape); send valid Unicode text"
                    )
                path = f"{where}.{key}" if where else key
                stack.append((child, depth + 1, path[:200]))
        else:
            for i, child in enumerate(item):
                stack.append((child, depth + 1, f"{where}[{i}]"[:200]))


__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "JsonRefused", "check_value", "loads"]
