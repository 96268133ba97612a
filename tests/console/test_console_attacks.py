"""The console as an attacker sees it: hostile text from the cities and the browser, ids and
values no page takes, a stolen session, a database that is gone.

Hostile data goes in the way it would really arrive: a node renamed through syncd.hub.nodes,
customers through a city's batch and the hub's apply, a user name through the sign-in form.
"""

from __future__ import annotations

from syncd.hub import console_users
from tests.console.conftest import Console, sign_in

IMG = "<img src=x onerror=alert(1)>"
BREAKOUT = "</script><script>alert(2)</script>"
BIG = "9" * 30  # past any BIGINT


def test_a_new_password_ends_the_sessions_of_the_old_one(sqlite_console: Console) -> None:
    c = sqlite_console
    stolen = c.client("manager")  # a copy of the manager's cookie, say
    assert stolen.get("/overview", follow_redirects=False).status_code == 200
    console_users.set_password(c.node.engine, "manager", "a-new-password-42", by="admin")
    answer = stolen.get("/overview", follow_redirects=False)
    assert answer.status_code == 303
    assert "/signin" in answer.headers["location"]
    fresh = sign_in(c.anonymous(), "manager", "a-new-password-42")
    assert fresh.get("/overview", follow_redirects=False).status_code == 200
