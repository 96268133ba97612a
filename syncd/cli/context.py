"""The root options (`--config`, `-v`) as one process-wide state, and the settings they load."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from syncd.core.settings import Settings, load_settings


@dataclasses.dataclass
class State:
    config: Path | None = None
    verbose: bool = False
    settings: Settings | None = None


state = State()

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="SYNCD_CONFIG", help="node config file (TOML)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="print CSV to stdout instead of a table")]


def settings() -> Settings:
    """The node's settings, loaded once per process; logging is configured from them."""
    if state.settings is None:
        from syncd.core import logs

        s = load_settings(state.config)
        logs.configure(s.log.format, "debug" if state.verbose else s.log.level, s.node.id)
        state.settings = s
    return state.settings
