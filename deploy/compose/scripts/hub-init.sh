#!/bin/sh
# Compose trial, hub side, run once per `docker compose up` by the hub-init service:
#   1. `syncd init`: create/upgrade the hub's tables and functions (idempotent);
#   2. register every city of $SYNCD_TRIAL_CITIES with `syncd node add NODE --json` and keep
#      the hub_url it prints (the city's own PostgreSQL login, shown once) in
#      $SYNCD_CREDS_DIR/NODE.env (default /creds, a volume shared with the cities), mode 0600,
#      as SYNCD_HUB__URL=...; the city containers load it with city-entrypoint.sh. It is the
#      same format as /etc/syncd/NODE.env under systemd.
# Safe to re-run: registered cities whose credentials file exists are left alone.
set -eu

creds_dir="${SYNCD_CREDS_DIR:-/creds}"

syncd init

for node in ${SYNCD_TRIAL_CITIES:-}; do
    creds="$creds_dir/$node.env"
    if [ -s "$creds" ]; then
        echo "hub-init: $node: already registered, credentials in $creds"
        continue
    fi
    if syncd node list --json | python -c '
import json, sys
sys.exit(0 if any(n["node_id"] == sys.argv[1] for n in json.load(sys.stdin)) else 1)
' "$node"; then
        echo "hub-init: $node is registered at the hub but $creds is missing;" \
             "its credentials were shown only once. Start over with" \
             "'docker compose down -v' (drops all trial data)." >&2
        exit 1
    fi
    umask 077
    syncd node add "$node" --json | python -c '
import json, shlex, sys
print("SYNCD_HUB__URL=" + shlex.quote(json.load(sys.stdin)["hub_url"]))
' > "$creds.tmp"
    mv "$creds.tmp" "$creds"
    echo "hub-init: $node registered, credentials written to $creds"
done
