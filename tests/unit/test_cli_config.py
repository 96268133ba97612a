"""`--config` reaches every command of a command tree, including ones added later."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
import typer

from syncd.cli.context import ConfigOpt, accept_config_everywhere, state


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    yield
    state.config = None


def _tree() -> typer.Typer:
    """A root like syncd's, and sub-commands as another branch might add them."""
    root = typer.Typer()

    @root.callback()
    def _main(config: ConfigOpt = None) -> None:
        state.config = config

    later = typer.Typer()

    @later.command("plain")
    def plain() -> None:
        print(f"config={state.config}")

    @later.command("city")
    def city(code: Annotated[str, typer.Option("--city", "-c")] = "") -> None:
        print(f"city={code} config={state.config}")

    root.add_typer(later, name="later")
    return root


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    state.config = None
    cmd = typer.main.get_command(_tree())
    accept_config_everywhere(cmd)
    cmd(args, prog_name="syncd", standalone_mode=False)
    return capsys.readouterr().out.strip()


def test_a_later_command_takes_config_on_either_side(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["later", "plain", "--config", "a.toml"], capsys) == "config=a.toml"
    assert _run(["later", "plain", "-c", "a.toml"], capsys) == "config=a.toml"
    assert _run(["--config", "a.toml", "later", "plain"], capsys) == "config=a.toml"
    assert _run(["later", "--config", "a.toml", "plain"], capsys) == "config=a.toml"
    assert _run(["-c", "a.toml", "later", "plain", "-c", "b.toml"], capsys) == "config=b.toml"


def test_a_command_that_uses_c_for_itself_keeps_it(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(["later", "city", "-c", "3301", "--config", "a.toml"], capsys)
    assert out == f"city=3301 config={Path('a.toml')}"
