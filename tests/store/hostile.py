"""Configuration files built to hurt the importer (issue 9 item 8), shared by the tests of the
Python API, `linebox config import` and the web UI's restore page.

Each sits in the one place an old importer kept any plain data verbatim — a department's legacy
`schedule` that is not text — so that nothing but the new bounds refuses it. The alias bomb is
a small one (six levels of nine, half a million strings once expanded): the old importer
accepted it in a second or two and stored it, where the issue's (nine levels) took minutes and
80 MB.
"""

from __future__ import annotations

PREFIX = """\
extensions:
  - number: "101"
    name: Anna
    password: secret-101
departments:
  - number: "200"
    name: Sales
    strategy: ring_all
    ring_timeout_s: 20
    members: ["101"]
"""


def _in_schedule(value: str) -> bytes:
    return (PREFIX + f"    schedule: {value}\n").encode()


def _alias_bomb(levels: int = 6) -> bytes:
    lines = ['      - &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        refs = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"      - &l{level} [{refs}]")
    return (PREFIX + "    schedule:\n" + "\n".join(lines) + "\n").encode()


NESTING = 20_000

# name → (file, what the refusal says, in part)
HOSTILE_FILES: dict[str, tuple[bytes, str]] = {
    "alias bomb": (_alias_bomb(), "line 12, column 9: an anchor (&l0) is not accepted"),
    "self-referencing alias": (_in_schedule("&me [*me]"), "an anchor (&me) is not accepted"),
    f"{NESTING} levels of nesting": (
        _in_schedule("[" * NESTING + "]" * NESTING), "nested more than 64 levels deep"),
    "5,000-digit integer": (_in_schedule("9" * 5000), "line 11, column 15: number too large"),
    "lone surrogate": (
        PREFIX.replace("name: Anna", 'name: "Anna \\ud800"').encode(),
        "extensions[0].name: the text must not contain a lone surrogate"),
    "bytes that are not UTF-8": (
        PREFIX.replace("Anna", "Anna \xff").encode("latin-1"), "not UTF-8 text: line 3"),
    "a file over 1 MiB": (
        PREFIX.encode() + b"# padding padding padding padding padding padding\n" * 22_000,
        "the file is larger than 1024 KiB"),
}
