"""The read API through PostgreSQL crashes, on a throwaway cluster of its own: 503 with
Retry-After and the JSON error body while the database is away, 200 as soon as it is
back, and never a 500."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg

from cronpipe.admin import create_org, create_token
from tests.e2e.gateway_processes import Service, cronpipe_env, free_port
from tests.e2e.own_postgres import crash, own_postgres, restart


def test_the_api_answers_503_while_postgresql_is_down_and_200_right_after_a_restart_never_500(
    tmp_path: Path,
) -> None:
    with own_postgres(tmp_path) as layout:
        with psycopg.connect(layout.url, autocommit=True) as conn:
            create_org(conn, "acme")
            token = create_token(conn, "acme")
        port = free_port()
        env = cronpipe_env("127.0.0.1:1", layout.url, "", CRONPIPE_API_PORT=str(port))
        api = Service.start("api", env, ["api"], tmp_path)
        base = f"http://127.0.0.1:{port}"
        api.wait_http(f"{base}/healthz")
        statuses: list[int] = []
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:

            def get() -> httpx.Response:
                response = client.get("/api/0/organizations/acme/monitors/")
                statuses.append(response.status_code)
                return response

            try:
                assert get().status_code == 200
                assert client.get("/readyz").status_code == 200

                crash(layout)  # restart -m immediate: every pooled connection is now broken
                restart(layout)
                assert get().status_code == 200

                crash(layout)
                during = [get() for _ in range(5)]
                ready_during = client.get("/readyz")
                live_during = client.get("/healthz")
                restart(layout)
                assert get().status_code == 200
                assert client.get("/readyz").status_code == 200
            finally:
                code = api.terminate()
    assert code == 0, api.tail()
    assert [r.status_code for r in during] == [503] * 5
    assert during[0].headers["retry-after"] == "5"
    assert during[0].json() == {"detail": "The database is unavailable; retry later.", "parameter": None}
    assert (ready_during.status_code, ready_during.json()["status"]) == (503, "unavailable")
    assert live_during.status_code == 200
    assert 500 not in statuses, statuses
