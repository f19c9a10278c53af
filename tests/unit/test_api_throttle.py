"""Failed-authentication bookkeeping: a per-client back-off and a negative cache, both bounded."""

from __future__ import annotations

from api.throttle import ExpiringSet, FailureThrottle, client_key


def test_a_client_gets_its_burst_of_failures_then_waits_for_the_refill() -> None:
    throttle = FailureThrottle(burst=3, rate=0.5)
    for _ in range(3):
        assert throttle.retry_after("1.2.3.4", 100.0) == 0.0
        throttle.record_failure("1.2.3.4", 100.0)
    assert throttle.retry_after("1.2.3.4", 100.0) == 2.0
    assert throttle.retry_after("1.2.3.4", 101.0) == 1.0
    assert throttle.retry_after("1.2.3.4", 102.0) == 0.0


def test_one_clients_failures_do_not_slow_another_client() -> None:
    throttle = FailureThrottle(burst=1, rate=1.0)
    throttle.record_failure("10.0.0.1", 5.0)
    assert throttle.retry_after("10.0.0.1", 5.0) > 0
    assert throttle.retry_after("10.0.0.2", 5.0) == 0.0


def test_the_throttle_remembers_at_most_max_clients() -> None:
    throttle = FailureThrottle(burst=1, rate=1.0, max_clients=100)
    for i in range(1000):
        throttle.record_failure(f"client-{i}", 0.0)
    assert len(throttle) == 100
    assert throttle.retry_after("client-999", 0.0) > 0


def test_ipv6_clients_are_throttled_per_64_prefix() -> None:
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("2001:db8:0:1::1") != client_key("2001:db8::1")
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key(None) == "-"


def test_bad_tokens_are_forgotten_after_their_time_and_bounded_in_number() -> None:
    bad = ExpiringSet(max_size=10, seconds=30.0)
    bad.add(b"x", 0.0)
    assert bad.contains(b"x", 29.0)
    assert not bad.contains(b"x", 30.0)
    for i in range(50):
        bad.add(i.to_bytes(2, "big"), 1.0)
    assert len(bad) == 10
    assert bad.contains((49).to_bytes(2, "big"), 1.0) and not bad.contains((0).to_bytes(2, "big"), 1.0)
