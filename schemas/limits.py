"""Hostile-input bounds: what PostgreSQL can store and what one message may cost.

One set of rules for both ingest paths. The gateway refuses a request that breaks one
with 400 and the reason; the processor turns the same message from a Kafka-native
producer into a processing error. So what the gateway accepts, the worker can store,
and what the worker cannot store never reaches the dead-letter path.

The bounds are constants, not settings: they are part of the wire contract (a gateway
configured looser than its worker would accept what the worker refuses).

* :data:`MAX_JSON_DEPTH` — containers nested deeper are refused before anything
  recurses over them (pydantic, ``repr``, orjson's encoder stops at 255, PostgreSQL's
  jsonb parser at its stack limit);
* no NUL (``\\u0000``) anywhere in a JSON document, key or value: PostgreSQL's ``text``
  and ``jsonb`` cannot hold it;
* :data:`MAX_CONFIG_TEXT_LENGTH` — every string in a ``monitor_config``; it is also the
  crontab bound and keeps integer strings far below Python's 4,300-digit limit.

:func:`check_document` is iterative, so a deep document costs a loop, not a stack.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

__all__ = [
    "MAX_CONFIG_TEXT_LENGTH",
    "MAX_CRONTAB_LENGTH",
    "MAX_ERROR_PAYLOAD_BYTES",
    "MAX_INTEGER_TEXT_LENGTH",
    "MAX_JSON_DEPTH",
    "MAX_RELEASE_LENGTH",
    "LimitError",
    "check_config_text",
    "check_document",
    "check_text",
    "excerpt",
    "storable_text",
]

#: Deepest nesting of objects/arrays in a check-in payload or cron body (Sentry's
#: check-ins nest 3 levels: ``contexts.trace.trace_id``, ``monitor_config.schedule.value``).
MAX_JSON_DEPTH: Final = 32
#: Sentry's ``Release.version`` column (``max_length=250``).
MAX_RELEASE_LENGTH: Final = 250
#: A crontab is 5 short fields; every minute, hour, day, month and weekday listed one by
#: one with commas is ~390 characters, so 512 refuses nothing real. Parsing is linear in
#: the length, and the schedule caches then hold at most 512 characters per key.
MAX_CRONTAB_LENGTH: Final = 512
#: Any string in a ``monitor_config`` (the crontab is the longest legitimate one).
MAX_CONFIG_TEXT_LENGTH: Final = MAX_CRONTAB_LENGTH
#: An integer given as text ("5"): longer is not an integer any field accepts, and
#: ``int()`` never sees more digits than this (Python refuses more than 4,300).
MAX_INTEGER_TEXT_LENGTH: Final = 32
#: A rejected check-in's payload is kept with its processing error up to this size;
#: a larger one is kept as its first KiB of text.
MAX_ERROR_PAYLOAD_BYTES: Final = 16 * 1024


class LimitError(ValueError):
    """A value breaks a hostile-input bound; ``.reason`` is ``"<path>: <problem>"``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_text(value: str, where: str, max_length: int | None = None) -> None:
    """Refuse a NUL character, or more than ``max_length`` characters; raises LimitError."""
    if "\x00" in value:
        raise LimitError(f"{where}: must not contain a NUL character")
    if max_length is not None and len(value) > max_length:
        raise LimitError(f"{where}: longer than {max_length} characters")


def check_document(value: object, where: str = "payload", raw: bytes | None = None) -> None:
    """Walk a parsed JSON document without recursion: at most :data:`MAX_JSON_DEPTH`
    levels, no NUL in any key or string. Raises LimitError naming the first offending
    path (``"environment: must not contain a NUL character"``).

    ``raw``, the JSON text ``value`` was parsed from, allows shortcuts: JSON spells a NUL
    only as ``\\u0000``, so text without that sequence needs the depth check alone, and
    text with at most MAX_JSON_DEPTH brackets cannot be too deep.
    """
    if raw is not None and b"\\u0000" not in raw:
        if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and _too_deep(value):
            raise LimitError(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels")
        return
    _walk(value, where)


def _too_deep(value: object) -> bool:
    """Level by level over containers only: the hot path of every check-in (~1 µs)."""
    level: list[dict[Any, Any] | list[Any]] = [value] if isinstance(value, dict | list) else []
    for _ in range(MAX_JSON_DEPTH):
        if not level:
            return False
        deeper: list[dict[Any, Any] | list[Any]] = []
        for node in level:
            children = node.values() if isinstance(node, dict) else node
            # A tuple, not ``dict | list``: isinstance with a tuple is the faster form.
            deeper += [child for child in children if isinstance(child, _CONTAINERS)]
        level = deeper
    return bool(level)


_CONTAINERS: Final = (dict, list)


def _walk(value: object, where: str) -> None:
    stack: list[tuple[object, _Path, int]] = [(value, None, 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                raise LimitError(f"{_render(path, where)}: must not contain a NUL character")
            continue
        children = _children(node)
        if children is None:
            continue
        if depth > MAX_JSON_DEPTH:
            raise LimitError(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels")
        for key, child in children:
            if isinstance(key, str) and "\x00" in key:
                raise LimitError(f"{_render(path, where)}: a key must not contain a NUL character")
            if isinstance(child, str | dict | list):
                stack.append((child, (path, key), depth + 1))


def check_config_text(config: dict[str, object], where: str = "monitor_config", raw: bytes | None = None) -> None:
    """Every string in ``config`` (at any depth) at most :data:`MAX_CONFIG_TEXT_LENGTH`
    characters; the document must already have passed :func:`check_document`. ``raw``
    (the JSON text the document came from) no longer than that bound holds no such string."""
    if raw is not None and len(raw) <= MAX_CONFIG_TEXT_LENGTH:
        return
    stack: list[tuple[object, _Path]] = [(config, None)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if len(node) > MAX_CONFIG_TEXT_LENGTH:
                raise LimitError(f"{_render(path, where, prefix=True)}: longer than {MAX_CONFIG_TEXT_LENGTH} characters")
            continue
        stack.extend((child, (path, key)) for key, child in _children(node) or ())


def excerpt(value: object) -> str:
    """At most 40 characters of ``repr(value)`` for a reason, without building the repr
    of a large container (or of an int over Python's 4,300-digit limit)."""
    if isinstance(value, dict | list):
        return "an object" if isinstance(value, dict) else "an array"
    if isinstance(value, str):
        return repr(value[:40])[:40]
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return "a very large integer"
    return f"{value!r:.40}"


def storable_text(value: str) -> str:
    """``value`` with NUL characters spelled ``\\x00``: for reasons and excerpts that
    quote what a client sent."""
    return value.replace("\x00", "\\x00") if "\x00" in value else value


# A path is built only for the error message: a linked (parent, key) chain while walking,
# so a long key is never copied once per descendant.
_Path = tuple["_Path", object] | None
_MAX_KEY_IN_REASON: Final = 40


def _children(node: object) -> Iterable[tuple[object, object]] | None:
    if isinstance(node, dict):
        return node.items()
    if isinstance(node, list):
        return enumerate(node)
    return None


def _render(path: _Path, where: str, *, prefix: bool = False) -> str:
    """``("monitor_config", "schedule")``-style chain → ``"monitor_config.schedule"``;
    the root alone is ``where``; with ``prefix`` the path always starts with ``where``."""
    keys: list[str] = []
    while path is not None:
        path, key = path
        keys.append(storable_text(str(key)[:_MAX_KEY_IN_REASON]))
    if prefix or not keys:
        keys.append(where)
    return ".".join(reversed(keys))
