"""strict_json.loads: every body that would break the code behind the parser is refused."""

from __future__ import annotations

import pytest

from demur.web.strict_json import JsonRefused, check_value, loads


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"n": ' + b"1" * 5000 + b"}", "integer of 5000 digits is too long"),
        (b'{"n": -' + b"9" * 101 + b"}", "integer of 101 digits"),
        (b'{"x": 1e999}', "number 1e999 is too large"),
        (b'{"x": NaN}', "NaN is not JSON"),
        (b'{"x": -Infinity}', "-Infinity is not JSON"),
        (b"[" * 1000 + b"]" * 1000, "nests deeper than 64 levels"),
        (b"[" * 65 + b"]" * 65, "nests deeper than 64 levels"),
        (b'{"q": "a\\ud800b"}', "the text at q holds a lone UTF-16 surrogate"),
        (b'{"a": [{"\\udfff": 1}]}', "a key in a[0] holds a lone UTF-16 surrogate"),
        (b"\xff", "not valid UTF-8"),
        (b'{"a": ', "Expecting value"),
    ],
)
def test_hostile_json_is_refused_with_a_reason(raw, message):
    with pytest.raises(JsonRefused, match=message.replace("[", r"\[").replace("]", r"\]")):
        loads(raw)


def test_ordinary_json_passes():
    value = loads('{"q": "caf\\u00e9 \\ud83d\\ude00", "n": [1, 2.5, -3], "t": true}')
    assert value == {"q": "café 😀", "n": [1, 2.5, -3], "t": True}
    assert loads(b"[" * 64 + b"]" * 64) is not None
    assert loads(b'{"n": ' + b"9" * 100 + b"}")["n"] == int("9" * 100)


def test_check_value_walks_deep_values_without_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(JsonRefused, match="deeper than 10"):
        check_value(deep, 10)
