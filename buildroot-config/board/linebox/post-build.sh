#!/bin/sh
# Runs after the target tree is assembled and the rootfs overlay copied: the image's build time
# (the clock's floor at boot), SSH's home on /data, and the packages' own start scripts that
# the box replaces with respawned services in /etc/inittab removed.
set -eu

TARGET="$1"
# BR2_ROOTFS_POST_SCRIPT_ARGS: the board (rpi4, rpi5, rpi3), RAUC's compatible linebox-BOARD.
BOARD="${2:?the defconfig passes the board as BR2_ROOTFS_POST_SCRIPT_ARGS}"
BOARD_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BOARD_DIR/../../.." && pwd)

# The clock never starts earlier than the image was built (reproducible builds set
# SOURCE_DATE_EPOCH).
echo "${SOURCE_DATE_EPOCH:-$(date +%s)}" > "$TARGET/etc/linebox-build-time"

# Respawned from /etc/inittab instead (BusyBox init restarts them when they die).
for script in S05avahi-setup.sh S50avahi-daemon S50dropbear S15watchdog S41ifplugd S50telnet \
        S40network; do
    rm -f "$TARGET/etc/init.d/$script"
done

# The root file system is read-only: what the box writes lives on /data.
mkdir -p "$TARGET/data"
rm -rf "$TARGET/root/.ssh"
ln -sfn /data/ssh "$TARGET/root/.ssh"

# Nothing secret in the image: no host keys, no database, no web secret.
rm -f "$TARGET"/etc/dropbear/*_host_key 2>/dev/null || true
for path in "$TARGET/etc/dropbear" "$TARGET/data"; do
    if [ -d "$path" ] && [ -n "$(ls -A "$path" 2>/dev/null)" ]; then
        echo "post-build: $path must be empty in the image" >&2
        exit 1
    fi
done

# RAUC: the board's compatible, and the certificate bundles must be signed with. The private key
# never enters the image: it is LINEBOX_SIGNING_KEY/_CERT at build time, or a development key
# made once into images/out/signing/ (ignored by git) when none is given.
sed -i "s/@COMPATIBLE@/linebox-$BOARD/" "$TARGET/etc/rauc/system.conf"
if [ -n "${LINEBOX_SIGNING_CERT:-}" ] || [ -n "${LINEBOX_SIGNING_KEY:-}" ]; then
    : "${LINEBOX_SIGNING_CERT:?LINEBOX_SIGNING_KEY is set: set LINEBOX_SIGNING_CERT too}"
    : "${LINEBOX_SIGNING_KEY:?LINEBOX_SIGNING_CERT is set: set LINEBOX_SIGNING_KEY too}"
    cert=$LINEBOX_SIGNING_CERT
else
    keys=${LINEBOX_DEV_KEY_DIR:-$REPO/images/out/signing}
    if [ ! -s "$keys/dev-key.pem" ] || [ ! -s "$keys/dev-cert.pem" ]; then
        mkdir -p "$keys"
        (umask 077 && openssl req -x509 -newkey rsa:4096 -nodes -days 3650 -sha256 \
            -keyout "$keys/dev-key.pem" -out "$keys/dev-cert.pem" \
            -subj "/O=Linebox development/CN=Linebox development bundle signing" 2>/dev/null)
        echo "post-build: made a DEVELOPMENT signing key in $keys (not for boxes in offices)"
    fi
    cert=$keys/dev-cert.pem
fi
install -m 0644 "$cert" "$TARGET/etc/rauc/keyring.pem"

# The kernel, device trees, overlays and the slot-neutral command line travel inside the root
# file system too: an update's bundle hook copies them to the new slot's boot folder (rauc-boot).
if [ -n "${BINARIES_DIR:-}" ] && [ -r "$BINARIES_DIR/rpi-firmware/config.txt" ]; then
    boot="$TARGET/usr/lib/linebox/boot"
    rm -rf "$boot"
    mkdir -p "$boot"
    kernel=$(sed -n 's/^kernel=//p' "$BINARIES_DIR/rpi-firmware/config.txt")
    cp "$BINARIES_DIR/$kernel" "$BINARIES_DIR"/*.dtb "$boot/"
    [ -d "$BINARIES_DIR/rpi-firmware/overlays" ] && cp -R "$BINARIES_DIR/rpi-firmware/overlays" "$boot/"
    cp "$BOARD_DIR/cmdline.txt" "$boot/cmdline.txt"
fi
