"""The `queue` section of a router config: SQLite by default, PostgreSQL by DSN."""

from __future__ import annotations

import pytest

from demur import ConfigError, SqliteQueue
from demur.config import load_router

CONFIG = """\
models:
  weak: {kind: scripted, replies: [{text: "Lyon", logprobs: [-3.0]}]}
estimators: [mean_logprob]
policy: {kind: ladder, threshold: 0.5, rungs: [human]}
queue: QUEUE
"""


def router_with(tmp_path, queue: str):
    path = tmp_path / "demur.yaml"
    path.write_text(CONFIG.replace("QUEUE", queue))
    return load_router(path)


def test_an_sqlite_queue_with_its_lease(tmp_path):
    router = router_with(tmp_path, f"{{path: {tmp_path / 'q.db'}, lease_s: 42}}")
    assert isinstance(router.queue, SqliteQueue) and router.queue.lease_s == 42
    verdict = router.route("Capital of France?")
    assert verdict.status == "pending"
    assert router.queue.get(verdict.ticket_id).candidates[0].text == "Lyon"


def test_a_postgres_queue_from_a_dsn_or_an_environment_variable(
    tmp_path, postgres_dsn, monkeypatch
):
    from demur.queue.postgres import PostgresQueue

    quoted = postgres_dsn.replace("'", "''")
    router = router_with(tmp_path, f"{{kind: postgres, dsn: '{quoted}', lease_s: 60}}")
    assert isinstance(router.queue, PostgresQueue) and router.queue.lease_s == 60
    verdict = router.route("Capital of France?")
    assert router.queue.get(verdict.ticket_id).status == "pending"
    monkeypatch.setenv("DEMUR_QUEUE_DSN", postgres_dsn)
    router = router_with(tmp_path, "{kind: postgres, dsn_env: DEMUR_QUEUE_DSN}")
    assert router.queue.get(verdict.ticket_id).question == "Capital of France?"


@pytest.mark.parametrize(
    ("queue", "message"),
    [
        ("{kind: postgres}", "a postgres queue needs exactly one of 'dsn'"),
        ("{kind: postgres, dsn: x, dsn_env: Y}", "exactly one of 'dsn'"),
        ("{dsn: 'postgresql://h/db'}", "'dsn' and 'dsn_env' are for kind: postgres"),
        ("{kind: mysql}", "queue.kind"),
        ("{path: q.db, dns: x}", "unknown option 'dns'. Did you mean 'dsn'?"),
        ("{path: q.db, lease_s: 0}", "lease_s"),
    ],
)
def test_bad_queue_sections_say_what_to_fix(tmp_path, queue, message):
    with pytest.raises(ConfigError, match=message):
        router_with(tmp_path, queue)


def test_an_unset_dsn_variable_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_DSN", raising=False)
    with pytest.raises(ConfigError, match=r"queue.dsn_env names \$NO_SUCH_DSN, which is not set"):
        router_with(tmp_path, "{kind: postgres, dsn_env: NO_SUCH_DSN}")
