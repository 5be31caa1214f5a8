#!/bin/sh
# startup.sh WORK — builds the CCM's own binary from WORK/ccm-src (see build.sh) and
# starts it against a fresh `nodebalancer serve` with the flags docs/kubernetes.md
# gives, once with a wrong token and once with the right one. There is no cluster:
# the binary gets as far as its Linode start-up (the token health check,
# GET /v4/profile) and then stops waiting for a Kubernetes API server, which is the
# point where Linode start-up is over.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(cd "${1:?usage: startup.sh WORK}" && pwd)
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
# The CCM's go.mod pins linodego/v2 by a version the proxy does not serve: build with
# a copy of it (-modfile) that points at the extracted tree, leaving ccm-src as it is.
if [ ! -x "$work/linode-ccm" ]; then
	cp "$work/ccm-src/go.mod" "$work/ccm.mod"; cp "$work/ccm-src/go.sum" "$work/ccm.sum"
	(cd "$work/ccm-src" && go mod edit -modfile="$work/ccm.mod" -replace github.com/linode/linodego/v2="$work/linodego-v2" &&
		nice go build -modfile="$work/ccm.mod" -o "$work/linode-ccm" .)
fi
(cd "$repo" && go build -o "$tmp/nodebalancer" ./cmd/nodebalancer)
cat > "$tmp/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
users: [{name: none, user: {token: x}}]
KC
token=ccm-startup-token-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
listen=127.0.59.254:18081
NODEBALANCER_BOOTSTRAP_TOKEN=$token "$tmp/nodebalancer" serve --listen $listen --data "$tmp/data" \
	--frontend-pool 127.0.58.0/24 --log-level debug 2>"$tmp/server.log" &
pid=$!
i=0
until curl -fs "http://$listen/healthz" >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 100 ] || { cat "$tmp/server.log"; exit 1; }; sleep 0.1
done
for tok in wrong-token "$token"; do
	echo "--- linode-cloud-controller-manager, LINODE_API_TOKEN=$( [ "$tok" = "$token" ] && echo '<the right token>' || echo "$tok")"
	LINODE_URL=http://$listen LINODE_API_TOKEN=$tok LINODE_REGION=local timeout 30 "$work/linode-ccm" \
		--controllers=service --enable-token-health-checker=true --allocate-node-cidrs=false \
		--configure-cloud-routes=false --kubeconfig="$tmp/kubeconfig" --secure-port=0 --leader-elect=false 2>&1 |
		grep -v SENTRY_DSN | cut -c1-300 || true
done
echo "--- the API requests the server saw"
grep '"msg":"api request"' "$tmp/server.log" | sed -E 's/.*"method":"([A-Z]+)","path":"([^"]+)","status":([0-9]+).*/\1 \2 \3/'
