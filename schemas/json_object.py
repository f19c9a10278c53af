"""One JSON object from bytes, refused with a reason that names where it came from.

Every wire format whose document must be an object uses :func:`load_object`: check-in
payloads (processor and producer), clock ticks and tasks, envelope item headers and cron
request bodies. Callers turn :class:`NotAnObject` into their own error (a processing
error, a dead letter, a 400); the wording is the same everywhere but for what a
caller's contract already fixed (``not_object``, :attr:`NotAnObject.brief`).
"""

from __future__ import annotations

from typing import Any

import orjson

from schemas.limits import MAX_JSON_DEPTH

__all__ = ["NotAnObject", "load_object"]


class NotAnObject(ValueError):
    """``raw`` is not JSON (``detail`` is orjson's words) or is JSON but not an object."""

    def __init__(self, where: str, problem: str, detail: str | None = None) -> None:
        self.where, self.problem, self.detail = where, problem, detail
        super().__init__(self.reason)

    @property
    def brief(self) -> str:
        """``"<where>: <problem>"`` without orjson's detail."""
        return f"{self.where}: {self.problem}" if self.where else self.problem

    @property
    def reason(self) -> str:
        return self.brief if self.detail is None else f"{self.brief}: {self.detail}"


def load_object(raw: bytes | str, where: str = "", *, not_object: str = "not a JSON object") -> dict[str, Any]:
    """``raw`` decoded; raises NotAnObject unless it is a JSON object.

    Reasons: ``"<where>: not JSON: <orjson's words>"``, ``"<where>: nested deeper than 32
    levels"`` for orjson's own depth limit, ``"<where>: <not_object>"``.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _not_json(exc, where) from None
    if not isinstance(value, dict):
        raise NotAnObject(where, not_object)
    return value


def _not_json(exc: ValueError, where: str) -> NotAnObject:
    """orjson's own depth limit (1,024) reads like ours."""
    if str(exc).startswith("depth limit exceeded"):
        return NotAnObject(where, f"nested deeper than {MAX_JSON_DEPTH} levels")
    return NotAnObject(where, "not JSON", str(exc))
