"""A/B updates with RAUC, with Debian's real `rauc` host tool (1.8) and keys made by openssl.

- post-image.sh makes the signed bundle (verity format, as the box takes) of a staged root file
  system: `rauc info` verifies it against the signing certificate; a bundle whose signature or
  payload was altered, or one signed by another key, is refused.
- The overlay's boot selection (rauc-boot, the Pi firmware's tryboot with os_prefix folders) on
  a folder standing for the boot partition: a try is written to tryboot.txt only, mark-good of
  the booted try commits it to config.txt, and a try never marked good leaves config.txt on
  the old slot (the rollback: the firmware boots config.txt without the one-shot flag).
- End to end: RAUC's service (root, on a private D-Bus session bus: no system bus here) with the
  overlay's system.conf turned to plain-file slots; the real daemon; the web UI (Flask test
  client over the daemon's database) uploads a bundle → control socket → daemon runs
  `rauc install` → slot B's file holds the new root file system, the bundle's hook put its
  kernel files into slot-b/ and rauc-boot armed the try. What cannot run here: a verity bundle's
  installation (this kernel has no device-mapper: /dev/mapper/control is absent), so the
  installed bundle is in RAUC's plain format (the signature then covers the whole file); the
  Pi firmware's tryboot flag and the reboot itself.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware import update
from tests.e2e.linebox import running_linebox
from tests.webui.conftest import admin_of, post

REPO = Path(__file__).resolve().parents[2]
BOARD = REPO / "buildroot-config" / "board" / "linebox"
OVERLAY = BOARD / "rootfs-overlay"
RAUC_BOOT = OVERLAY / "usr" / "libexec" / "linebox" / "rauc-boot"
TOOL_TIMEOUT_S = 60
BUS_START_TIMEOUT_S = 10.0
SERVICE_START_TIMEOUT_S = 15.0
INSTALL_TIMEOUT_S = 60.0
POLL_S = 0.2
SLOT_BYTES = 4 * 1024 * 1024
PATH = os.environ["PATH"] + ":/usr/sbin:/sbin"


def _run(*command: str, env: dict[str, str] | None = None, check: bool = True,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                            env={**os.environ, "PATH": PATH, **(env or {})}, cwd=cwd)
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def tools() -> None:
    missing = [tool for tool in ("rauc", "openssl", "mksquashfs", "dbus-daemon", "genimage")
               if not shutil.which(tool, path=PATH)]
    if missing:
        pytest.fail(f"missing tools {missing}: `make test` installs them (Debian packages rauc, "
                    "openssl, squashfs-tools, dbus, genimage)")


@dataclass
class Keys:
    key: Path
    cert: Path


def make_keys(directory: Path, name: str) -> Keys:
    directory.mkdir(parents=True, exist_ok=True)
    keys = Keys(directory / f"{name}-key.pem", directory / f"{name}-cert.pem")
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-keyout", str(keys.key), "-out", str(keys.cert), "-subj", f"/O=Linebox test/CN={name}")
    return keys


def make_rootfs(directory: Path, marker: str) -> Path:
    """A small squashfs standing for a Linebox system: it carries its kernel files in
    /usr/lib/linebox/boot (post-build.sh puts them there) and a marker."""
    root = directory / "root"
    boot = root / "usr" / "lib" / "linebox" / "boot"
    boot.mkdir(parents=True)
    (boot / "Image").write_bytes(f"kernel {marker}".encode())
    (boot / "bcm2711-rpi-4-b.dtb").write_bytes(b"device tree")
    (boot / "cmdline.txt").write_text((BOARD / "cmdline.txt").read_text())
    (root / "etc").mkdir()
    (root / "etc" / "linebox-release").write_text(marker + "\n")
    # RAUC wants a squashfs larger than one 4 KiB block: incompressible filler.
    (root / "etc" / "filler").write_bytes(os.urandom(64 * 1024))
    image = directory / "rootfs.squashfs"
    _run("mksquashfs", str(root), str(image), "-comp", "zstd", "-quiet", "-noappend")
    return image


def plain_bundle(directory: Path, rootfs: Path, keys: Keys, version: str) -> Path:
    """The bundle post-image.sh makes, in RAUC's plain format (installable without dm-verity)."""
    content = directory / "bundle"
    content.mkdir(parents=True)
    shutil.copy(rootfs, content / "rootfs.squashfs")
    shutil.copy(BOARD / "rauc" / "hook", content / "hook")
    (content / "manifest.raucm").write_text(
        f"[update]\ncompatible=linebox-rpi4\nversion={version}\n\n[bundle]\nformat=plain\n\n"
        "[hooks]\nfilename=hook\n\n[image.rootfs]\nfilename=rootfs.squashfs\n"
        "hooks=post-install\n")
    bundle = directory / "linebox.raucb"
    _run("rauc", "bundle", f"--cert={keys.cert}", f"--key={keys.key}", str(content), str(bundle))
    return bundle


