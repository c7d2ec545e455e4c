"""The configuration file's YAML: PyYAML's safe loader made strict (no repeated keys, no
aliases, bounded nesting and numbers) and a dumper that never writes aliases. It knows YAML only:
`config.py`'s `load_yaml`, `load_yaml_file` and `dump_yaml` are the interface, with the limits
and the configuration's own checks.

Apart from `config.py` so that PyYAML (about 10 ms of imports natively, several hundred ms on an
emulated or small CPU: its reader and resolver compile large regular expressions) is imported
only when a YAML file is read or written, not by every process that uses the configuration
model: the daemon and the web UI start without it (images/README.md, boot to ready).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import yaml
import yaml.nodes


class YamlProblem(ValueError):
    """Text that is not YAML, or YAML the configuration does not take; the message names the
    place (line and column) where there is one."""


class _Refused(yaml.MarkedYAMLError):
    """Well-formed YAML the configuration does not take (an alias, too deep, a huge number)."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(None, None, problem, mark)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key repeated in one mapping is an error, and that
    anchors and aliases, nesting past `max_depth` and numbers past `integer_max` are refused
    where they are written (line and column).

    Plain PyYAML keeps the last of two `password:` lines without a word; a config file must not
    lose a line silently. Aliases are refused outright rather than bounded: a kilobyte of nested
    ones expands to gigabytes (the "billion laughs"), one that names itself makes a structure
    that holds itself, and `dump_yaml` never writes them, so no export needs them.
    """

    max_depth = 0  # the limits: set on a subclass per load (load_data)
    integer_digits_max = 0
    integer_max = 0

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(f"an alias (*{event.anchor}) is not accepted; write the value out "
                           "in full", event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise _Refused(f"an anchor (&{anchor}) is not accepted; write each value out in "
                           "full", event.start_mark)
        if self._depth >= self.max_depth:
            raise _Refused(f"nested more than {self.max_depth} levels deep", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # An explicit tag on the wrong text (`!!int abc`, `!!bool maybe`, a 30th of February)
        # makes PyYAML's constructors raise plain Python errors; name the place instead.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, KeyError, AttributeError, TypeError, OverflowError) as error:
            tag = str(node.tag).rsplit(":", 1)[-1]
            raise _Refused(f"not a valid {tag}: {error}", node.start_mark) from None

    def construct_yaml_int(self, node: yaml.nodes.ScalarNode) -> int:
        # Checked before converting: Python refuses to read an integer of over 4300 digits
        # (with a ValueError), and a long one in base 60 ("1:00:00:…") is slow to compute.
        if len(str(self.construct_scalar(node))) > 2 * self.integer_digits_max:
            raise _Refused(self._too_large(), node.start_mark)
        value = super().construct_yaml_int(node)
        if abs(value) > self.integer_max:
            raise _Refused(self._too_large(), node.start_mark)
        return int(value)

    def construct_yaml_float(self, node: yaml.nodes.ScalarNode) -> float:
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):
            raise _Refused("must be a finite number (no .inf, .nan or 1e999)", node.start_mark)
        return float(value)

    def _too_large(self) -> str:
        return (f"number too large: at most {self.integer_digits_max} digits (write phone "
                "numbers in quotes)")

    def construct_mapping(
        self, node: yaml.nodes.MappingNode, deep: bool = False
    ) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"found the key {key!r} twice",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)
_StrictLoader.add_constructor("tag:yaml.org,2002:float", _StrictLoader.construct_yaml_float)


class _PlainDumper(yaml.SafeDumper):
    """PyYAML's safe dumper, except that a value met twice is written out twice: never an
    anchor and alias, which `load_yaml` refuses (an export must import as it is)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def load_data(text: str, *, max_depth: int, integer_digits_max: int, integer_max: int) -> Any:
    """The data of a YAML document under the strict loader's rules; YamlProblem if it breaks
    one or is not YAML."""

    class Loader(_StrictLoader):
        pass

    Loader.max_depth = max_depth
    Loader.integer_digits_max = integer_digits_max
    Loader.integer_max = integer_max
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except _Refused as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise YamlProblem(f"{where}{error.problem}") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = error.problem or error.context or "unreadable"
        raise YamlProblem(f"YAML syntax error{where}: {problem}") from error
    except yaml.YAMLError as error:
        raise YamlProblem(f"YAML syntax error: {error}") from error


def dump_data(data: Any) -> str:
    """YAML text for `data`, keys in the order given, Cyrillic left readable, no aliases."""
    return yaml.dump(data, Dumper=_PlainDumper, allow_unicode=True, sort_keys=False,
                     default_flow_style=False)
