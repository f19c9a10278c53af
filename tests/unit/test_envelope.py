"""Sentry envelopes, Content-Encoding and Sentry auth, parsed by ingest.gateway.envelope."""

from __future__ import annotations

import gzip
import zlib

import pytest

from ingest.gateway.envelope import (
    decode_body,
    parse_auth_header,
    parse_envelope,
    public_key_from_dsn,
    sdk_name,
)
from ingest.gateway.errors import GatewayError

CHECK_IN = b'{"check_in_id":"83a7f1a1a4d34ac8a56abf2e09bdd1a2","monitor_slug":"job","status":"ok"}'


def test_an_envelope_with_lengths_yields_each_item_and_its_payload() -> None:
    data = (b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n'
            + b'{"type":"check_in","length":%d}\n' % len(CHECK_IN) + CHECK_IN + b"\n"
            + b'{"type":"attachment","length":5}\nab\ncd\n')
    envelope = parse_envelope(data)
    assert envelope.headers == {"event_id": "9ec79c33ec9942ab8353589fcb2e04dc"}
    assert [(i.type, i.payload) for i in envelope.items] == [("check_in", CHECK_IN), ("attachment", b"ab\ncd")]


def test_a_payload_without_length_runs_to_the_end_of_its_line() -> None:
    envelope = parse_envelope(b'{}\n{"type":"check_in"}\n' + CHECK_IN + b'\n{"type":"session"}\n{"x":1}')
    assert [(i.type, i.payload) for i in envelope.items] == [("check_in", CHECK_IN), ("session", b'{"x":1}')]


def test_a_length_payload_may_end_the_envelope_without_a_newline() -> None:
    envelope = parse_envelope(b'{}\n{"type":"check_in","length":%d}\n' % len(CHECK_IN) + CHECK_IN)
    assert envelope.items[0].payload == CHECK_IN


def test_an_envelope_with_only_a_header_has_no_items() -> None:
    assert parse_envelope(b'{"dsn":"http://k@h/1"}\n').items == []


@pytest.mark.parametrize(("data", "reason"), [
    (b"not json\n", "envelope header: not JSON"),
    (b"[1]\n", "envelope header: not a JSON object"),
    (b'{}\n{"length":2}\nab\n', "item 0 header: type must be a string"),
    (b'{}\n{"type":"check_in","length":-1}\n', "item 0 header: length must be a non-negative integer"),
    (b'{}\n{"type":"check_in","length":50}\nshort\n', "item 0: length 50 runs past the end of the envelope"),
    (b'{}\n{"type":"check_in","length":2}\nabc\n', "item 0: payload is not followed by a newline"),
    (b'{}\n{"type":"a"}\nx\nnot a header\n', "item 1 header: not JSON"),
])
def test_a_malformed_envelope_is_a_400_naming_the_problem(data: bytes, reason: str) -> None:
    with pytest.raises(GatewayError) as caught:
        parse_envelope(data)
    assert (caught.value.status, caught.value.detail) == (400, reason)


@pytest.mark.parametrize(("encoding", "compress"), [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some clients send
    ("identity", lambda data: data),
    (None, lambda data: data),
])
def test_a_compressed_body_is_decoded(encoding: str | None, compress) -> None:  # type: ignore[no-untyped-def]
    assert decode_body(compress(CHECK_IN), encoding, 10_000) == CHECK_IN


def test_a_body_that_inflates_beyond_the_limit_is_a_413() -> None:
    with pytest.raises(GatewayError) as caught:
        decode_body(gzip.compress(b"0" * 100_000), "gzip", 10_000)
    assert caught.value.status == 413


def test_a_corrupt_gzip_body_is_a_400() -> None:
    with pytest.raises(GatewayError) as caught:
        decode_body(b"\x1f\x8bnot really gzip", "gzip", 10_000)
    assert caught.value.status == 400 and "cannot be decompressed" in caught.value.detail


def test_a_truncated_gzip_body_is_a_400() -> None:
    with pytest.raises(GatewayError) as caught:
        decode_body(gzip.compress(CHECK_IN)[:-10], "gzip", 10_000)
    assert caught.value.status == 400


def test_an_unknown_content_encoding_is_a_415() -> None:
    with pytest.raises(GatewayError) as caught:
        decode_body(b"x", "br", 10_000)
    assert caught.value.status == 415


def test_the_sentry_auth_header_yields_its_fields() -> None:
    header = "Sentry sentry_key=abc123, sentry_version=7, sentry_client=sentry.python/2.75.0"
    assert parse_auth_header(header) == {"sentry_key": "abc123", "sentry_version": "7",
                                         "sentry_client": "sentry.python/2.75.0"}


def test_an_auth_header_without_the_scheme_is_read_too() -> None:
    assert parse_auth_header("sentry_key=abc,sentry_version=7")["sentry_key"] == "abc"


@pytest.mark.parametrize(("dsn", "key"), [
    ("http://abc@127.0.0.1:8000/1", "abc"),
    ("https://abc:secret@o1.ingest.sentry.io/42", "abc"),
    ("http://127.0.0.1:8000/1", None),
    (42, None),
])
def test_the_public_key_is_read_from_a_dsn(dsn: object, key: str | None) -> None:
    assert public_key_from_dsn(dsn) == key


def test_the_sdk_name_comes_from_the_envelope_header() -> None:
    assert sdk_name({"sdk": {"name": "sentry.python", "version": "2.75.0"}}) == "sentry.python/2.75.0"
    assert sdk_name({}) is None
