"""Read API authentication against real PostgreSQL: back-off, negative cache, token and key
administration, and Link headers built from the configured public URL."""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import hash_token
from api.throttle import FAILURE_BURST
from cronpipe.admin import AdminError, create_project, new_token
from cronpipe.cli import main
from tests.integration.api_seed import Seeder

pytestmark = pytest.mark.postgres

MONITORS = "/api/0/organizations/acme/monitors/"


@pytest.fixture
def acme(database_url: str) -> str:
    """Organization acme with a project, a monitor and a read token; returns the token."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        s = Seeder(conn)
        org_id = s.org("acme")
        project_id = s.project("acme", "backend", 7)
        s.monitor(org_id, project_id, "nightly")
        return s.token("acme")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def insert_token(database_url: str, token: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO api_tokens (organization_id, token_hash, token_prefix)"
                     " SELECT id, %s, 'cpt_' FROM organizations WHERE slug = 'acme'", (hash_token(token),))


def test_a_client_that_keeps_failing_gets_429_with_retry_after(acme: str, client: TestClient) -> None:
    answers = [client.get(MONITORS, headers=bearer(new_token())).status_code for _ in range(FAILURE_BURST + 5)]
    assert answers[:FAILURE_BURST] == [401] * FAILURE_BURST
    assert set(answers[FAILURE_BURST:]) == {429}
    refused = client.get(MONITORS, headers=bearer(new_token()))
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["detail"].startswith("Too many failed authentication attempts")


def test_a_known_token_still_works_for_a_client_in_back_off(acme: str, client: TestClient) -> None:
    assert client.get(MONITORS, headers=bearer(acme)).status_code == 200
    for _ in range(FAILURE_BURST + 1):
        client.get(MONITORS, headers=bearer(new_token()))
    assert client.get(MONITORS, headers=bearer(new_token())).status_code == 429
    assert client.get(MONITORS, headers=bearer(acme)).status_code == 200


def test_a_client_in_back_off_is_refused_without_a_database_lookup(acme: str, database_url: str,
                                                                  client: TestClient) -> None:
    for _ in range(FAILURE_BURST):
        client.get(MONITORS, headers=bearer("cpt_short"))
    valid_but_unseen = new_token()
    insert_token(database_url, valid_but_unseen)
    assert client.get(MONITORS, headers=bearer(valid_but_unseen)).status_code == 429


def test_a_wrong_token_is_remembered_so_trying_it_again_costs_no_query(acme: str, database_url: str,
                                                                       client: TestClient) -> None:
    token = new_token()
    assert client.get(MONITORS, headers=bearer(token)).status_code == 401
    insert_token(database_url, token)  # had the API asked PostgreSQL again, it would now find it
    assert client.get(MONITORS, headers=bearer(token)).status_code == 401
    with TestClient(create_app(database_url, pool_size=1)) as fresh:
        assert fresh.get(MONITORS, headers=bearer(token)).status_code == 200


def run_cli(argv: list[str], database_url: str, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object] | None, str]:
    monkeypatch.setenv("CRONPIPE_DATABASE_URL", database_url)
    code = main(argv)
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out.strip() else None, out.err


def test_token_list_shows_prefix_and_scope_and_revoke_deletes_by_value_or_id(
        acme: str, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, created, _ = run_cli(["token", "create", "--org", "acme", "--scope", "write"], database_url, monkeypatch,
                               capsys)
    assert code == 0 and created is not None and created["scope"] == "write" and created["org"] == "acme"
    _, listed, _ = run_cli(["token", "list", "--org", "acme"], database_url, monkeypatch, capsys)
    assert listed is not None
    tokens = listed["tokens"]
    assert isinstance(tokens, list)
    assert [(t["prefix"], t["scope"]) for t in tokens] == [(acme[:8], "read"), (str(created["token"])[:8], "write")]
    assert all("token" not in t for t in tokens)
    assert run_cli(["token", "revoke", acme], database_url, monkeypatch, capsys)[1] == {
        "id": tokens[0]["id"], "revoked": True}
    assert run_cli(["token", "revoke", str(tokens[1]["id"])], database_url, monkeypatch, capsys)[0] == 0
    code, _, err = run_cli(["token", "revoke", acme], database_url, monkeypatch, capsys)
    assert code == 1 and "no such token" in err
    with TestClient(create_app(database_url, pool_size=1)) as fresh:
        assert fresh.get(MONITORS, headers=bearer(acme)).status_code == 401


def test_key_list_shows_each_projects_keys_and_their_state(
        acme: str, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _, listed, _ = run_cli(["key", "list", "--org", "acme"], database_url, monkeypatch, capsys)
    assert listed is not None
    keys = listed["keys"]
    assert isinstance(keys, list) and len(keys) == 1
    assert (keys[0]["project"], keys[0]["project_id"], keys[0]["is_active"]) == ("backend", 7, True)
    run_cli(["key", "revoke", str(keys[0]["public_key"])], database_url, monkeypatch, capsys)
    _, listed, _ = run_cli(["key", "list", "--org", "acme"], database_url, monkeypatch, capsys)
    assert listed is not None and listed["keys"][0]["is_active"] is False  # type: ignore[index]


def test_an_all_digit_project_slug_is_refused_at_creation(acme: str, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn, pytest.raises(AdminError, match="only digits"):
        create_project(conn, "acme", "7")


@pytest.fixture
def public_client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(database_url, pool_size=1, public_url="https://crons.example.com/")) as c:
        yield c


def test_link_headers_use_the_public_url_and_only_page_parameters(acme: str, public_client: TestClient) -> None:
    response = public_client.get(MONITORS, params={"per_page": 1, "junk": "x" * 60_000},
                                 headers={**bearer(acme), "Host": "attacker.example"})
    assert response.status_code == 200
    link = response.headers["link"]
    assert link.startswith(f"<https://crons.example.com{MONITORS}?per_page=1&cursor=0:0:1>")
    assert "attacker" not in link and "junk" not in link and len(link) < 400


def test_a_page_url_too_long_for_a_link_header_is_a_400_naming_the_parameter(acme: str,
                                                                           public_client: TestClient) -> None:
    response = public_client.get(MONITORS, params={"environment": [f"env-{i}" for i in range(1000)]},
                                 headers=bearer(acme))
    assert response.status_code == 400
    assert response.json()["parameter"] == "environment"
