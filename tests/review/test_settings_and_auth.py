"""Reviewer tokens from settings, the environment and a file; sessions and their cookies."""

from __future__ import annotations

from pathlib import Path

import pytest

from demur.errors import ConfigError
from demur.review.auth import ReviewerTokens, SessionStore
from demur.review.settings import ReviewSettings
from tests.review.conftest import ANA, BEN

ENV = "DEMUR_REVIEWER_TOKENS"


def test_tokens_come_from_settings_the_environment_and_a_file(tmp_path: Path):
    file = tmp_path / "tokens"
    file.write_text(f"# reviewers\n\ncleo:{'c' * 20}\n", encoding="utf-8")
    settings = ReviewSettings(tokens={ANA: "ana"}, tokens_file=file)
    found = settings.resolved_tokens({ENV: f"ben:{BEN}, dan:{'d' * 16}"})
    assert found == {ANA: "ana", BEN: "ben", "d" * 16: "dan", "c" * 20: "cleo"}


def test_no_token_at_all_is_a_config_error():
    with pytest.raises(ConfigError, match=r"no reviewer can log in: \$DEMUR_REVIEWER_TOKENS"):
        ReviewSettings().resolved_tokens({})


def test_a_short_token_is_refused_without_echoing_it():
    with pytest.raises(ConfigError, match="at least 16") as caught:
        ReviewSettings().resolved_tokens({ENV: "ana:short-secret"})
    assert "short-secret" not in str(caught.value)


def test_an_entry_without_a_reviewer_is_refused_without_echoing_it():
    with pytest.raises(ConfigError, match="entry 2: expected REVIEWER:TOKEN") as caught:
        ReviewSettings().resolved_tokens({ENV: f"ana:{ANA},{BEN}"})
    assert BEN not in str(caught.value)


def test_two_reviewers_cannot_share_a_token():
    with pytest.raises(ConfigError, match="share a token"):
        ReviewSettings().resolved_tokens({ENV: f"ana:{ANA},ben:{ANA}"})


def test_a_missing_or_empty_token_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read the reviewer token file"):
        ReviewSettings(tokens_file=tmp_path / "missing").resolved_tokens({})
    empty = tmp_path / "empty"
    empty.write_text("# nobody yet\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no entry"):
        ReviewSettings(tokens_file=empty).resolved_tokens({})


def test_cookies_are_secure_off_loopback_by_default():
    assert not ReviewSettings().cookies_secure
    assert ReviewSettings(host="0.0.0.0").cookies_secure
    assert ReviewSettings(secure_cookies=True).cookies_secure
    assert not ReviewSettings(host="0.0.0.0", secure_cookies=False).cookies_secure


def test_tokens_map_to_reviewers():
    tokens = ReviewerTokens({ANA: "ana", BEN: "ben"})
    assert tokens.check(ANA) == "ana" and tokens.check(f" {BEN} ") == "ben"
    for wrong in (None, "", ANA[:-1], ANA + "x", "\udcff"):
        assert tokens.check(wrong) is None
    assert tokens.reviewers == ["ana", "ben"]


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_are_signed_expire_and_can_be_dropped():
    clock = FakeTime()
    store = SessionStore("s" * 32, ttl_s=60, max_sessions=10, clock=clock)
    session, cookie = store.create("ana")
    assert store.get(cookie) is session and session.reviewer == "ana"
    sid, expires, signature = cookie.split(".")
    assert store.get(f"{sid}.{int(expires) + 999}.{signature}") is None  # extended: unsigned
    assert store.get(f"{sid}.{expires}.{'A' * len(signature)}") is None
    assert store.get(f"{'x' * len(sid)}.{expires}.{signature}") is None
    assert store.get("garbage") is None and store.get("é.1.2") is None and store.get(None) is None
    other = SessionStore("t" * 32, ttl_s=60, max_sessions=10, clock=clock)
    assert other.get(cookie) is None  # another secret
    clock.now += 61
    assert store.get(cookie) is None
    session, cookie = store.create("ana")
    store.drop(session)
    assert store.get(cookie) is None


def test_each_sign_in_is_a_new_session_and_old_ones_are_bounded():
    store = SessionStore(None, ttl_s=60, max_sessions=2)
    first, first_cookie = store.create("ana")
    second, _ = store.create("ana")
    assert first.id != second.id and first.csrf != second.csrf
    store.create("ben")
    assert len(store) == 2 and store.get(first_cookie) is None
