#!/bin/sh
# run.sh WORK — runs the CCM's own load-balancer code (built by build.sh WORK) against
# a fresh `nodebalancer serve`: frontends from 127.0.59.0/24, the "cluster nodes" are
# backends the driver serves on 127.0.60.1 and 127.0.60.2. Everything stays on
# loopback and stops when the driver ends.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(cd "${1:?usage: run.sh WORK}" && pwd)
test -x "$work/driver/ccmrun" || "$here/build.sh" "$work"
tmp=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill $pid 2>/dev/null; wait $pid 2>/dev/null; fi; rm -rf "$tmp"' EXIT
(cd "$repo" && go build -o "$tmp/nodebalancer" ./cmd/nodebalancer)
token=ccm-run-token-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
listen=127.0.59.254:18080
NODEBALANCER_BOOTSTRAP_TOKEN=$token "$tmp/nodebalancer" serve --listen $listen --data "$tmp/data" \
	--frontend-pool 127.0.59.0/24 --region local --log-level debug 2>"$tmp/server.log" &
pid=$!
i=0
until curl -fs "http://$listen/healthz" >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 100 ] || { cat "$tmp/server.log"; exit 1; }; sleep 0.1
done
rc=0
"$work/driver/ccmrun" -url "http://$listen" -token "$token" -region local -nodes 127.0.60.1,127.0.60.2 || rc=$?
# The server logs asynchronously: stop it so that its log is complete.
kill $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
pid=
echo "--- the API requests the server saw (its debug log: method path status)"
grep '"msg":"api request"' "$tmp/server.log" | sed -E 's/.*"method":"([A-Z]+)","path":"([^"]+)","status":([0-9]+).*/\1 \2 \3/'
echo "--- server warnings and errors"
grep -E '"level":"(WARN|ERROR)"' "$tmp/server.log" || echo "(none)"
exit $rc
