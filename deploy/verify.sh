#!/usr/bin/env bash
# Checks deploy/followupd.service with systemd-analyze verify, and the
# notify-reload drop-in on top of it when this systemd is 253 or newer.
# Usage: deploy/verify.sh [BINARY] (default: /usr/local/bin/followupd).
set -euo pipefail
cd "$(dirname "$0")"
binary="${1:-/usr/local/bin/followupd}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed "s#/usr/local/bin/followupd#$binary#" followupd.service > "$work/followupd.service"
version="$(systemctl --version | awk 'NR == 1 { print $2 }')"
# verify prints problems but exits 0 for some of them; any output is a failure.
out="$(systemd-analyze verify "$work/followupd.service" 2>&1)" || { echo "$out"; exit 1; }
[ -z "$out" ] || { echo "$out"; exit 1; }
echo "ok    followupd.service on systemd $version"
if [ "$version" -ge 253 ]; then
    mkdir "$work/followupd.service.d"
    cp followupd-notify-reload.conf "$work/followupd.service.d/"
    out="$(systemd-analyze verify "$work/followupd.service" 2>&1)" || { echo "$out"; exit 1; }
    [ -z "$out" ] || { echo "$out"; exit 1; }
    echo "ok    followupd.service with followupd-notify-reload.conf"
else
    echo "skip  followupd-notify-reload.conf: needs systemd 253 or newer (this is $version)"
fi
