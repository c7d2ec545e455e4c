"""Where the web UI leaves an uploaded update bundle for the daemon (firmware/update.py): a
module of plain names, so the web UI's process does not import the updater's asyncio and
urllib (about 36 modules, ~1.5 MB of its idle memory; issue 13's 80 MB budget)."""

from __future__ import annotations

from pathlib import Path

UPDATE_DIR_NAME = "update"  # beside the database
BUNDLE_NAME = "upload.raucb"


def update_dir_for(db_path: str | Path) -> Path:
    """The update folder beside the database (the web UI writes the upload there)."""
    return Path(db_path).resolve().parent / UPDATE_DIR_NAME
