"""The gateway through a PostgreSQL outage, on a throwaway cluster of its own: keys it has
seen keep working from their last answer (and their check-ins reach Kafka), a revoked key
stays refused, a key never seen gets a fast 503, readiness keeps following Kafka only,
and a new key works again once PostgreSQL is back."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx

from schemas.topics import Topics
from tests.e2e.gateway_processes import Service, cronpipe, cronpipe_env, free_port, read_check_in_ids
from tests.e2e.own_postgres import crash, own_postgres, restart

#: Generous bound for PostgreSQL's return to be noticed (the probe runs every second).
RECOVERY_BOUND_S = 60.0


def test_known_keys_are_served_through_a_database_outage_and_unknown_ones_get_503(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with own_postgres(tmp_path) as layout:
        prefix = f"e2e{uuid.uuid4().hex[:8]}-"
        port = free_port()
        env = cronpipe_env(kafka_bootstrap, layout.url, prefix, CRONPIPE_GATEWAY_PORT=str(port),
                           CRONPIPE_GATEWAY_KEY_CACHE_TTL="1")
        cronpipe(env, "org", "create", "acme")
        known, unseen, revoked = (cronpipe(env, "project", "create", "--org", "acme", "--slug", slug)
                                  for slug in ("known", "unseen", "revoked"))
        gateway = Service.start("gateway", env, ["gateway", "--workers", "1"], tmp_path)
        base = f"http://127.0.0.1:{port}"
        gateway.wait_http(f"{base}/healthz")

        def url(project: dict[str, str]) -> str:
            return f"{base}/api/{project['id']}/cron/job/{project['public_key']}/"

        accepted: list[str] = []
        with httpx.Client(timeout=30) as client:

            def check_in(project: dict[str, str]) -> httpx.Response:
                check_in_id = uuid.uuid4().hex
                response = client.get(url(project), params={"status": "ok", "check_in_id": check_in_id})
                if response.status_code == 202:
                    accepted.append(check_in_id)
                return response

            try:
                assert check_in(known).status_code == 202
                assert check_in(revoked).status_code == 202
                cronpipe(env, "key", "revoke", revoked["public_key"])
                time.sleep(1.5)  # past the cache TTL: the next request reads the revocation
                assert check_in(revoked).status_code == 403

                crash(layout)
                time.sleep(1.5)  # every cached answer is now expired
                during_known = [check_in(known).status_code for _ in range(20)]
                during_unseen = check_in(unseen)
                during_revoked = check_in(revoked)
                ready = client.get(f"{base}/readyz")
                metrics = client.get(f"{base}/metrics").text

                restart(layout)
                deadline = time.monotonic() + RECOVERY_BOUND_S
                while (after_unseen := check_in(unseen)).status_code != 202 and time.monotonic() < deadline:
                    time.sleep(0.2)
            finally:
                code = gateway.terminate()
    assert code == 0, gateway.tail()
    assert during_known == [202] * 20
    assert (during_unseen.status_code, during_unseen.headers.get("retry-after")) == (503, "5")
    assert during_revoked.status_code == 403
    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "kafka": "ok", "database": "unreachable"})
    assert "cronpipe_gateway_database_up 0.0" in metrics
    assert after_unseen.status_code == 202
    in_kafka = read_check_in_ids(kafka_bootstrap, Topics(prefix=prefix).ingest, set(accepted))
    assert in_kafka >= set(accepted)
