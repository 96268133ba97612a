"""The one place secrets are taken out of text before it is logged or printed."""

from __future__ import annotations

import re

# scheme://user:password@host — the password part, whatever the scheme or driver.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?=@)")
# libpq keyword form: password=secret
_KW_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('[^']*'|\S+)")

MASK = "***"


def redact_url(text: str) -> str:
    """Replace any password in a URL or connection string inside `text` with `***`."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return _KW_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
