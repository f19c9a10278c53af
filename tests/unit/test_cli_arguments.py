"""Bad command-line values are refused by name, with the allowed range, and exit status 2."""

from __future__ import annotations

import argparse

import pytest

from cronpipe.cli import build_parser
from schemas.argtypes import non_negative_float, positive_int, ratio


@pytest.mark.parametrize(
    ("convert", "text", "value"),
    [(positive_int, "3", 3), (non_negative_float, "0", 0.0), (ratio, "1", 1.0), (ratio, "0.25", 0.25)],
)
def test_it_accepts_values_in_range(convert, text, value) -> None:  # type: ignore[no-untyped-def]
    assert convert(text) == value


@pytest.mark.parametrize(
    ("convert", "text", "reason"),
    [
        (positive_int, "0", "must be > 0, not 0"),
        (positive_int, "-2", "must be > 0, not -2"),
        (positive_int, "1.5", "must be an integer, not '1.5'"),
        (non_negative_float, "-0.1", "must be >= 0, not -0.1"),
        (non_negative_float, "fast", "must be a number, not 'fast'"),
        (ratio, "1.01", "must be <= 1, not 1.01"),
    ],
)
def test_it_names_why_a_value_is_refused(convert, text, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(argparse.ArgumentTypeError, match=f"^{reason}$"):
        convert(text)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["loadgen", "--project-id", "1", "--rate", "-5"], "argument --rate: must be >= 0, not -5"),
        (["loadgen", "--project-id", "0"], "argument --project-id: must be > 0, not 0"),
        (["bench", "pipeline", "--checkins", "0"], "argument --checkins: must be > 0, not 0"),
        (["bench", "gateway", "--connections", "many"], "argument --connections: must be an integer, not 'many'"),
        (["gateway", "--workers", "0"], "argument --workers: must be > 0, not 0"),
        (["project", "create", "--org", "acme"], "the following arguments are required: --slug"),
    ],
)
def test_the_cli_refuses_bad_arguments_with_exit_status_2(argv, message, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["project", "create", "--org", "acme", "--slug", "123"], "'123': a slug cannot be only digits"),
        (["org", "create", "42"], "'42': a slug cannot be only digits"),
        (["project", "create", "--org", "acme", "--slug", "Bad Slug"], "'Bad Slug': use 1-50 of a-z"),
    ],
)
def test_the_cli_refuses_all_digit_and_malformed_slugs_with_exit_status_2(argv, message, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
