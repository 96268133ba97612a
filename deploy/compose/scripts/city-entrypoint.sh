#!/bin/sh
# Compose trial, city side: load the hub credentials hub-init issued for this city
# ($SYNCD_CREDS_FILE, a SYNCD_HUB__URL='...' line), then run syncd with the given arguments.
# Outside the trial, put the same line in /etc/syncd/NODE.env (systemd EnvironmentFile).
set -eu

if [ -n "${SYNCD_CREDS_FILE:-}" ]; then
    if [ ! -r "$SYNCD_CREDS_FILE" ]; then
        echo "city-entrypoint: $SYNCD_CREDS_FILE not found: has hub-init run?" >&2
        exit 2
    fi
    set -a
    . "$SYNCD_CREDS_FILE"
    set +a
fi
exec syncd "$@"
