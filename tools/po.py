"""Keep the Chinese catalogue in step with the code: `make messages` runs this.

    python tools/po.py                  extract (babel.cfg), update syncd.po, list what is empty
    python tools/po.py zh.json [...]    also fill empty entries from {msgid: msgstr} files
                                        (a msgctxt-ed message: "context\\u0004msgid")

Writes the .po without source locations (they churn on every edit) at width 100. The test
tests/unit/test_i18n.py fails while any entry is empty, fuzzy or unused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

REPO = Path(__file__).resolve().parent.parent
PO = REPO / "syncd" / "locale" / "zh" / "LC_MESSAGES" / "syncd.po"
POT = REPO / ".messages.pot"
BIN = Path(sys.executable).parent


def _babel(*args: str) -> None:
    subprocess.run([str(BIN / "pybabel"), "-q", *args], cwd=REPO, check=True)


def main(fills: list[str]) -> int:
    _babel(
        "extract", "-F", "babel.cfg", "-k", "N_", "-k", "NP_:1c,2", "-k", "_",
        "--no-default-keywords", "-o", str(POT), ".",
    )  # fmt: skip
    _babel(
        "update", "-i", str(POT), "-d", "syncd/locale", "-D", "syncd", "-l", "zh",
        "--no-fuzzy-matching", "--ignore-obsolete",
    )  # fmt: skip
    POT.unlink()
    translations: dict[str, str] = {}
    for name in fills:
        translations.update(json.loads(Path(name).read_text(encoding="utf-8")))
    with PO.open("rb") as f:
        catalog = read_po(f)
    empty = []
    for message in catalog:
        if not message.id or message.string:
            continue
        key = f"{message.context}\x04{message.id}" if message.context else str(message.id)
        if key in translations:
            message.string = translations[key]
        else:
            empty.append(key.replace("\x04", " | "))
    with PO.open("wb") as f:
        write_po(f, catalog, no_location=True, width=100, omit_header=False)
    for key in empty:
        sys.stderr.write(f"untranslated: {key}\n")
    return 1 if empty else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
