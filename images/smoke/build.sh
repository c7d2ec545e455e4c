#!/bin/sh
# The smoke image: the box's own rootfs overlay and init scripts
# (buildroot-config/board/linebox/rootfs-overlay/) on an aarch64 root file system made from
# Debian 12's arm64 packages (linux-image-arm64, busybox-static, python3.11) and the project's
# wheel with its dependencies for aarch64, packed as an initramfs for `qemu-system-aarch64 -M virt`.
# It proves that the firmware, its init scripts and its dependencies run on 64-bit ARM. It is NOT
# the Buildroot image (other kernel, other C library build, Python 3.11 instead of 3.12).
#
# Usage: images/smoke/build.sh [OUT_DIR]
#   OUT_DIR (default $CACHE/out) receives vmlinuz and initramfs.cpio (uncompressed: the emulated
#   kernel unpacks it about 0.5 s sooner than a gzipped one, measured).
# Environment: LINEBOX_SMOKE_CACHE (default ~/.cache/linebox-smoke) keeps the downloaded .debs
# and wheels between runs, outside the repository; PYTHON is the host Python 3.11 that runs pip
# and byte-compiles the tree (default: the repository's .venv, else python3).
# Needs: apt with the arm64 architecture (added here when run as root), dpkg-deb, cpio,
# and the network to Debian's and the Python package index's mirrors on a first run.
set -eu
# Files in the image must be readable by the daemon's own user whatever umask the caller has (a
# test run may have tightened it to 077 for the files it makes).
umask 022

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${LINEBOX_SMOKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/linebox-smoke}
OUT=${1:-$CACHE/out}
OVERLAY=$REPO/buildroot-config/board/linebox/rootfs-overlay
USERS_TABLE=$REPO/buildroot-config/board/linebox/users.txt
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi

# Debian bookworm's arm64 packages: the kernel, BusyBox, Python 3.11 and the C libraries its
# interpreter and extension modules link against. The kernel package is the versioned one the
# linux-image-arm64 metapackage depends on.
BASE_PACKAGES="busybox-static python3.11-minimal libpython3.11-minimal libpython3.11-stdlib
libc6 libgcc-s1 libssl3 libffi8 libsqlite3-0 zlib1g libexpat1 libbz2-1.0 liblzma5 libuuid1
libcrypt1 libudev1 libcap2 e2fsprogs libext2fs2 libcom-err2 libblkid1 libss2"
# Debian's arm64 kernel builds these as modules (the Pi kernel has its drivers built in):
# the virtio PCI transport, the network card behind QEMU's user-mode network, entropy, a
# software watchdog so the box's watchdog service has a /dev/watchdog to feed, and ext4 on a
# virtio disk for the data partition (e2fsprogs gives the boot script its mkfs.ext4 and
# e2fsck). In load order (crc32c first: ext4 asks the crypto API for it).
MODULES="drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci_modern_dev
drivers/virtio/virtio_pci net/core/failover drivers/net/net_failover drivers/net/virtio_net
drivers/char/hw_random/virtio-rng drivers/watchdog/softdog crypto/crc32c_generic lib/crc16
fs/mbcache fs/jbd2/jbd2 fs/ext4/ext4 drivers/block/virtio_blk"
# Python that the box never runs: tests, IDLE, Tk, the installers' own code. Kept out so the
# initramfs (unpacked by the emulated kernel at every boot) stays small.
STDLIB_UNUSED="test idlelib tkinter turtledemo ensurepip lib2to3 pydoc_data unittest/test
config-3.11-aarch64-linux-gnu"
# pip and setuptools are installed as sqlite-utils' dependencies but only its `install` command
# uses them; Babel's locale data is trimmed to the languages the web UI speaks.
SITE_UNUSED="pip setuptools _distutils_hack distutils-precedence.pth"
LOCALES_KEPT="root en ru"

say() {
    echo "smoke-build: $*" >&2
}

die() {
    say "$*"
    exit 1
}

ensure_arm64_apt() {
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        [ "$(id -u)" -eq 0 ] || die "apt has no arm64 architecture: run 'dpkg --add-architecture arm64 && apt-get update' as root"
        say "adding the arm64 architecture to dpkg"
        dpkg --add-architecture arm64
    fi
    if ! apt-cache show busybox-static:arm64 >/dev/null 2>&1; then
        [ "$(id -u)" -eq 0 ] || die "no arm64 package lists: run 'apt-get update' as root"
        say "apt-get update (arm64 package lists)"
        apt-get update -qq
    fi
}