def flip_byte(source: Path, target: Path, offset: int) -> Path:
    data = bytearray(source.read_bytes())
    data[offset] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


# --- the bundle post-image.sh makes ----------------------------------------------------------

@pytest.fixture(scope="module")
def built(tools: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Keys]:
    base = tmp_path_factory.mktemp("post-image")
    keys = make_keys(base / "keys", "signing")
    binaries, build = base / "images", base / "build"
    (binaries / "rpi-firmware").mkdir(parents=True)
    build.mkdir()
    (binaries / "rpi-firmware" / "config.txt").write_text("kernel=Image\narm_64bit=1\n")
    (binaries / "rpi-firmware" / "cmdline.txt").write_text((BOARD / "cmdline.txt").read_text())
    (binaries / "rpi-firmware" / "start4.elf").write_bytes(b"firmware stand-in")
    (binaries / "bcm2711-rpi-4-b.dtb").write_bytes(b"device tree stand-in")
    (binaries / "Image").write_bytes(b"kernel stand-in")
    shutil.copy(make_rootfs(base, "built"), binaries / "rootfs.squashfs")
    output = _run(str(BOARD / "post-image.sh"), str(binaries), "rpi4",
                  env={"BINARIES_DIR": str(binaries), "BUILD_DIR": str(build),
                       "LINEBOX_SIGNING_KEY": str(keys.key),
                       "LINEBOX_SIGNING_CERT": str(keys.cert)}).stdout
    assert "linebox.raucb (linebox-rpi4 " in output
    return binaries / "linebox.raucb", keys


def test_post_image_bundle_is_verified_by_rauc_info(built: tuple[Path, Keys]) -> None:
    bundle, keys = built
    info = _run("rauc", "info", f"--keyring={keys.cert}", "--output-format=json", str(bundle))
    assert '"compatible":"linebox-rpi4"' in info.stdout
    assert "Verified inline signature" in info.stderr
    text = _run("rauc", "info", f"--keyring={keys.cert}", str(bundle)).stdout
    assert "Bundle Format: \tverity" in text
    assert "hooks" in _run("rauc", "info", f"--keyring={keys.cert}", "--output-format=json",
                           str(bundle)).stdout


def test_a_bundle_with_an_altered_signature_is_refused(built: tuple[Path, Keys],
                                                       tmp_path: Path) -> None:
    bundle, keys = built
    # The CMS signature is at the end of the file, before its 8-byte length.
    bad = flip_byte(bundle, tmp_path / "bad.raucb", bundle.stat().st_size - 300)
    result = _run("rauc", "info", f"--keyring={keys.cert}", str(bad), check=False)
    assert result.returncode != 0
    assert "signature" in (result.stdout + result.stderr).lower()


