#!/usr/bin/env bash
# The client image's entrypoint (under tini): as root, prepare what Chrome Remote Desktop
# needs for the desktop account, then exec lablink-client (still root; it starts CRD as
# that account). The image's command is "lablink-client" (Terraform's user_data passes it
# too); any other command runs as given, as the desktop account.
set -euo pipefail

user="${LABLINK_DESKTOP_USER:-lablink}"

if [[ $(id -u) -ne 0 ]]; then
  # Started with --user: nothing to prepare that this user could prepare.
  exec "$@"
fi

uid="$(id -u "$user")"
gid="$(id -g "$user")"
home="$(getent passwd "$user" | cut -d: -f6)"

# start-host aborts (SIGTRAP, exit 133, no log) when the runtime directory is missing.
install -d -m 0700 -o "$uid" -g "$gid" "/run/user/$uid"
# CRD keeps its host registration under ~/.config; the repository is cloned to ~/Desktop.
install -d -m 0700 -o "$uid" -g "$gid" "$home/.config" "$home/.config/chrome-remote-desktop"
install -d -m 0755 -o "$uid" -g "$gid" "$home/Desktop"

if [[ ${1:-lablink-client} == lablink-client ]]; then
  if [[ $# -gt 0 ]]; then shift; fi
  exec /usr/local/bin/lablink-client "$@"
fi
exec setpriv --reuid="$uid" --regid="$gid" --init-groups \
  env HOME="$home" USER="$user" LOGNAME="$user" "$@"
