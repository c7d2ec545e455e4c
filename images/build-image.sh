#!/bin/sh
# `make image BOARD=rpi4|rpi5|rpi3`: Buildroot 2025.02.16 from BUILDROOT_SRC (a tarball or an
# extracted tree) or downloaded from buildroot.org and checked against the SHA-256 in its signed
# .sign file, the LINEBOX external tree, an out-of-tree output directory images/build/BOARD, and
# the SD card image copied to images/out/linebox-BOARD.img. `build-image.sh --source` only makes
# the Buildroot source available (downloading it when needed) and prints the tree's path: the
# offline tests use it when no BUILDROOT_SRC is at hand.
set -eu

BOARD=${1:?usage: build-image.sh rpi4|rpi5|rpi3|--source}
VERSION=2025.02.16
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$REPO/images/build
OUT=$REPO/images/out
SRC=${BUILDROOT_SRC:-$REPO/../shared/buildroot/buildroot-$VERSION.tar.xz}
URL=https://buildroot.org/downloads/buildroot-$VERSION.tar.xz
export BR2_DL_DIR="${BR2_DL_DIR:-$BUILD/dl}"

[ "$BOARD" = --source ] || [ -f "$REPO/buildroot-config/configs/linebox_${BOARD}_defconfig" ] || {
    echo "build-image: no defconfig for '$BOARD' (rpi4, rpi5 or rpi3)" >&2; exit 1; }
mkdir -p "$BUILD" "$OUT" "$BR2_DL_DIR"

if [ -d "$SRC" ]; then
    tree=$SRC
else
    if [ ! -f "$SRC" ]; then
        SRC=$BUILD/buildroot-$VERSION.tar.xz
        if [ ! -f "$SRC" ]; then
            echo "build-image: downloading $URL" >&2
            wget -q -O "$SRC.part" "$URL"
            wget -q -O "$SRC.sign" "$URL.sign"
            # The .sign file is GPG-signed by the Buildroot maintainers and lists the SHA-256.
            if command -v gpg >/dev/null 2>&1; then
                gpg --verify "$SRC.sign" 2>/dev/null \
                    || echo "build-image: could not verify the .sign signature (no key?)" >&2
            fi
            want=$(sed -n "s/^SHA256: \([0-9a-f]*\) .*/\1/p" "$SRC.sign" | head -n 1)
            got=$(sha256sum "$SRC.part" | cut -d' ' -f1)
            if [ -z "$want" ] || [ "$want" != "$got" ]; then
                echo "build-image: SHA-256 mismatch ($got, expected $want)" >&2
                exit 1
            fi
            mv "$SRC.part" "$SRC"
        fi
    fi
    tree=$BUILD/buildroot-$VERSION
    if [ ! -f "$tree/Makefile" ]; then
        tar -xJf "$SRC" -C "$BUILD"
    fi
fi
if [ "$BOARD" = --source ]; then
    echo "$tree"
    exit 0
fi

output=$BUILD/$BOARD
make -C "$tree" O="$output" BR2_EXTERNAL="$REPO/buildroot-config" "linebox_${BOARD}_defconfig"
make -C "$tree" O="$output"
cp "$output/images/linebox.img" "$OUT/linebox-$BOARD.img"
echo "build-image: $OUT/linebox-$BOARD.img"
# The signed update bundle of the same system (post-image.sh), for the web UI's System update.
if [ -e "$output/images/linebox.raucb" ]; then
    cp "$output/images/linebox.raucb" "$OUT/linebox-$BOARD.raucb"
    echo "build-image: $OUT/linebox-$BOARD.raucb"
fi
