#!/usr/bin/env bash
# Installs the named Debian packages when they are missing and we are root; otherwise says what is
# missing so a developer without root knows what to ask for. Exits non-zero only if a package is
# missing and cannot be installed.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "missing Debian packages (run as root or install them): ${missing[*]}" >&2
  exit 1
fi
