"""How the hub's commands reach the hub: its settings checked, its `Node` opened once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from syncd.cli.context import settings
from syncd.cli.render import call, usage
from syncd.core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from syncd.app import Node

T = TypeVar("T")


def hub_settings() -> Settings:
    s = settings()
    if not s.is_hub:
        usage(f"this command runs on the hub; {s.node.id} is a {s.node.role.value} node")
    return s


def on_hub(fn: Callable[[Node], T]) -> T:
    """fn(the hub's node: policy and engine), closed after; errors made readable."""
    from syncd.app import Node

    s = hub_settings()

    def go() -> T:
        with Node.open(s) as node:
            return fn(node)

    return call(go)


def read_node(fn: Callable[[Node, Connection], T]) -> T:
    """fn(the hub's node, a connection to its database); driver errors become syncd errors."""
    from syncd.store.db import translated

    def on(node: Node) -> T:
        with translated("reading"), node.engine.connect() as conn:
            return fn(node, conn)

    return on_hub(on)


def read(fn: Callable[[Connection], T]) -> T:
    """fn on a connection to the hub's database; driver errors become syncd errors."""
    return read_node(lambda _node, conn: fn(conn))
