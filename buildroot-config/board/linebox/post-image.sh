#!/bin/sh
# Assembles the SD card image (linebox.img) from what Buildroot built: the boot partition's files
# listed into genimage-sdcard.cfg, the read-only root file system in slot A, an empty slot B for
# updates, and an empty data partition made on the box at first boot. Also checks the root file
# system against its budget, and makes the signed RAUC update bundle (linebox.raucb) of the same
# system. Buildroot sets BINARIES_DIR, BUILD_DIR and HOST_DIR; the offline tests set them to a
# staged tree. The board (rpi4, rpi5, rpi3) is BR2_ROOTFS_POST_SCRIPT_ARGS.
set -eu

BOARD_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BOARD_DIR/../../.." && pwd)
: "${BINARIES_DIR:?}" "${BUILD_DIR:?}"
BOARD=${2:-rpi4}
ROOTFS_BUDGET_BYTES=$((120 * 1024 * 1024))

rootfs="$BINARIES_DIR/rootfs.squashfs"
size=$(wc -c < "$rootfs")
echo "post-image: root file system $size bytes ($((size / 1024 / 1024)) MiB; budget 120 MiB)"
if [ "$size" -gt "$ROOTFS_BUDGET_BYTES" ]; then
    echo "post-image: the root file system is over its budget" >&2
    exit 1
fi

# The boot partition: the firmware's files at its root, and slot A's kernel, device trees,
# overlays and command line in slot-a/ (config.txt's os_prefix; rauc-boot says why). Slot B's
# folder is made by the first update.
stage="$BINARIES_DIR/boot-stage"
rm -rf "$stage"
mkdir -p "$stage/slot-a"
kernel=$(sed -n 's/^kernel=//p' "$BINARIES_DIR/rpi-firmware/config.txt")
for file in "$BINARIES_DIR"/rpi-firmware/*; do
    case "$(basename "$file")" in
        cmdline.txt|config.txt) ;;
        overlays) cp -R "$file" "$stage/slot-a/" ;;
        *) cp -R "$file" "$stage/" ;;
    esac
done
cp "$BINARIES_DIR/$kernel" "$stage/slot-a/"
for dtb in "$BINARIES_DIR"/*.dtb; do
    [ -e "$dtb" ] && cp "$dtb" "$stage/slot-a/"
done
sed -e 's|@SLOT_DEVICE@|/dev/mmcblk0p2|g' -e 's|@SLOT@|A|g' \
    "$BINARIES_DIR/rpi-firmware/cmdline.txt" > "$stage/slot-a/cmdline.txt"
{ sed '/^os_prefix=/d' "$BINARIES_DIR/rpi-firmware/config.txt"; echo "os_prefix=slot-a/"; } \
    > "$stage/config.txt"
files=$(
    cd "$BINARIES_DIR"
    for file in boot-stage/*; do
        printf '\t\t\t"%s",\n' "$file"
    done
)
config="$BINARIES_DIR/genimage-sdcard.cfg"
awk -v files="$files" '{ if ($0 ~ /@BOOT_FILES@/) print files; else print }' \
    "$BOARD_DIR/genimage-sdcard.cfg" > "$config"

tmp="$BUILD_DIR/genimage.tmp"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
rm -rf "$tmp"
genimage --rootpath "$root" --tmppath "$tmp" --inputpath "$BINARIES_DIR" \
    --outputpath "$BINARIES_DIR" --config "$config"
echo "post-image: $BINARIES_DIR/linebox.img"

# The update bundle: this root file system, signed. The key is LINEBOX_SIGNING_KEY/_CERT, or the
# development key post-build.sh made (images/out/signing/); the box's keyring is its cert.
rauc=${HOST_DIR:+$HOST_DIR/bin/}rauc
[ -x "$rauc" ] || rauc=$(command -v rauc || true)
if [ -z "$rauc" ]; then
    echo "post-image: no rauc host tool: no update bundle made" >&2
    exit 0
fi
keys=${LINEBOX_DEV_KEY_DIR:-$REPO/images/out/signing}
key=${LINEBOX_SIGNING_KEY:-$keys/dev-key.pem}
cert=${LINEBOX_SIGNING_CERT:-$keys/dev-cert.pem}
if [ ! -r "$key" ] || [ ! -r "$cert" ]; then
    echo "post-image: no signing key ($key) or certificate ($cert): no update bundle made" >&2
    exit 0
fi
version=$(sed -n 's/^PYTHON_LINEBOX_VERSION = //p' \
    "$BOARD_DIR/../../package/python-linebox/python-linebox.mk")
bundle_dir="$BUILD_DIR/rauc-bundle"
rm -rf "$bundle_dir"
mkdir -p "$bundle_dir"
cp "$rootfs" "$bundle_dir/rootfs.squashfs"
cp "$BOARD_DIR/rauc/hook" "$bundle_dir/hook"
cat > "$bundle_dir/manifest.raucm" <<EOF
[update]
compatible=linebox-$BOARD
version=$version
build=$(date -u +%Y%m%d%H%M%S)

[bundle]
format=verity

[hooks]
filename=hook

[image.rootfs]
filename=rootfs.squashfs
hooks=post-install
EOF
rm -f "$BINARIES_DIR/linebox.raucb"
"$rauc" bundle --cert="$cert" --key="$key" "$bundle_dir" "$BINARIES_DIR/linebox.raucb"
"$rauc" info --keyring="$cert" "$BINARIES_DIR/linebox.raucb" >/dev/null
echo "post-image: $BINARIES_DIR/linebox.raucb (linebox-$BOARD $version)"
