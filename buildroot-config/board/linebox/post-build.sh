#!/bin/sh
# Runs after the target tree is assembled and the rootfs overlay copied: the image's build time
# (the clock's floor at boot), SSH's home on /data, and the packages' own start scripts that
# the box replaces with respawned services in /etc/inittab removed.
set -eu

TARGET="$1"

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
