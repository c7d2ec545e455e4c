"""Write a catalog from a {msgid: Russian} mapping: `python -m webui.translations.make_po AREA
FILE.json` — a developer tool for adding strings; the .po files are the source of truth."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

HERE = Path(__file__).parent


def merge(area: str, texts: dict[str, str]) -> Path:
    po = HERE / area / "ru" / "LC_MESSAGES" / "messages.po"
    po.parent.mkdir(parents=True, exist_ok=True)
    if po.exists():
        with po.open("rb") as handle:
            catalog = read_po(handle, locale="ru")
    else:
        catalog = Catalog(locale="ru", project="Linebox", charset="utf-8")
    for msgid, text in texts.items():
        catalog.add(msgid, text, flags=("python-format",) if "%(" in msgid else ())
    with po.open("wb") as handle:
        write_po(handle, catalog, width=100, sort_output=True, omit_header=False)
    return po


if __name__ == "__main__":
    area, source = sys.argv[1], sys.argv[2]
    print(merge(area, json.loads(Path(source).read_text(encoding="utf-8"))))
