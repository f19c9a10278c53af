"""The one JSON-object decoder of the wire formats (schemas/json_object.py)."""

from __future__ import annotations

import pytest

from schemas.json_object import NotAnObject, load_object


def test_an_object_is_returned_as_a_dict() -> None:
    assert load_object(b'{"a": [1, {"b": null}]}', "payload") == {"a": [1, {"b": None}]}


@pytest.mark.parametrize(("raw", "where", "brief", "detailed"), [
    (b"[1, 2]", "payload", "payload: not a JSON object", False),
    (b'"text"', "", "not a JSON object", False),
    (b"{nope", "body", "body: not JSON", True),
    (b"", "", "not JSON", True),
    (b"[" * 1100 + b"]" * 1100, "payload", "payload: nested deeper than 32 levels", False),
])
def test_what_is_not_an_object_is_refused_naming_where_it_came_from(raw: bytes, where: str, brief: str,
                                                                     detailed: bool) -> None:
    with pytest.raises(NotAnObject) as caught:
        load_object(raw, where)
    refused = caught.value
    assert refused.brief == brief and str(refused) == refused.reason
    if detailed:  # orjson's own words follow, e.g. "line 1 column 2 (char 1)"
        assert refused.reason.startswith(f"{brief}: ") and "line 1" in refused.reason
    else:
        assert refused.reason == brief


def test_a_caller_may_word_the_not_an_object_case_as_its_contract_does() -> None:
    with pytest.raises(NotAnObject, match=r"^body: must be a JSON object$"):
        load_object(b"1", "body", not_object="must be a JSON object")
