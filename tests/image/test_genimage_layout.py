"""The SD card layout, built offline: the board's post-image.sh runs Debian's genimage on a staged
tiny tree (a squashfs root, a kernel and firmware stand-ins) and the partition table of the image
it makes (sfdisk -J) is the one images/README.md documents."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BOARD = REPO / "buildroot-config" / "board" / "linebox"
README = REPO / "images" / "README.md"
SECTOR_BYTES = 512
MIB = 1024 * 1024
TOOLS = ("genimage", "sfdisk", "mksquashfs", "mkdosfs", "mcopy", "mdir")
# | 1 | boot | 0x0C | 4 | 64 | ... rows of the README's partition table.
ROW = re.compile(r"^\| (\d) \| (\w+) \| 0x([0-9A-Fa-f]+) \| (\d+) \| (\d+) \|", re.MULTILINE)


def _run(*command: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [tool for tool in TOOLS if not shutil.which(tool, path=os.environ["PATH"] +
                                                          ":/usr/sbin:/sbin")]
    if missing:
        pytest.fail(f"missing tools {missing}: `make test` installs them (genimage, fdisk, "
                    "squashfs-tools, dosfstools, mtools)")
    base = tmp_path_factory.mktemp("sdcard")
    root, binaries, build = base / "root", base / "images", base / "build"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("linebox\n")
    (binaries / "rpi-firmware").mkdir(parents=True)
    build.mkdir()
    (binaries / "rpi-firmware" / "config.txt").write_text("kernel=Image\narm_64bit=1\n")
    (binaries / "rpi-firmware" / "cmdline.txt").write_text((BOARD / "cmdline.txt").read_text())
    (binaries / "rpi-firmware" / "start4.elf").write_bytes(b"firmware stand-in")
    (binaries / "bcm2711-rpi-4-b.dtb").write_bytes(b"device tree stand-in")
    (binaries / "Image").write_bytes(b"kernel stand-in")
    path = os.environ["PATH"] + ":/usr/sbin:/sbin"
    _run("mksquashfs", str(root), str(binaries / "rootfs.squashfs"), "-comp", "zstd",
         "-quiet", "-noappend")
    started = time.monotonic()
    output = _run(str(BOARD / "post-image.sh"),
                  env={**os.environ, "PATH": path, "BINARIES_DIR": str(binaries),
                       "BUILD_DIR": str(build)})
    print(f"post-image.sh (genimage) made the SD card image in "
          f"{time.monotonic() - started:.2f} s")
    assert "root file system" in output
    return binaries / "linebox.img"


def _documented() -> list[tuple[int, str, int, int, int]]:
    rows = ROW.findall(README.read_text())
    return [(int(n), name, int(kind, 16), int(start), int(size))
            for n, name, kind, start, size in rows]


def test_partition_table_is_the_documented_one(image: Path) -> None:
    table = json.loads(_run("sfdisk", "-J", str(image)))["partitiontable"]
    assert table["label"] == "dos"
    actual = [(index + 1, int(part["type"], 16), part["start"] * SECTOR_BYTES // MIB,
               part["size"] * SECTOR_BYTES // MIB)
              for index, part in enumerate(table["partitions"])]
    documented = [(n, kind, start, size) for n, _, kind, start, size in _documented()]
    print("partitions (number, type, start MiB, size MiB):", actual)
    assert len(documented) == 4
    assert actual == documented
    assert table["partitions"][0].get("bootable") is True


def test_documented_names_are_the_layout_names() -> None:
    layout = (BOARD / "genimage-sdcard.cfg").read_text()
    names = re.findall(r"^\tpartition (\w+) \{", layout, re.MULTILINE)
    assert [name for _, name, _, _, _ in _documented()] == names


def test_boot_partition_holds_firmware_kernel_and_command_line(image: Path) -> None:
    listing = _run("mdir", "-b", "-i", f"{image}@@{4 * MIB}", "::")
    for name in ("config.txt", "start4.elf"):
        assert f"::/{name}" in listing
    # Slot A's kernel files in its own folder, named by config.txt's os_prefix (rauc-boot).
    slot_a = _run("mdir", "-b", "-i", f"{image}@@{4 * MIB}", "::/slot-a")
    for name in ("cmdline.txt", "Image", "bcm2711-rpi-4-b.dtb"):
        assert f"::/slot-a/{name}" in slot_a
    config = _run("mtype", "-i", f"{image}@@{4 * MIB}", "::/config.txt")
    assert config.splitlines()[-1] == "os_prefix=slot-a/"
    cmdline = _run("mtype", "-i", f"{image}@@{4 * MIB}", "::/slot-a/cmdline.txt")
    assert "root=/dev/mmcblk0p2 rauc.slot=A " in cmdline


def test_root_file_system_over_budget_is_refused(tmp_path: Path) -> None:
    binaries = tmp_path / "images"
    binaries.mkdir()
    with open(binaries / "rootfs.squashfs", "wb") as big:
        big.truncate(121 * MIB)  # sparse: no disk used
    result = subprocess.run([str(BOARD / "post-image.sh")], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "BINARIES_DIR": str(binaries),
                                             "BUILD_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "over its budget" in result.stderr
