# Linebox — the two set-up commands for a fresh Debian machine are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the test suite drives as real peers (SIPp, the browser, a softphone, an AT client
# for the fake modems).
DEB_TEST_PACKAGES := sip-tester chromium baresip gammu socat
# libfaketime: tests/e2e/test_clock_jump_e2e.py steps a running daemon's wall clock; openssl makes
# the web UI's certificate (and the certificates tests/webui/test_tls.py uploads).
DEB_TEST_PACKAGES += faketime openssl
# The interop matrix (tests/e2e/test_interop_clients.py): Linphone's console client, and sox to
# find a tone's frequency in what a phone recorded.
DEB_TEST_PACKAGES += linphone-cli sox
DEB_BENCH_PACKAGES := sip-tester util-linux rtpengine-daemon
# bench/media.py's reference relay (user space, no kernel module); its smoke test runs in make test.
DEB_TEST_PACKAGES += rtpengine-daemon
# The offline Buildroot checks (tests/image/test_buildroot_offline.py, test_genimage_layout.py):
# Buildroot's kconfig, check-package, genimage and the file system tools it calls.
DEB_IMAGE_CHECK_PACKAGES := build-essential libncurses-dev python3 python3-magic flake8 shellcheck \
	genimage fdisk dosfstools mtools squashfs-tools
DEB_TEST_PACKAGES += $(DEB_IMAGE_CHECK_PACKAGES)
# The smoke image (images/smoke/build.sh, tests/image/test_smoke_qemu.py): QEMU for aarch64 and
# cpio for the initramfs; build.sh adds dpkg's arm64 architecture itself.
DEB_SMOKE_PACKAGES := qemu-system-arm cpio
DEB_TEST_PACKAGES += $(DEB_SMOKE_PACKAGES)
# A/B updates (tests/image/test_rauc.py): RAUC's host tool and service, a D-Bus daemon for its
# private session bus, openssl for the test signing keys.
DEB_TEST_PACKAGES += rauc dbus openssl
BOARD ?= rpi4

.PHONY: run test lint bench deb-test deb-bench clean image

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/linebox run --db var/linebox.db --sip 127.0.0.1:5060 --http 127.0.0.1:8080

deb-test:
	@./scripts/ensure-deb.sh $(DEB_TEST_PACKAGES)

lint: $(STAMP)
	$(VENV)/bin/ruff check firmware hal webui tests bench
	$(VENV)/bin/mypy

test: $(STAMP) deb-test lint
	$(PY) -m pytest

bench: $(STAMP)
	@./scripts/ensure-deb.sh $(DEB_BENCH_PACKAGES)
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) bench/routing.py
	$(PY) bench/webui_monitor.py
	$(PY) bench/call_setup.py
	$(PY) bench/overload.py
	$(PY) bench/at_roundtrip.py
	$(PY) bench/idle_memory.py
	$(PY) bench/media.py
	$(PY) bench/recording.py
	$(PY) bench/soak.py
	$(PY) bench/sqlite_durability.py
	$(PY) bench/whatif.py

# The Raspberry Pi image (needs internet and hours): images/out/linebox-$(BOARD).img.
image:
	./images/build-image.sh $(BOARD)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
