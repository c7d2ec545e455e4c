"""Offline checks of the Buildroot external tree (buildroot-config/) against the pinned Buildroot
2025.02.16 source: every defconfig loads and `savedefconfig` gives it back, `show-info` selects a
package for every runtime dependency of pyproject (and theirs) at a version inside the required
range, and `utils/check-package` passes on the tree's packages. Nothing is built or downloaded.

The Buildroot source comes from BUILDROOT_SRC (a directory or the release tarball; by default
../shared/buildroot/buildroot-2025.02.16.tar.xz beside the repository) and is extracted once into
.cache/buildroot/ (ignored by git), with one output directory per defconfig shared by the tests.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
EXTERNAL = REPO / "buildroot-config"
BUILDROOT_VERSION = "2025.02.16"
DEFAULT_SRC = REPO.parent / "shared" / "buildroot" / f"buildroot-{BUILDROOT_VERSION}.tar.xz"
CACHE = REPO / ".cache" / "buildroot"
BOARDS = ("rpi4", "rpi5", "rpi3")
MAKE_TIMEOUT_S = 180
FETCH_TIMEOUT_S = 600
# The box's Python: the environment markers of pyproject and its dependencies are evaluated for it.
TARGET_ENVIRONMENT = {
    "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64",
    "os_name": "posix", "python_version": "3.12", "python_full_version": "3.12.11",
    "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": "",
}
# Distribution names whose Buildroot package is not python-<name>.
PACKAGE_ALIASES = {"pyserial": "python-serial", "python-dateutil": "python-dateutil"}
OVERRIDE_SUFFIX = "-linebox"  # a newer release installed over the tree's (see its .mk)


def _buildroot_tree() -> Path:
    source = Path(os.environ.get("BUILDROOT_SRC", DEFAULT_SRC))
    if not source.exists():
        # A newcomer's clone has no ../shared: the release is downloaded (and its SHA-256
        # checked) the way `make image` does it.
        fetched = subprocess.run(["sh", str(REPO / "images" / "build-image.sh"), "--source"],
                                 capture_output=True, text=True, timeout=FETCH_TIMEOUT_S)
        if fetched.returncode != 0:
            pytest.fail(
                f"Buildroot {BUILDROOT_VERSION} source not found at {source} and not downloaded "
                f"({fetched.stderr.strip()[-300:]}). Set BUILDROOT_SRC to the release tarball or "
                f"an extracted tree: https://buildroot.org/downloads/"
                f"buildroot-{BUILDROOT_VERSION}.tar.xz")
        return Path(fetched.stdout.strip().splitlines()[-1])
    if source.is_dir():
        return source
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    tree = CACHE / digest / f"buildroot-{BUILDROOT_VERSION}"
    stamp = CACHE / digest / ".extracted"
    if not stamp.exists():
        shutil.rmtree(CACHE / digest, ignore_errors=True)
        started = time.monotonic()
        with tarfile.open(source) as archive:
            archive.extractall(CACHE / digest, filter="tar")
        stamp.touch()
        print(f"extracted {source.name} in {time.monotonic() - started:.1f} s")
    return tree


def _make(tree: Path, *args: str) -> str:
    started = time.monotonic()
    result = subprocess.run(["make", "-s", *args], cwd=tree, capture_output=True, text=True,
                            timeout=MAKE_TIMEOUT_S)
    print(f"make {' '.join(a for a in args if not a.startswith('O='))}: "
          f"{time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="session")
def buildroot() -> Path:
    return _buildroot_tree()


@pytest.fixture(scope="session")
def configured(buildroot: Path) -> dict[str, Path]:
    """board -> its output directory, the defconfig loaded (once per session, on demand)."""
    return {}


def _output(buildroot: Path, configured: dict[str, Path], board: str) -> Path:
    if board not in configured:
        out = CACHE / "out" / board
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        _make(buildroot, f"O={out}", f"BR2_EXTERNAL={EXTERNAL}", f"linebox_{board}_defconfig")
        configured[board] = out
    return configured[board]


def _config_lines(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def _setting(line: str) -> tuple[str, str]:
    unset = re.fullmatch(r"# (BR2_\w+) is not set", line)
    if unset:
        return unset.group(1), "n"
    name, _, value = line.partition("=")
    return name, value


def _show_info(buildroot: Path, out: Path) -> dict[str, dict[str, object]]:
    info: dict[str, dict[str, object]] = json.loads(_make(buildroot, f"O={out}", "show-info"))
    return info


def runtime_requirements() -> list[tuple[str, Requirement]]:
    """(who requires it, requirement) for pyproject's runtime dependencies and, walking the
    installed distributions' metadata, theirs — markers evaluated for the box's Python."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pending = [("pyproject", Requirement(text)) for text in pyproject["project"]["dependencies"]]
    edges: list[tuple[str, Requirement]] = []
    seen: set[str] = set()
    while pending:
        parent, requirement = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate(TARGET_ENVIRONMENT):
            continue
        edges.append((parent, requirement))
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for text in importlib.metadata.requires(requirement.name) or []:
            pending.append((name, Requirement(text)))
    return edges


