"""The settings: one declaration of every ``CRONPIPE_*`` variable (schemas/settings.py) that
the code, `--help`, the README and the docs all keep to, and values refused by name."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.checkins.batch_state import ProcessorConfig
from consumers.worker import processor_config
from cronpipe.cli import build_parser, main
from ingest.gateway.config import GatewayConfig
from schemas.settings import BY_NAME, PREFIX, TESTS, VARIABLES, SettingError, Settings, describe

ROOT = Path(__file__).resolve().parents[2]
#: Where the code that reads variables lives: the packages, the scripts and the tests.
CODE = ("schemas", "ingest", "consumers", "api", "notifier", "cronpipe", "scripts", "tests")
DOCS = ("README.md", "BENCHMARKS.md", "docs")
NAME = re.compile(PREFIX + r"[A-Z0-9_]*")
#: Declared variables the README's configuration table need not list.
INTERNAL = {v.env for v in VARIABLES if v.internal}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No CRONPIPE_* variable set (the suite itself runs with a few)."""
    for name in [n for n in os.environ if n.startswith(PREFIX)]:
        monkeypatch.delenv(name)
    yield monkeypatch


def _files(roots: tuple[str, ...], patterns: tuple[str, ...]) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        top = ROOT / root
        found += [top] if top.is_file() else [p for pattern in patterns for p in top.rglob(pattern)]
    return found


def _names_in(files: list[Path]) -> dict[str, set[str]]:
    """Each CRONPIPE_ name mentioned, with the files that mention it."""
    names: dict[str, set[str]] = {}
    for file in files:
        for name in NAME.findall(file.read_text(errors="replace")):
            names.setdefault(name, set()).add(str(file.relative_to(ROOT)))
    return names


def _undeclared(names: dict[str, set[str]]) -> dict[str, set[str]]:
    """Names that are not declared; a name ending in ``_`` is a prefix (``f"CRONPIPE_{x}"``)
    and needs a declared variable it begins."""
    declared = {v.env for v in VARIABLES}
    return {name: where for name, where in names.items()
            if (not any(d.startswith(name) for d in declared) if name.endswith("_") else name not in declared)}


def test_every_cronpipe_variable_the_code_reads_is_declared() -> None:
    names = _names_in(_files(CODE, ("*.py", "*.sh")) + _files(("Makefile", "docker-compose.yml"), ()))
    assert len(names) > 20  # the grep sees the code
    assert _undeclared(names) == {}


def test_every_cronpipe_variable_the_docs_name_is_declared() -> None:
    assert _undeclared(_names_in(_files(DOCS, ("*.md",)))) == {}


