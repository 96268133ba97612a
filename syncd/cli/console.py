"""`syncd console`: the hub's web console, and its users (`syncd console user …`)."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from syncd.cli.context import JsonOpt
from syncd.cli.hub import hub_settings, on_hub, read
from syncd.cli.render import call, out, print_json, print_table, usage

if TYPE_CHECKING:
    from syncd.core.settings import Settings

app = typer.Typer(
    help="The hub's web console for managers, auditors, ops and data stewards.",
    invoke_without_command=True,
)
user_app = typer.Typer(
    help="Who may sign in to the console, with which roles.", no_args_is_help=True
)
app.add_typer(user_app, name="user")

RoleOpt = Annotated[
    list[str],
    typer.Option("--role", help="manager, auditor, ops or steward (give --role again for more)"),
]
PasswordStdinOpt = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="read the password from standard input (else it is asked)"
    ),
]


@app.callback()
def console(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="listen address (default: [console] host)")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="listen port (default: [console] port)")
    ] = None,
    root_path: Annotated[
        str | None,
        typer.Option(
            "--root-path", help="the path the reverse proxy serves the console under, e.g. /syncd"
        ),
    ] = None,
) -> None:
    """Serve the web console (uvicorn) until stopped; with a sub-command, manage its users."""
    if ctx.invoked_subcommand is not None:
        return
    serve(hub_settings(), host=host, port=port, root_path=root_path)


def serve(
    s: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    root_path: str | None = None,
    banner: Callable[[str], None] | None = None,
) -> None:
    """Serve the console of hub `s` with uvicorn until SIGINT/SIGTERM (`syncd console`, and
    `syncd demo --console`); the options override `[console]`. `banner(url)` prints where it
    listens (default: one line)."""
    import uvicorn

    from syncd.console.app import create_app

    updates = {
        k: v
        for k, v in {"host": host, "port": port, "root_path": root_path}.items()
        if v is not None
    }
    if updates:
        from pydantic import ValidationError

        from syncd.core.settings import ConsoleSection

        try:
            console_cfg = ConsoleSection.model_validate({**s.console.model_dump(), **updates})
        except ValidationError as exc:
            first = exc.errors()[0]
            usage(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}")
        s = s.model_copy(update={"console": console_cfg})
    cfg = s.console
    web_app = call(lambda: create_app(s))
    url = f"http://{cfg.host}:{cfg.port}{cfg.root_path}/"
    if banner is None:
        out.print(f"syncd console of {s.node.id}: {url}", markup=False, highlight=False)
    else:
        banner(url)
    uvicorn.run(
        web_app,
        host=cfg.host,
        port=cfg.port,
        root_path=cfg.root_path,
        log_level="info",
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        access_log=True,
    )


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        usage("no terminal to ask the password on: give --password-stdin and pipe it in")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        usage("the two passwords differ; nothing was changed")
    return first


def _by() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="the sign-in name, e.g. wang.li")],
    role: RoleOpt,
    name: Annotated[
        str | None, typer.Option("--name", help="the name the console shows, e.g. 王丽")
    ] = None,
    password_stdin: PasswordStdinOpt = False,
) -> None:
    """Add a console user (the password is hashed with argon2id; audited)."""
    from syncd.hub import console_users

    call(lambda: console_users.check_username(username))
    call(lambda: console_users.check_roles(role))
    password = _password(password_stdin)
    user = on_hub(
        lambda n: console_users.add_user(
            n.engine, username, role, password, display_name=name, by=_by()
        )
    )
    roles = ", ".join(sorted(r.value for r in user.roles))
    out.print(f"console user {user.username} added ({roles})")


@user_app.command("password")
def user_password(username: str, password_stdin: PasswordStdinOpt = False) -> None:
    """Set a user's password (also unlocks a locked account; audited)."""
    from syncd.hub import console_users

    password = _password(password_stdin)
    on_hub(lambda n: console_users.set_password(n.engine, username, password, by=_by()))
    out.print(f"password of {username} changed")


@user_app.command("roles")
def user_roles(username: str, role: RoleOpt) -> None:
    """Replace a user's roles (audited)."""
    from syncd.hub import console_users

    on_hub(lambda n: console_users.set_roles(n.engine, username, role, by=_by()))
    out.print(f"roles of {username}: {', '.join(sorted(role))}")


@user_app.command("disable")
def user_disable(username: str) -> None:
    """No more sign-ins; the user's open sessions end at their next request (audited)."""
    from syncd.hub import console_users

    on_hub(lambda n: console_users.set_disabled(n.engine, username, True, by=_by()))
    out.print(f"console user {username} disabled")


@user_app.command("enable")
def user_enable(username: str) -> None:
    """Allow a disabled user to sign in again (audited)."""
    from syncd.hub import console_users

    on_hub(lambda n: console_users.set_disabled(n.engine, username, False, by=_by()))
    out.print(f"console user {username} enabled")


@user_app.command("list")
def user_list(as_json: JsonOpt = False) -> None:
    """The console's users, their roles and last sign-in (never a password hash)."""
    from syncd.hub import console_users

    rows = read(console_users.list_users)
    if as_json:
        print_json(rows)
        return
    columns = ["username", "display_name", "roles", "disabled", "locked_until", "last_signin_at"]
    print_table("console users", columns, [[r[c] for c in columns] for r in rows])
