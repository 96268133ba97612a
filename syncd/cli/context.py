"""The root options (`--config`, `-v`) as one process-wide state, and the settings they load.

`--config` is accepted before the sub-command (`syncd --config X status`) and after it
(`syncd status --config X`), as users type both: `accept_config_everywhere` gives every
command of the built command tree a copy of the root option that sets the same state, so a
command added later gets it with no code of its own.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from syncd.core.settings import Settings, load_settings


@dataclasses.dataclass
class State:
    config: Path | None = None
    verbose: bool = False
    settings: Settings | None = None


state = State()

CONFIG_FLAGS = ("--config", "-c")
ConfigOpt = Annotated[
    Path | None,
    typer.Option(*CONFIG_FLAGS, envvar="SYNCD_CONFIG", help="node config file (TOML)"),
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


def _set_config(_ctx: Any, _param: Any, value: Path | None) -> None:
    # Runs after the root callback (click parses a sub-command's options after invoking its
    # parent), so `syncd --config A status --config B` reads B: the nearer one wins.
    if value is not None:
        state.config = Path(value)


def _commands(group: Any) -> Iterator[Any]:
    """Every command and group below `group` (a click group built by typer), depth first."""
    for cmd in getattr(group, "commands", {}).values():
        yield cmd
        yield from _commands(cmd)


def _free_flags(cmd: Any) -> list[str]:
    """The config flags `cmd` does not use itself (a command may give `-c` another meaning)."""
    taken = {flag for p in cmd.params for flag in (*p.opts, *p.secondary_opts)}
    return [] if "--config" in taken else [f for f in CONFIG_FLAGS if f not in taken]


def accept_config_everywhere(root: Any) -> None:
    """Give every sub-command the root's `--config/-c` (no env var: the root reads that)."""
    (root_config,) = [p for p in root.params if "--config" in p.opts]
    for cmd in _commands(root):
        flags = _free_flags(cmd)
        if not flags:
            continue
        opt = copy.copy(root_config)
        opt.opts = flags
        opt.envvar = None
        opt.expose_value = False
        opt.callback = _set_config
        opt.help = "node config file (TOML); also accepted before the sub-command"
        cmd.params.append(opt)


def escape_help(root: Any) -> None:
    """Help texts are plain text: `[report]` must not be read as rich markup and vanish."""
    for cmd in (root, *_commands(root)):
        for attr in ("help", "short_help", "epilog"):
            text = getattr(cmd, attr, None)
            if isinstance(text, str):
                setattr(cmd, attr, escape(text))
        for param in cmd.params:
            if isinstance(getattr(param, "help", None), str):
                param.help = escape(param.help)