def test_a_bundle_with_an_altered_payload_is_refused(built: tuple[Path, Keys],
                                                     tmp_path: Path) -> None:
    bundle, keys = built
    bad = flip_byte(bundle, tmp_path / "bad.raucb", 100)  # inside the squashfs payload
    # The verity hash tree is checked as the payload is read (`rauc extract` reads it all).
    result = _run("rauc", "extract", f"--keyring={keys.cert}", str(bad),
                  str(tmp_path / "out"), check=False)
    assert result.returncode != 0
    assert "corrupted" in result.stdout + result.stderr


def test_a_bundle_signed_by_another_key_is_refused(built: tuple[Path, Keys],
                                                   tmp_path: Path) -> None:
    bundle, _ = built
    other = make_keys(tmp_path, "other")
    result = _run("rauc", "info", f"--keyring={other.cert}", str(bundle), check=False)
    assert result.returncode != 0


# --- rauc-boot: the boot selection on a folder standing for the boot partition ---------------

@pytest.fixture
def boot_dir(tmp_path: Path) -> Path:
    boot = tmp_path / "boot"
    for slot, device in (("a", "/dev/mmcblk0p2"), ("b", "/dev/mmcblk0p3")):
        (boot / f"slot-{slot}").mkdir(parents=True)
        (boot / f"slot-{slot}" / "cmdline.txt").write_text(f"root={device}\n")
    (boot / "config.txt").write_text("kernel=Image\narm_64bit=1\nos_prefix=slot-a/\n")
    return boot