download_debs() {
    mkdir -p "$CACHE/debs"
    kernel=$(apt-cache depends linux-image-arm64:arm64 \
        | sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*\)\(:arm64\)\{0,1\}$/\1/p' | head -n 1)
    [ -n "$kernel" ] || die "cannot tell which kernel linux-image-arm64 depends on"
    wanted=""
    for pkg in $kernel $BASE_PACKAGES; do
        version=$(apt-cache policy "$pkg:arm64" | sed -n 's/^ *Candidate: //p')
        if [ -z "$version" ] || [ "$version" = "(none)" ]; then
            die "no arm64 candidate for $pkg"
        fi
        # apt-get download names the file with the version's colon escaped as %3a.
        file=$(printf '%s_%s_arm64.deb' "$pkg" "$version" | sed 's/:/%3a/')
        [ -s "$CACHE/debs/$file" ] || wanted="$wanted $pkg:arm64=$version"
    done
    if [ -n "$wanted" ]; then
        say "downloading:$wanted"
        # shellcheck disable=SC2086 # one word per package
        (cd "$CACHE/debs" && apt-get download -q $wanted) 2>&1 \
            | grep -v '^W: Download is performed unsandboxed' >&2 || true
    fi
    KERNEL_PKG=$kernel
    KERNEL_VERSION=${kernel#linux-image-}
}

deb_file() {
    version=$(apt-cache policy "$1:arm64" | sed -n 's/^ *Candidate: //p')
    file=$CACHE/debs/$(printf '%s_%s_arm64.deb' "$1" "$version" | sed 's/:/%3a/')
    [ -s "$file" ] || die "missing $file"
    echo "$file"
}

unpack_debs() {
    for pkg in $BASE_PACKAGES; do
        dpkg-deb -x "$(deb_file "$pkg")" "$ROOT"
    done
    # From the kernel package only the image and the few modules above.
    members="./boot/vmlinuz-$KERNEL_VERSION"
    for module in $MODULES; do
        members="$members ./lib/modules/$KERNEL_VERSION/kernel/$module.ko"
    done
    mkdir -p "$STAGE/kernel"
    # shellcheck disable=SC2086 # one word per member
    dpkg-deb --fsys-tarfile "$(deb_file "$KERNEL_PKG")" | tar -x -C "$STAGE/kernel" $members
    mkdir -p "$ROOT/lib/modules/smoke"
    for module in $MODULES; do
        cp "$STAGE/kernel/lib/modules/$KERNEL_VERSION/kernel/$module.ko" "$ROOT/lib/modules/smoke/"
        basename "$module" >> "$ROOT/lib/modules/smoke/load-order"
    done
}

install_python_packages() {
    mkdir -p "$CACHE/wheels" "$STAGE/wheel"
    # The project's own wheel, built from a copy of the work tree as it is (setuptools' build/
    # in the tree itself could hold files since deleted).
    mkdir -p "$STAGE/src"
    (cd "$REPO" && tar -cf - --exclude=__pycache__ --exclude='*.pyc' pyproject.toml README.md \
        firmware hal webui) | tar -xf - -C "$STAGE/src"
    "$PYTHON" -m pip wheel -q --no-deps -w "$STAGE/wheel" "$STAGE/src" >&2
    # Its dependencies as pyproject pins them, as wheels for CPython 3.11 on aarch64 Linux
    # (uvloop, PyYAML, MarkupSafe are compiled; the rest are pure Python).
    "$PYTHON" -m pip install -q --target "$ROOT/usr/lib/python3/dist-packages" \
        --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
        --platform manylinux_2_28_aarch64 --python-version 3.11 --implementation cp \
        --abi cp311 --only-binary=:all: --no-compile --cache-dir "$CACHE/wheels" \
        "$STAGE"/wheel/linebox-*.whl 2>&1 | grep -v "^WARNING: Location 'file:" >&2 || true
    site=$ROOT/usr/lib/python3/dist-packages
    [ -d "$site/firmware" ] || die "the project's wheel did not install into $site"
    for name in $SITE_UNUSED; do
        rm -rf "${site:?}/$name"
    done
    rm -rf "${site:?}/bin"
    find "$site" -maxdepth 1 -name 'pip-*.dist-info' -exec rm -rf {} +
    find "$site" -maxdepth 1 -name 'setuptools-*.dist-info' -exec rm -rf {} +
    # Cython sources and headers shipped inside uvloop's wheel.
    find "$site/uvloop" \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.c' \
        -o -name '*.h' \) -delete
    locale_data=$site/babel/locale-data
    if [ -d "$locale_data" ]; then
        for file in "$locale_data"/*.dat; do
            name=$(basename "$file" .dat)
            keep=no
            for locale in $LOCALES_KEPT; do
                case "$name" in "$locale"|"$locale"_*) keep=yes ;; esac
            done
            [ "$keep" = yes ] || rm -f "$file"
        done
    fi
    cat > "$ROOT/usr/bin/linebox" <<'EOF'
#!/usr/bin/python3.11
import sys

from firmware.cli import main

sys.exit(main())
EOF
    chmod 0755 "$ROOT/usr/bin/linebox"
}

precompile_templates() {
    # The web UI's templates compiled here (webui/template_cache.py), as the .pyc are: about a
    # second less before the box's first page under emulation. Only with the image's own Python
    # (3.11) and Jinja release, whose compiled code the entries are; otherwise the box compiles
    # each template at its first use, as without them.
    site=$ROOT/usr/lib/python3/dist-packages
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        say "$PYTHON is not CPython 3.11: the box compiles the web UI's templates itself"
        return 0
    fi
    host_jinja=$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("jinja2"))')
    image_jinja=$(find "$site" -maxdepth 1 -iname 'jinja2-*.dist-info' | sed 's/.*-\([^-]*\)\.dist-info$/\1/')
    if [ "$host_jinja" != "$image_jinja" ]; then
        say "Jinja $host_jinja here, $image_jinja in the image: the box compiles the web UI's templates itself"
        return 0
    fi
    (cd "$REPO" && "$PYTHON" -c 'import sys; from webui.template_cache import main; sys.exit(main(sys.argv[1:]))' \
        "$site/webui/template-cache") >&2 || say "the web UI's templates could not be compiled here: the box compiles them itself"
}

trim_and_compile() {
    for name in $STDLIB_UNUSED; do
        rm -rf "${ROOT:?}/usr/lib/python3.11/$name"
    done
    rm -rf "$ROOT/usr/share/doc" "$ROOT/usr/share/man" "$ROOT/usr/share/lintian" \
        "$ROOT/usr/share/locale" "$ROOT/usr/share/initramfs-tools" "$ROOT/usr/share/info"
    # glibc's iconv modules (20 MB): Python brings its own codecs.
    rm -rf "$ROOT/usr/lib/aarch64-linux-gnu/gconv"
    # Byte-code made here by the host's CPython 3.11 (the same magic number as the box's), as
    # unchecked-hash .pyc: the emulated CPU neither compiles nor stats the sources at start-up.
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        say "$PYTHON is not CPython 3.11: no .pyc made here, the box compiles at its first start"
        return 0
    fi
    "$PYTHON" -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        "$ROOT/usr/lib/python3.11" "$ROOT/usr/lib/python3/dist-packages" >/dev/null \
        || say "compileall reported files it could not compile (left as sources)"
}

make_base_files() {
    mkdir -p "$ROOT/proc" "$ROOT/sys" "$ROOT/dev" "$ROOT/run" "$ROOT/tmp" "$ROOT/data" \
        "$ROOT/var/log" "$ROOT/root" "$ROOT/etc" "$ROOT/sbin" "$ROOT/usr/sbin" "$ROOT/usr/bin"
    ln -sf busybox "$ROOT/bin/sh"
    ln -sf python3.11 "$ROOT/usr/bin/python3"
    # Debian's packages put libraries in /lib/aarch64-linux-gnu and /usr/lib/aarch64-linux-gnu;
    # the dynamic loader's default path covers both (no ld.so.cache is needed).
    linebox_uid=1000
    linebox_gid=1000
    if [ -r "$USERS_TABLE" ]; then
        # Buildroot's users table: name uid group gid password home shell groups comment.
        line=$(grep '^linebox[[:space:]]' "$USERS_TABLE" | head -n 1 || true)
        if [ -n "$line" ]; then
            # shellcheck disable=SC2086 # fields split on purpose
            set -- $line
            case "$2" in ''|*[!0-9]*) ;; *) linebox_uid=$2 ;; esac
            case "$4" in ''|*[!0-9]*) ;; *) linebox_gid=$4 ;; esac
        fi
    fi
    cat > "$ROOT/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/sh
linebox:x:$linebox_uid:$linebox_gid:Linebox:/data/linebox:/bin/false
EOF
    cat > "$ROOT/etc/group" <<EOF
root:x:0:
dialout:x:20:linebox
linebox:x:$linebox_gid:
EOF
    printf 'root:*:19000:0:99999:7:::\nlinebox:!:19000:0:99999:7:::\n' > "$ROOT/etc/shadow"
    chmod 0600 "$ROOT/etc/shadow"
    echo /bin/sh > "$ROOT/etc/shells"
    printf 'hosts: files dns\n' > "$ROOT/etc/nsswitch.conf"
    printf '127.0.0.1\tlocalhost\n' > "$ROOT/etc/hosts"
    date -u +%s > "$ROOT/etc/linebox-build-time"
    # The kernel runs /init from an initramfs. This smoke-only stage does what the Pi's kernel
    # and root file system have already: BusyBox's applet links and the virtio drivers. Then
    # BusyBox init reads the box's own /etc/inittab.
    cat > "$ROOT/init" <<'EOF'
#!/bin/sh
# Smoke image only (images/smoke/build.sh): applet links and virtio modules, then BusyBox init.
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
echo "smoke-init: /init at $(cut -d ' ' -f 1 /proc/uptime) s of uptime on $(uname -s -r -m)"
while read -r module; do
    insmod "/lib/modules/smoke/$module.ko" || echo "smoke-init: insmod $module failed"
done < /lib/modules/smoke/load-order
exec /sbin/init
EOF
    chmod 0755 "$ROOT/init"
    # Every 5 s, the resident memory of the gateway's processes on the console: the idle RAM
    # figure of issue 13 (the test reads it). Init starts it from a line added to the
    # overlay's inittab in apply_overlay.
    mkdir -p "$ROOT/usr/libexec/smoke"
    cat > "$ROOT/usr/libexec/smoke/report-memory" <<'EOF'
#!/bin/sh
# Smoke image only: the gateway's resident memory, every 5 s, on the console.
while sleep 5; do
    line=""
    total=0
    total_pss=0
    for status in /proc/[0-9]*/status; do
        dir=${status%/status}
        tr '\0' ' ' < "$dir/cmdline" 2>/dev/null \
            | grep -Eq '^/usr/bin/python3.11 (/usr/bin/linebox|-m webui)' || continue
        kb=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "$status")
        # Pss: shared pages (libpython, the C libraries) counted once between the two.
        pss=$(sed -n 's/^Pss:[[:space:]]*\([0-9]*\) kB/\1/p' "$dir/smaps_rollup" 2>/dev/null)
        what=$(tr '\0' ' ' < "$dir/cmdline" | cut -d ' ' -f 3)
        line="$line $what=${kb}kB"
        total=$((total + ${kb:-0}))
        total_pss=$((total_pss + ${pss:-0}))
    done
    available=$(sed -n 's/^MemAvailable:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/meminfo)
    echo "smoke-mem: linebox RSS ${total} kB:$line; PSS ${total_pss} kB; MemAvailable ${available} kB"
done
EOF
    chmod 0755 "$ROOT/usr/libexec/smoke/report-memory"
}

apply_overlay() {
    [ -d "$OVERLAY" ] || die "no rootfs overlay at $OVERLAY"
    # The box's own files on top, as Buildroot's BR2_ROOTFS_OVERLAY puts them.
    cp -a "$OVERLAY/." "$ROOT/"
    [ -r "$ROOT/etc/inittab" ] || die "the overlay has no /etc/inittab"
    # Smoke only: the memory report (above) on the console.
    echo "::respawn:/usr/libexec/smoke/report-memory" >> "$ROOT/etc/inittab"
    # Where Buildroot's skeleton makes /etc/resolv.conf a link into /run, do the same.
    [ -e "$ROOT/etc/resolv.conf" ] || [ -L "$ROOT/etc/resolv.conf" ] \
        || ln -s ../run/resolv.conf "$ROOT/etc/resolv.conf"
}

pack() {
    mkdir -p "$OUT"
    cp "$STAGE/kernel/boot/vmlinuz-$KERNEL_VERSION" "$OUT/vmlinuz.new"
    mv "$OUT/vmlinuz.new" "$OUT/vmlinuz"
    (cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) \
        > "$OUT/initramfs.cpio.new"
    mv "$OUT/initramfs.cpio.new" "$OUT/initramfs.cpio"
    echo "$KERNEL_PKG" > "$OUT/kernel-package"
}

started=$(date +%s)
command -v dpkg-deb >/dev/null || die "dpkg-deb is needed"
command -v cpio >/dev/null || die "cpio is needed (apt-get install cpio)"
ensure_arm64_apt
download_debs
# A staging directory per run (two builds at once do not trample each other), removed at exit.
STAGE=$(mktemp -d "$CACHE/stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
trap 'exit 130' INT TERM
ROOT=$STAGE/root
mkdir -p "$ROOT"
unpack_debs
make_base_files
install_python_packages
precompile_templates
trim_and_compile
apply_overlay
pack
say "root file system $(du -sk "$ROOT" | cut -f 1) KiB unpacked; initramfs" \
    "$(du -k "$OUT/initramfs.cpio" | cut -f 1) KiB; kernel $KERNEL_PKG;" \
    "built in $(( $(date +%s) - started )) s into $OUT"
