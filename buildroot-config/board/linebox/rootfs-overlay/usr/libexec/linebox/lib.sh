# Shared by the box's init scripts (sourced, POSIX sh). Everything a script may need that some
# systems lack (the smoke image's Debian BusyBox, a board without a watchdog) is probed with
# `have` and skipped with a log line, never assumed.

# shellcheck shell=sh disable=SC2034 # the variables are used by the scripts that source this
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

DATA_DIR=/data
DATA_LABEL=linebox-data
LINEBOX_DIR=$DATA_DIR/linebox
LINEBOX_DB=$LINEBOX_DIR/linebox.db
LINEBOX_USER=linebox
# The last known wall-clock time (seconds since the epoch), fake-hwclock style: the Pi has no
# battery-backed clock, so without this every power cut would start the box in 1970.
TIME_FILE=$DATA_DIR/last-time
# The image's own build time: the clock is never set earlier than this.
BUILD_TIME_FILE=/etc/linebox-build-time
LOG_DIR=/var/log
# The last lines of the logs kept on the data partition (they live in tmpfs, lost at power-off).
LOG_KEEP_DIR=$DATA_DIR/log
LOG_KEEP_LINES=500
READY_FLAG=/run/linebox/data-ready
# Overrides for tests and odd boards (the smoke image passes them on the kernel command line as
# linebox.data=/dev/vda and so on, or writes them here).
# shellcheck source=/dev/null
[ -r /etc/default/linebox ] && . /etc/default/linebox

log() {
    # One line to the console and, when syslog runs, to syslog.
    echo "linebox-init: $*" >&2
    if have logger; then
        logger -t linebox-init -- "$*" 2>/dev/null || true
    fi
}

have() {
    command -v "$1" >/dev/null 2>&1
}

cmdline_value() {
    # The value of KEY=VALUE on the kernel command line, or nothing.
    [ -r /proc/cmdline ] || return 0
    # shellcheck disable=SC2013 # the command line is one line of words
    for word in $(cat /proc/cmdline); do
        case "$word" in
            "$1="*) echo "${word#*=}" ;;
        esac
    done
}

sleep_forever() {
    # For a respawned service whose tool is absent: say so once, then stay idle rather than
    # letting init respawn it in a tight loop.
    log "$*"
    while :; do sleep 3600; done
}

wait_for_data() {
    # Services that use /data start after the boot script prepared it (bounded: 60 s).
    waited=0
    while [ ! -e "$READY_FLAG" ] && [ "$waited" -lt 60 ]; do
        sleep 1
        waited=$((waited + 1))
    done
    [ -e "$READY_FLAG" ] || log "data partition still not ready after ${waited} s, going on"
}

save_time() {
    # Never save a time earlier than the one already kept (a box that lost NTP and restored an
    # old time must not push the kept time back).
    [ -d "$DATA_DIR" ] || return 0
    now=$(date +%s)
    kept=$(cat "$TIME_FILE" 2>/dev/null || echo 0)
    case "$kept" in ''|*[!0-9]*) kept=0 ;; esac
    if [ "$now" -gt "$kept" ]; then
        echo "$now" > "$TIME_FILE.new" && mv "$TIME_FILE.new" "$TIME_FILE"
    fi
}

keep_log_tails() {
    # The last lines of every log in tmpfs, copied to the data partition.
    [ -d "$DATA_DIR" ] && mkdir -p "$LOG_KEEP_DIR" 2>/dev/null || return 0
    for file in "$LOG_DIR"/*; do
        [ -f "$file" ] || continue
        name=$(basename "$file")
        tail -n "$LOG_KEEP_LINES" "$file" > "$LOG_KEEP_DIR/$name.new" 2>/dev/null \
            && mv "$LOG_KEEP_DIR/$name.new" "$LOG_KEEP_DIR/$name"
    done
}
