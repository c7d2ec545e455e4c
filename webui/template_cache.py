"""The web UI's templates compiled when the image is built, not at every start of the box.

Jinja compiles each template to Python code the first time a page uses it: the first-run page
alone (four templates) took ~70 ms of the web UI's first answer natively, about a second on the
box's way to ready under emulation (images/README.md). `main([DIR])` (images/smoke/build.sh
calls it) compiles every template with the web UI's own environment (the app `create_app`
makes: its extensions and autoescaping) into DIR; an image puts DIR at `webui/template-cache/`
in the installed package, and `create_app` reads it from there when it exists.

The image's cache is only ever read on the box (the root file system is read-only). An image
built without one (Buildroot's package) has the box compile its templates once into the data
partition instead (`CACHE_DIRECTORY_ENV`, set by the service script). Jinja checks each
entry before using it: its own bytecode format and the Python version (the entry's header), and
the template's source (a checksum): an entry that does not match is ignored and the template is
compiled as it would be without one. Entries are named by the template's name alone, not its
path, which differs between the build machine and the box.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2.bccache import Bucket, BytecodeCache

if TYPE_CHECKING:
    from flask import Flask

DIRECTORY_NAME = "template-cache"  # beside templates/ in the installed package
SUFFIX = ".cache"


class PrecompiledTemplates(BytecodeCache):
    """Compiled templates from `directory`; written only by `precompile` (`writable`)."""

    def __init__(self, directory: Path, *, writable: bool = False) -> None:
        self.directory = directory
        self.writable = writable

    def get_cache_key(self, name: str, filename: str | None = None) -> str:
        return hashlib.sha1(name.encode("utf-8")).hexdigest()  # noqa: S324 - a name, not a secret

    def _path(self, bucket: Bucket) -> Path:
        return self.directory / f"{bucket.key}{SUFFIX}"

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            with self._path(bucket).open("rb") as stream:
                bucket.load_bytecode(stream)  # resets the bucket when the entry does not match
        except OSError:
            return

    def dump_bytecode(self, bucket: Bucket) -> None:
        if not self.writable:
            return
        path = self._path(bucket)
        # A full data partition: the page is served all the same, the entry written later.
        written: str | None = None
        try:
            with tempfile.NamedTemporaryFile("wb", dir=self.directory, delete=False) as stream:
                written = stream.name
                bucket.write_bytecode(stream)
            os.replace(written, path)
        except OSError:
            if written is not None:
                with contextlib.suppress(OSError):
                    os.unlink(written)


# Where the box keeps templates it compiled itself, when the image has none compiled ahead
# (Buildroot's python-linebox package: compiling them there would need Flask and the web UI's
# extensions on the build machine's Python): set by the service script to a directory on the data
# partition, so only the first start after an install or an update compiles them.
CACHE_DIRECTORY_ENV = "LINEBOX_TEMPLATE_CACHE"


def attach(app: Flask, package_dir: Path) -> None:
    """Use the precompiled templates beside the package's templates, if the image has them;
    else, where CACHE_DIRECTORY_ENV names a directory, the ones this box compiled (and compile
    there what is missing or out of date)."""
    directory = package_dir / DIRECTORY_NAME
    if directory.is_dir():
        app.jinja_env.bytecode_cache = PrecompiledTemplates(directory)
        return
    kept = os.environ.get(CACHE_DIRECTORY_ENV, "")
    if kept:
        try:
            Path(kept).mkdir(parents=True, exist_ok=True)
        except OSError:
            return  # a full or read-only data partition: compiled at each start, as without
        app.jinja_env.bytecode_cache = PrecompiledTemplates(Path(kept), writable=True)


def precompile(directory: Path) -> int:
    """Compile every template of the web UI into `directory`; how many."""
    from . import create_app

    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        app = create_app({"DB": str(Path(scratch) / "linebox.db")})
        environment = app.jinja_env
        environment.bytecode_cache = PrecompiledTemplates(directory, writable=True)
        names = environment.list_templates()
        for name in names:
            environment.get_template(name)
    return len(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="webui.template_cache",
                                     description="compile the web UI's templates into DIR")
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    count = precompile(args.directory)
    print(f"{count} templates compiled into {args.directory}")
    return 0
