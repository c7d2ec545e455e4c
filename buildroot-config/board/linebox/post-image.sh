#!/bin/sh
# Assembles the SD card image (linebox.img) from what Buildroot built: the boot partition's files
# listed into genimage-sdcard.cfg, the read-only root file system in slot A, an empty slot B for
# updates, and an empty data partition made on the box at first boot. Also checks the root file
# system against its budget. Buildroot sets BINARIES_DIR and BUILD_DIR; the offline tests set them
# to a staged tree.
set -eu

BOARD_DIR=$(cd "$(dirname "$0")" && pwd)
: "${BINARIES_DIR:?}" "${BUILD_DIR:?}"
ROOTFS_BUDGET_BYTES=$((120 * 1024 * 1024))

rootfs="$BINARIES_DIR/rootfs.squashfs"
size=$(wc -c < "$rootfs")
echo "post-image: root file system $size bytes ($((size / 1024 / 1024)) MiB; budget 120 MiB)"
if [ "$size" -gt "$ROOTFS_BUDGET_BYTES" ]; then
    echo "post-image: the root file system is over its budget" >&2
    exit 1
fi

# The boot partition: the firmware's files, the device trees and the kernel config.txt names.
kernel=$(sed -n 's/^kernel=//p' "$BINARIES_DIR/rpi-firmware/config.txt")
files=$(
    cd "$BINARIES_DIR"
    for file in *.dtb rpi-firmware/* "$kernel"; do
        [ -e "$file" ] && printf '\t\t\t"%s",\n' "$file"
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