def dependency_problems(edges: list[tuple[str, Requirement]],
                        info: dict[str, dict[str, object]]) -> list[str]:
    """What is wrong with the selected packages for these requirements (empty when all is well):
    a requirement with no selected Buildroot package, or one at a version outside its range."""
    problems = []
    for parent, requirement in edges:
        name = canonicalize_name(requirement.name)
        package = PACKAGE_ALIASES.get(name, f"python-{name}")
        if package + OVERRIDE_SUFFIX in info:
            package += OVERRIDE_SUFFIX
        if package not in info:
            problems.append(f"{requirement} (from {parent}): no Buildroot package {package} "
                            "selected")
            continue
        version = str(info[package]["version"])
        if not requirement.specifier.contains(Version(version), prereleases=True):
            problems.append(f"{requirement} (from {parent}): {package} is {version}")
    return problems


@pytest.mark.parametrize("board", BOARDS)
def test_savedefconfig_gives_the_defconfig_back(buildroot: Path, configured: dict[str, Path],
                                                board: str) -> None:
    out = _output(buildroot, configured, board)
    saved = out / "saved_defconfig"
    _make(buildroot, f"O={out}", "savedefconfig", f"BR2_DEFCONFIG={saved}")
    defconfig = _config_lines(EXTERNAL / "configs" / f"linebox_{board}_defconfig")
    assert _config_lines(saved) == defconfig


@pytest.mark.parametrize("board", BOARDS)
def test_no_defconfig_symbol_is_dropped(buildroot: Path, configured: dict[str, Path],
                                        board: str) -> None:
    out = _output(buildroot, configured, board)
    config = dict(_setting(line) for line in _config_lines(out / ".config")
                  if line.startswith(("BR2_", "# BR2_")))
    defconfig = _config_lines(EXTERNAL / "configs" / f"linebox_{board}_defconfig")
    dropped = [line for line in defconfig
               if config.get(_setting(line)[0], "n") != _setting(line)[1]]
    assert dropped == []
    assert config["BR2_PACKAGE_PYTHON_LINEBOX"] == "y"
    assert config["BR2_TARGET_ROOTFS_SQUASHFS"] == "y"


@pytest.mark.parametrize("board", BOARDS)
def test_every_runtime_dependency_is_a_selected_package_in_range(
        buildroot: Path, configured: dict[str, Path], board: str) -> None:
    info = _show_info(buildroot, _output(buildroot, configured, board))
    edges = runtime_requirements()
    names = sorted({canonicalize_name(r.name) for _, r in edges})
    print(f"{board}: {len(names)} runtime distributions checked: {', '.join(names)}")
    assert len(names) >= 13  # pyproject's own runtime dependencies at least
    assert dependency_problems(edges, info) == []


def test_a_dependency_without_its_package_is_reported(buildroot: Path,
                                                      configured: dict[str, Path]) -> None:
    info = _show_info(buildroot, _output(buildroot, configured, "rpi4"))
    problems = dependency_problems(
        [("pyproject", Requirement("no-such-dist==1.0")),
         ("pyproject", Requirement("Flask==9.9"))], info)
    assert problems == [
        "no-such-dist==1.0 (from pyproject): no Buildroot package python-no-such-dist selected",
        f"Flask==9.9 (from pyproject): python-flask is {info['python-flask']['version']}",
    ]


def test_python_linebox_version_is_pyproject_version() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    mk = (EXTERNAL / "package" / "python-linebox" / "python-linebox.mk").read_text()
    assert f"PYTHON_LINEBOX_VERSION = {pyproject['project']['version']}\n" in mk


def test_check_package_passes_on_every_package(buildroot: Path) -> None:
    python = shutil.which("python3", path="/usr/bin")
    assert python, "Debian's python3 (with python3-magic) is needed by check-package"
    files = sorted(str(p.relative_to(EXTERNAL)) for p in (EXTERNAL / "package").glob("*/*"))
    result = subprocess.run(
        [python, str(buildroot / "utils" / "check-package"), "-b", *files], cwd=EXTERNAL,
        capture_output=True, text=True, timeout=120)
    print(result.stdout[-500:], result.stderr[-2000:])
    assert result.returncode == 0
    assert "0 warnings generated" in result.stdout + result.stderr
    packages = sorted((EXTERNAL / "package").iterdir())
    assert len(packages) >= 10  # python-pyroute2-linebox left with pyroute2 (hal/rtnl.py)
    for package in packages:  # every package was among the files checked
        assert f"package/{package.name}/{package.name}.mk" in files
        assert f"package/{package.name}/Config.in" in files
