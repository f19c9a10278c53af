"""Golden example messages, shipped in ``schemas/examples/*.json``.

One file per example, named after it. ``check_in``, ``check_in_in_progress``,
``check_in_attachment``, ``clock_pulse`` and ``clock_pulse_with_partitions`` are
``ingest-monitors`` values (msgpack-encode the dict to get the Kafka value);
``clock_tick`` is a ``monitors-clock-tick`` value and ``mark_missing`` / ``mark_timeout``
are ``monitors-clock-tasks`` values (JSON-encode them).

JSON has no bytes, so a bytes value is written as ``{"$bytes": "<utf-8 text>"}`` or
``{"$base64": "<base64>"}``; :func:`load_example` turns both into ``bytes``. A plain string
stays a string: Sentry's published ``check_in`` example carries its payload as ``str``.
"""

from __future__ import annotations

import base64
from importlib.resources import files
from typing import Any

import orjson

__all__ = ["example_names", "load_example"]

_FOLDER = files("schemas") / "examples"


def example_names() -> tuple[str, ...]:
    """Names of all shipped examples, sorted."""
    names = (entry.name.removesuffix(".json") for entry in _FOLDER.iterdir() if entry.name.endswith(".json"))
    return tuple(sorted(names))


def load_example(name: str) -> dict[str, Any]:
    """Return example ``name`` as a dict with its bytes markers decoded.

    Raises FileNotFoundError for an unknown name.
    """
    resource = _FOLDER / f"{name}.json"
    if not resource.is_file():
        raise FileNotFoundError(f"no example named {name!r}; have {', '.join(example_names())}")
    decoded: dict[str, Any] = _decode_bytes_markers(orjson.loads(resource.read_bytes()))
    return decoded


def _decode_bytes_markers(value: Any) -> Any:
    """Replace ``{"$bytes": text}`` / ``{"$base64": b64}`` with bytes, recursively."""
    if isinstance(value, dict):
        if value.keys() == {"$bytes"}:
            return str(value["$bytes"]).encode("utf-8")
        if value.keys() == {"$base64"}:
            return base64.b64decode(value["$base64"], validate=True)
        return {key: _decode_bytes_markers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_bytes_markers(item) for item in value]
    return value