def rauc_boot(boot: Path, *args: str, booted: str = "A",
              check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run("sh", str(RAUC_BOOT), *args, check=check, env={
        "LINEBOX_BOOT_DIR": str(boot), "LINEBOX_RUN_DIR": str(boot.parent / "run"),
        "LINEBOX_BOOTED_SLOT": booted})


def test_a_try_is_written_to_tryboot_txt_only(boot_dir: Path) -> None:
    rauc_boot(boot_dir, "set-state", "B", "bad")
    rauc_boot(boot_dir, "set-primary", "B")
    assert (boot_dir / "tryboot.txt").read_text().splitlines()[-1] == "os_prefix=slot-b/"
    assert (boot_dir / "config.txt").read_text().splitlines()[-1] == "os_prefix=slot-a/"
    assert rauc_boot(boot_dir, "get-primary").stdout.strip() == "B"
    assert (boot_dir.parent / "run" / "tryboot").read_text().strip() == "B"


def test_the_booted_try_marked_good_becomes_the_system(boot_dir: Path) -> None:
    rauc_boot(boot_dir, "set-state", "B", "bad")
    rauc_boot(boot_dir, "set-primary", "B")
    rauc_boot(boot_dir, "set-state", "B", "good", booted="B")
    assert (boot_dir / "config.txt").read_text().splitlines()[-1] == "os_prefix=slot-b/"
    assert rauc_boot(boot_dir, "get-primary", booted="B").stdout.strip() == "B"
    assert rauc_boot(boot_dir, "get-state", "B", booted="B").stdout.strip() == "good"
    assert not (boot_dir / "tryboot.pending").exists()


def test_a_try_never_marked_good_leaves_the_old_slot_to_boot(boot_dir: Path) -> None:
    rauc_boot(boot_dir, "set-state", "B", "bad")
    rauc_boot(boot_dir, "set-primary", "B")
    # B failed to come up: the firmware, without the one-shot flag, reads config.txt (slot A);
    # the daemon of A marks A good, which forgets the try.
    (boot_dir.parent / "run" / "tryboot").unlink()  # /run is a tmpfs: gone with the reboot
    rauc_boot(boot_dir, "set-state", "A", "good", booted="A")
    assert (boot_dir / "config.txt").read_text().splitlines()[-1] == "os_prefix=slot-a/"
    assert rauc_boot(boot_dir, "get-primary").stdout.strip() == "A"
    assert rauc_boot(boot_dir, "get-state", "B").stdout.strip() == "bad"


def test_the_gateway_restarting_before_the_reboot_keeps_the_armed_try(boot_dir: Path) -> None:
    rauc_boot(boot_dir, "set-state", "B", "bad")
    rauc_boot(boot_dir, "set-primary", "B")
    rauc_boot(boot_dir, "set-state", "A", "good", booted="A")  # the daemon started again
    assert rauc_boot(boot_dir, "get-primary").stdout.strip() == "B"
    assert (boot_dir / "tryboot.txt").read_text().splitlines()[-1] == "os_prefix=slot-b/"
    assert (boot_dir.parent / "run" / "tryboot").exists()


def test_a_slot_without_kernel_files_is_not_tried(boot_dir: Path) -> None:
    shutil.rmtree(boot_dir / "slot-b")
    result = rauc_boot(boot_dir, "set-primary", "B", check=False)
    assert result.returncode != 0
    assert "no kernel files" in result.stderr
    assert not (boot_dir / "tryboot.txt").exists()


def test_box_scripts_pass_shellcheck() -> None:
    scripts = [*sorted((OVERLAY / "usr" / "libexec" / "linebox").iterdir()),
               BOARD / "rauc" / "hook", BOARD / "post-build.sh", BOARD / "post-image.sh"]
    result = _run("shellcheck", "-s", "sh", "-x", "-P", str(OVERLAY / "usr/libexec/linebox"),
                  *map(str, scripts), check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    for script in scripts:
        _run("dash", "-n", str(script))


# --- end to end: web UI → control socket → daemon → rauc install → RAUC's service ------------

@dataclass
class RaucSystem:
    env: dict[str, str]
    boot: Path
    run: Path
    slot_a: Path
    slot_b: Path
    keys: Keys
    service_log: Path


def _system_conf(base: Path, keys: Keys, slot_a: Path, slot_b: Path) -> Path:
    """The overlay's system.conf with this test's slots (plain files), folders and backend."""
    text = (OVERLAY / "etc" / "rauc" / "system.conf").read_text()
    replaced = (text.replace("@COMPATIBLE@", "linebox-rpi4")
                .replace("data-directory=/data/rauc",
                         f"data-directory={base / 'data'}\nmountprefix={base / 'mnt'}")
                # Plain bundles only here: this kernel has no device-mapper for verity ones.
                .replace("bundle-formats=-plain", "bundle-formats=plain")
                .replace("/etc/rauc/keyring.pem", str(keys.cert))
                .replace("/usr/libexec/linebox/rauc-boot", str(RAUC_BOOT))
                .replace("/dev/mmcblk0p2", str(slot_a)).replace("/dev/mmcblk0p3", str(slot_b)))
    assert replaced.count(str(base)) >= 4
    conf = base / "system.conf"
    conf.write_text(replaced)
    return conf


@pytest.fixture
def rauc_system(tools: None, tmp_path: Path) -> Iterator[RaucSystem]:
    base = tmp_path / "rauc"
    for name in ("data", "mnt", "run"):
        (base / name).mkdir(parents=True)
    keys = make_keys(base / "keys", "box")
    slot_a, slot_b = base / "slot-a.img", base / "slot-b.img"
    for slot in (slot_a, slot_b):
        with slot.open("wb") as image:
            image.truncate(SLOT_BYTES)
    boot = base / "boot"
    (boot / "slot-a").mkdir(parents=True)
    (boot / "slot-a" / "cmdline.txt").write_text("root=/dev/mmcblk0p2 rauc.slot=A\n")
    (boot / "config.txt").write_text("kernel=Image\narm_64bit=1\nos_prefix=slot-a/\n")
    conf = _system_conf(base, keys, slot_a, slot_b)
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    service: subprocess.Popen[bytes] | None = None
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()  # printed as soon as it listens
        assert address.startswith("unix:"), address
        env = {"DBUS_SESSION_BUS_ADDRESS": address, "DBUS_STARTER_BUS_TYPE": "session"}
        service_log = base / "service.log"
        with service_log.open("wb") as log:
            service = subprocess.Popen(
                ["rauc", "service", f"--conf={conf}", "--override-boot-slot=A"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PATH": PATH, **env, "LINEBOX_BOOT_DIR": str(boot),
                     "LINEBOX_RUN_DIR": str(base / "run"), "LINEBOX_BOOTED_SLOT": "A",
                     "LINEBOX_RAUC_BOOT": str(RAUC_BOOT)})
        deadline = time.monotonic() + SERVICE_START_TIMEOUT_S
        while _run("rauc", "status", env=env, check=False).returncode != 0:
            assert service.poll() is None, service_log.read_text()
            assert time.monotonic() < deadline, "RAUC's service did not answer on the bus"
            time.sleep(POLL_S)
        yield RaucSystem(env=env, boot=boot, run=base / "run", slot_a=slot_a, slot_b=slot_b,
                         keys=keys, service_log=service_log)
    finally:
        for process in (service, bus):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


def _install_state(linebox: object) -> dict[str, object]:
    answer = linebox.control({"command": "update", "action": "status"})  # type: ignore[attr-defined]
    assert answer["ok"], answer
    state: dict[str, object] = answer["update"]
    return state


def _wait_install_done(linebox: object) -> dict[str, object]:
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    while True:
        state = _install_state(linebox)
        if state["install"]["phase"] not in ("installing", "idle"):  # type: ignore[index]
            return state
        assert time.monotonic() < deadline, f"installation still running: {state}"
        time.sleep(POLL_S)


def test_web_ui_upload_is_installed_into_the_other_slot_and_armed_for_a_try(
        rauc_system: RaucSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in rauc_system.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LINEBOX_RAUC_SYSTEM_CONF", str(tmp_path / "rauc" / "system.conf"))
    monkeypatch.setenv("LINEBOX_REBOOT_REQUEST", str(tmp_path / "reboot-request"))
    monkeypatch.delenv("LINEBOX_WEB_URL", raising=False)
    rootfs = make_rootfs(tmp_path / "new", "1.9.0")
    bundle = plain_bundle(tmp_path / "new", rootfs, rauc_system.keys, "1.9.0")
    with running_linebox(tmp_path / "box", None) as linebox:
        # Ready (SIP served; no web UI process in this test): the booted slot is marked good.
        deadline = time.monotonic() + INSTALL_TIMEOUT_S
        while not (rauc_system.boot / "slot-a.state").exists():
            assert time.monotonic() < deadline, linebox.log()
            time.sleep(POLL_S)
        assert (rauc_system.boot / "slot-a.state").read_text().strip() == "good"
        admin = admin_of(linebox.db)
        page = admin.get("/system/update").get_data(as_text=True)
        assert 'id="slot-A"' in page and "running now" in page

        with bundle.open("rb") as upload:
            response = post(admin, "/system/update", {"bundle": (upload, "linebox.raucb")},
                            form_page="/system/update", content_type="multipart/form-data")
        assert response.status_code == 302, response.get_data(as_text=True)
        state = _wait_install_done(linebox)
        install = state["install"]
        assert install["phase"] == "installed", (  # type: ignore[index]
            f"{state}\n{rauc_system.service_log.read_text()[-3000:]}")

        # Slot B holds the new system, byte for byte; slot A (running) is untouched.
        written = rauc_system.slot_b.read_bytes()[:rootfs.stat().st_size]
        assert written == rootfs.read_bytes()
        assert rauc_system.slot_a.read_bytes() == bytes(SLOT_BYTES)
        # The hook put the new kernel files in slot-b/ with slot B's command line.
        assert (rauc_system.boot / "slot-b" / "Image").read_bytes() == b"kernel 1.9.0"
        assert "root=/dev/mmcblk0p3 rauc.slot=B " in (
            rauc_system.boot / "slot-b" / "cmdline.txt").read_text()
        # Armed for one try; config.txt (what boots without the flag) still names slot A.
        assert (rauc_system.boot / "tryboot.txt").read_text().endswith("os_prefix=slot-b/\n")
        assert (rauc_system.boot / "config.txt").read_text().endswith("os_prefix=slot-a/\n")
        assert (rauc_system.run / "tryboot").read_text().strip() == "B"

        slots = {slot["bootname"]: slot for slot in state["slots"]}  # type: ignore[attr-defined]
        assert slots["B"]["version"] == "1.9.0"
        assert state["primary"] == "B" and state["booted"] == "A"
        page = admin.get("/system/update").get_data(as_text=True)
        assert "starts at the next restart" in page and 'id="restart"' in page

        response = post(admin, "/system/update/restart", form_page="/system/update")
        assert response.status_code == 302
        assert (tmp_path / "reboot-request").exists()


def test_a_tampered_upload_is_refused_and_changes_nothing(
        rauc_system: RaucSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in rauc_system.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LINEBOX_RAUC_SYSTEM_CONF", str(tmp_path / "rauc" / "system.conf"))
    monkeypatch.delenv("LINEBOX_WEB_URL", raising=False)
    rootfs = make_rootfs(tmp_path / "new", "evil")
    bundle = plain_bundle(tmp_path / "new", rootfs, rauc_system.keys, "6.6.6")
    bad = flip_byte(bundle, tmp_path / "bad.raucb", 2000)  # a plain bundle's signature covers it
    with running_linebox(tmp_path / "box", None) as linebox:
        admin = admin_of(linebox.db)
        with bad.open("rb") as upload:
            response = post(admin, "/system/update", {"bundle": (upload, "linebox.raucb")},
                            form_page="/system/update", content_type="multipart/form-data")
        assert response.status_code == 302
        state = _wait_install_done(linebox)
        install = state["install"]
        assert install["phase"] == "failed"  # type: ignore[index]
        assert "signature" in str(install["error"]).lower(), install  # type: ignore[index]
        assert rauc_system.slot_b.read_bytes() == bytes(SLOT_BYTES)
        assert not (rauc_system.boot / "tryboot.txt").exists()
        page = admin.get("/system/update").get_data(as_text=True)
        assert "Failed, nothing was changed" in page


def test_a_system_whose_web_ui_never_answers_is_not_marked_good(
        rauc_system: RaucSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in rauc_system.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(update, "READY_WAIT_S", 1.0)
    monkeypatch.setattr(update, "READY_POLL_S", 0.1)
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/"
    updater = update.Updater(tmp_path / "update", system_conf=tmp_path / "rauc" / "system.conf")
    assert updater.available
    asyncio.run(asyncio.wait_for(updater.mark_good_when_ready(url), 30))
    assert updater.marked_good is None
    assert not (rauc_system.boot / "slot-a.state").exists()
    # Without a web UI to wait for (a daemon run without --http): marked good at once.
    asyncio.run(asyncio.wait_for(updater.mark_good_when_ready(None), 30))
    assert updater.marked_good == "A"
    assert (rauc_system.boot / "slot-a.state").read_text().strip() == "good"


def test_a_web_ui_that_only_redirects_to_https_counts_as_answering(
        rauc_system: RaucSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With HTTPS on, the web UI's plain port answers every request with a redirect to a
    # self-signed certificate: that is a served web UI, and the slot is marked good.
    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(302)
            self.send_header("Location", "https://127.0.0.1:1/")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    for name, value in rauc_system.env.items():
        monkeypatch.setenv(name, value)
    server = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        updater = update.Updater(tmp_path / "update",
                                 system_conf=tmp_path / "rauc" / "system.conf")
        url = f"http://127.0.0.1:{server.server_port}/"
        asyncio.run(asyncio.wait_for(updater.mark_good_when_ready(url), 30))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert updater.marked_good == "A"
    assert (rauc_system.boot / "slot-a.state").read_text().strip() == "good"
