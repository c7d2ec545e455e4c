"""Translation catalogs: every user-visible string is English in the code and Russian (the
default) in `translations/<area>/ru/LC_MESSAGES/messages.po`, one catalog per page group.

    python -m webui.i18n compile   # .po -> .mo (the app reads .mo; both are committed)
    python -m webui.i18n check     # every string in the code and templates has a Russian text,
                                   # and every .mo is up to date with its .po
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

WEBUI = Path(__file__).parent
TRANSLATIONS = WEBUI / "translations"
LOCALE = "ru"
METHOD_MAP = [("**.py", "python"), ("templates/**.html", "jinja2.ext:babel_extract")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None,
            "_l": None}


def catalogs() -> dict[Path, Catalog]:
    found = {}
    for po in sorted(TRANSLATIONS.glob(f"*/{LOCALE}/LC_MESSAGES/messages.po")):
        with po.open("rb") as handle:
            found[po] = read_po(handle, locale=LOCALE)
    return found


def mo_bytes(catalog: Catalog) -> bytes:
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    return buffer.getvalue()


def compile_all() -> list[Path]:
    written = []
    for po, catalog in catalogs().items():
        mo = po.with_suffix(".mo")
        data = mo_bytes(catalog)
        if not mo.exists() or mo.read_bytes() != data:
            mo.write_bytes(data)
            written.append(mo)
    return written


def used_messages() -> dict[str, str]:
    """msgid → where it is used, for every translatable string in the code and templates."""
    used: dict[str, str] = {}
    options = {"extensions": "jinja2.ext.i18n", "trimmed": "false"}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        WEBUI, method_map=METHOD_MAP, keywords=KEYWORDS,
        options_map={"templates/**.html": options},
    ):
        ids = message if isinstance(message, tuple) else (message,)
        for msgid in ids:
            if msgid:
                used.setdefault(msgid, f"{filename}:{lineno}")
    return used


def problems() -> list[str]:
    found = catalogs()
    translated: dict[str, str] = {}
    for catalog in found.values():
        for message in catalog:
            if message.id and message.string:
                key = message.id if isinstance(message.id, str) else message.id[0]
                translated[key] = message.string if isinstance(message.string, str) else \
                    message.string[0]
    issues = [f"{where}: no Russian text for {msgid!r}"
              for msgid, where in sorted(used_messages().items(), key=lambda i: i[1])
              if msgid not in translated]
    for po, catalog in found.items():
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.read_bytes() != mo_bytes(catalog):
            issues.append(f"{mo}: out of date; run python -m webui.i18n compile")
    return issues


def main(argv: list[str]) -> int:
    if argv[1:] == ["compile"]:
        for path in compile_all():
            print(f"wrote {path}")
        return 0
    if argv[1:] == ["check"]:
        issues = problems()
        print("\n".join(issues) or "all strings translated; catalogs compiled")
        return 1 if issues else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
