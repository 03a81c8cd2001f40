"""Every option of the interface contract is in its command's --help, described as it works."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from tcmerge.cli.app import app

CONTRACT_OPTIONS = {
    ("validate",): ["--source", "--target", "--topology", "--group", "--tables", "--strict",
                    "--json"],
    ("run",): ["--source", "--target", "--topology", "--group", "--tables", "--strict",
               "--json", "--dry-run", "--no-snapshot", "--transport", "--yes"],
    ("schema", "sql"): ["--dialect"],
    ("jobs", "list"): ["--target", "--json"],
    ("jobs", "show"): ["--target", "--json"],
    ("verify",): ["--target", "--json"],
    ("restore",): ["--target", "--json", "--yes"],
    ("topology", "check"): ["--json"],
    ("ha", "simulate"): ["--json"],
    ("ha", "scenarios"): ["--json"],
}


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stdout).split())


@pytest.mark.parametrize("command", list(CONTRACT_OPTIONS))
def test_contract_options_are_in_the_help(command: tuple[str, ...]) -> None:
    text = _help(*command)
    for option in CONTRACT_OPTIONS[command]:
        assert re.search(rf"(^|\s){re.escape(option)}(\s|$)", text), (command, option)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_validate_and_run_describe_databases_and_exit_codes_alike(command: str) -> None:
    text = _help(command)
    # a database may be a topology name as well as a URL (the contract's "Naming")
    assert text.count("or a name declared in the --topology file") >= 2, text
    assert "Exit 0" in text and "2 for usage errors" in text and "3 on" in text


def _commands(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the CLI, groups included (the root is ``()``)."""
    found = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _commands(sub, (*path, name))
    return found


def test_help_shows_no_type_placeholders() -> None:
    """Typer's ``<bool>`` / ``<str>`` / ``<int>`` column: gone from every command's help
    (flags take no value; an option with one names it as a metavar)."""
    import typer

    commands = _commands(typer.main.get_command(app))
    assert ("run",) in commands and ("jobs", "list") in commands and ("demo",) in commands
    for command in commands:
        text = _help(*command)
        assert not re.search(r"<(bool|str|int|float|list\[\w+\])>", text), (command, text)
    text = _help("run")
    assert "--target TARGET" in text and "--json Print" in text, text