def test_the_readme_configuration_table_lists_exactly_the_declared_variables() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `CRONPIPE_")]
    listed = {name for row in rows for name in NAME.findall(row.split(" | ")[0])}
    assert listed == {v.env for v in VARIABLES} - INTERNAL


def test_each_settings_field_is_one_declared_variable_of_its_type(clean_environment: pytest.MonkeyPatch) -> None:
    fields = dataclasses.fields(Settings)
    backing = [f.metadata["variable"] for f in fields]
    assert len(backing) == len(set(backing))
    assert set(backing) == {v for v in VARIABLES if not v.internal and v.readers != (TESTS,)}
    hints, defaults = typing.get_type_hints(Settings), Settings()
    for f in fields:
        assert isinstance(getattr(defaults, f.name), hints[f.name]), f.name


def test_the_defaults_are_the_components_own(clean_environment: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert processor_config(settings) == ProcessorConfig()
    gateway = GatewayConfig.from_settings(settings)
    assert (gateway.key_cache_ttl, gateway.delivery_timeout, gateway.default_rate_limit) == (10.0, 10.0, None)
    assert not settings.gateway_noop and settings.batch_process and settings.volume_guard


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("GATEWAY_PORT", "abc", "CRONPIPE_GATEWAY_PORT='abc': must be an integer, not 'abc'"),
    ("API_PORT", "70000", "CRONPIPE_API_PORT='70000': must be <= 65535, not 70000"),
    ("CHECKIN_RATE_LIMIT", "-1", "CRONPIPE_CHECKIN_RATE_LIMIT='-1': must be >= 0, not -1"),
    ("CHECKIN_RATE_LIMIT", "6.5", "CRONPIPE_CHECKIN_RATE_LIMIT='6.5': must be an integer, not '6.5'"),
    ("HTTP_MAX_CONNECTIONS", "0", "CRONPIPE_HTTP_MAX_CONNECTIONS='0': must be > 0, not 0"),
    ("DLQ_WINDOW", "nan", "CRONPIPE_DLQ_WINDOW='nan': must be a finite number, not nan"),
    ("GATEWAY_DELIVERY_TIMEOUT", "soon", "CRONPIPE_GATEWAY_DELIVERY_TIMEOUT='soon': must be a number, not 'soon'"),
    ("VOLUME_INCIDENT_PCT", "130", "CRONPIPE_VOLUME_INCIDENT_PCT='130': must be <= 100, not 130"),
    ("CHECKIN_BATCH_SIZE", "2000000", "CRONPIPE_CHECKIN_BATCH_SIZE='2000000': must be <= 100000, not 2000000"),
    ("CHECKIN_BATCH_SIZE", "0", "CRONPIPE_CHECKIN_BATCH_SIZE='0': must be > 0, not 0"),
    ("BATCH_PROCESS", "maybe",
     "CRONPIPE_BATCH_PROCESS='maybe': must be 1 or 0 (or true/false, yes/no, on/off), not 'maybe'"),
])
def test_an_invalid_value_is_refused_naming_the_variable(clean_environment: pytest.MonkeyPatch, name: str, raw: str,
                                                        message: str) -> None:
    clean_environment.setenv(PREFIX + name, raw)
    with pytest.raises(SettingError) as caught:
        Settings()
    assert str(caught.value) == message


def test_the_cli_reports_an_invalid_value_in_one_line_and_exits_1(clean_environment: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    clean_environment.setenv("CRONPIPE_WORKER_HEALTH_PORT", "health")
    assert main(["topics"]) == 1
    assert capsys.readouterr().err == ("cronpipe: error: CRONPIPE_WORKER_HEALTH_PORT='health': must be an integer, "
                                       "not 'health'\n")


def test_a_gateway_rate_limit_is_checked_when_the_gateway_reads_it(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("CRONPIPE_GATEWAY_RATE_LIMIT", "lots")
    with pytest.raises(SettingError, match=r"^CRONPIPE_GATEWAY_RATE_LIMIT='lots': use COUNT or COUNT/SECONDS$"):
        GatewayConfig.from_settings(Settings())


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("yes", True), ("ON", True), ("0", False), ("false", False),
                                            ("off", False), ("", True)])
def test_a_switch_reads_the_usual_words_and_empty_is_its_default(clean_environment: pytest.MonkeyPatch, raw: str,
                                                                 value: bool) -> None:
    clean_environment.setenv("CRONPIPE_VOLUME_GUARD", raw)
    assert Settings().volume_guard is value


def test_an_empty_number_is_its_default_and_empty_text_stays_empty(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("CRONPIPE_SHUTDOWN_TIMEOUT", "")
    clean_environment.setenv("CRONPIPE_DATABASE_URL", "")
    settings = Settings()
    assert settings.shutdown_timeout_s == 30.0
    assert settings.database_url == "" and settings.effective_database_url() == settings.local_database_url()


def test_values_given_to_settings_win_over_the_environment(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("CRONPIPE_TOPIC_PREFIX", "env-")
    assert Settings(topic_prefix="given-").topic_prefix == "given-"
    assert Settings().topic_prefix == "env-"


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                          argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, below in action.choices.items():
                yield from _parsers(below, (*path, name))


def _listed(help_text: str) -> set[str]:
    section = help_text.split("settings (environment)", 1)[1]
    return {line.split()[0] for line in section.splitlines() if line.startswith(f"  {PREFIX}")}


def test_cronpipe_help_lists_every_variable_with_its_help_and_default() -> None:
    text = " ".join(build_parser().format_help().split())
    assert _listed(build_parser().format_help()) == {v.env for v in VARIABLES} - INTERNAL
    for variable in VARIABLES:
        if not variable.internal:
            assert f"{variable.help} (default: {variable.default_text()})" in text, variable.name


def test_every_subcommand_lists_the_variables_its_command_reads() -> None:
    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 30
    for path, parser in parsers[1:]:
        everything = path[0] in ("up", "bench")
        assert parser.epilog == describe(None if everything else (path[0],)), path


def test_a_command_lists_what_it_reads_and_what_every_command_reads() -> None:
    worker = _listed(dict(_parsers(build_parser()))[("worker",)].format_help())
    assert {"CRONPIPE_CHECKIN_RATE_LIMIT", "CRONPIPE_RETENTION_DAYS_DEFAULT", "CRONPIPE_KAFKA_BOOTSTRAP"} <= worker
    assert "CRONPIPE_NOTIFY_TIMEOUT" not in worker and "CRONPIPE_HTTP_IDLE_TIMEOUT" not in worker
    gateway = _listed(describe(("gateway",)))
    assert {"CRONPIPE_GATEWAY_RATE_LIMIT", "CRONPIPE_HTTP_IDLE_TIMEOUT"} <= gateway
    assert "CRONPIPE_CHECKIN_RATE_LIMIT" not in gateway
    assert _listed(describe(("org",))) == {v.env for v in VARIABLES if v.readers == BY_NAME["BIND"].readers}
