#!/usr/bin/env bash
# A real Terraform run against nodebalancer: OpenTofu and Linode's own provider,
# unchanged, driving a server built from this checkout. Run by hand (CI cannot fetch
# OpenTofu or the provider); see README.md next to this script for building them.
#
#   TOFU=/path/to/tofu PROVIDER_DIR=/dir/holding/terraform-provider-linode_v3.13.0 \
#     test/terraform/run.sh
#
# Steps: init, apply, plan -detailed-exitcode (must be 0), traffic through the
# frontend, change a node's mode and weight, apply, plan (0 again), change a config
# and the NodeBalancer, apply, plan (0), import every resource into a fresh state,
# plan (0), destroy. Each step prints PASS or FAIL; the
# script exits non-zero at the first failure and stops every process it started.
#
# Set KEEP=1 to keep the work directory (state, logs) for a look afterwards.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PROVIDER_VERSION=3.13.0

# Loopback addresses of this run (distinct from the ones the Go tests use).
API_ADDR=127.77.0.1:8080
FRONTEND_POOL=127.77.1.0/24
WEB1=127.77.2.1:8001
WEB2=127.77.2.2:8001
TCP1=127.77.2.3:8002
TOKEN=tf-run-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')

die() { echo "run.sh: $*" >&2; exit 1; }

how_to_build() {
	cat >&2 <<'EOF'

Build them outside this repository (they are not on the Go module proxy):

  OpenTofu v1.12.6 (Go 1.26):
    git clone --depth 1 --branch v1.12.6 https://github.com/opentofu/opentofu
    cd opentofu && go build -ldflags "-X github.com/opentofu/opentofu/version.dev=no" -o tofu ./cmd/tofu
    # then TOFU=$PWD/tofu (without the -ldflags it calls itself v1.12.6-dev)

  terraform-provider-linode v3.13.0 (it asks for linodego v1.69.0, which the
  module proxy refuses; v1.69.1 is the patch release that builds):
    git clone --depth 1 --branch v3.13.0 https://github.com/linode/terraform-provider-linode
    cd terraform-provider-linode
    go mod edit -require=github.com/linode/linodego@v1.69.1
    go mod download github.com/linode/linodego
    go build -mod=mod -o dist/terraform-provider-linode_v3.13.0 \
      -ldflags "-X=github.com/linode/terraform-provider-linode/v3/version.ProviderVersion=3.13.0" .
    # then PROVIDER_DIR=$PWD/dist

See test/terraform/README.md.
EOF
	exit 1
}

[[ -n "${TOFU:-}" ]] || { echo "run.sh: TOFU is not set: it must be the path of an OpenTofu binary." >&2; how_to_build; }
[[ -x "$TOFU" ]] || { echo "run.sh: TOFU=$TOFU is not an executable file." >&2; how_to_build; }
[[ -n "${PROVIDER_DIR:-}" ]] || { echo "run.sh: PROVIDER_DIR is not set: it must be the directory holding terraform-provider-linode_v$PROVIDER_VERSION." >&2; how_to_build; }
PROVIDER_BIN="$PROVIDER_DIR/terraform-provider-linode_v$PROVIDER_VERSION"
[[ -x "$PROVIDER_BIN" ]] || { echo "run.sh: $PROVIDER_BIN is missing or not executable." >&2; how_to_build; }
command -v curl >/dev/null || die "curl is needed"
command -v jq >/dev/null || die "jq is needed"
command -v openssl >/dev/null || die "openssl is needed"

WORK=$(mktemp -d /tmp/nb-terraform.XXXXXX)
PIDS=()
cleanup() {
	local rc=$?
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ "${KEEP:-}" == 1 ]]; then
		echo "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

STEP=""
step() { STEP="$*"; echo; echo "==> $STEP"; }
pass() { echo "PASS: $STEP${1:+ ($1)}"; }
fail() {
	echo "FAIL: $STEP: $*"
	if [[ -n "${LAST_LOG:-}" && -f "$LAST_LOG" ]]; then
		echo "---- $LAST_LOG"
		cat "$LAST_LOG"
		echo "----"
	fi
	echo "---- server log (last 40 lines)"
	tail -n 40 "$WORK/server.log" || true
	exit 1
}

# tf DIR LOGNAME ARGS...: runs tofu in DIR, its output to a log; sets TF_RC. The key
# lines (summary, errors, warnings) are echoed.
tf() {
	local dir=$1 name=$2
	shift 2
	LAST_LOG="$WORK/$name.log"
	set +e
	"$TOFU" -chdir="$dir" "$@" -no-color >"$LAST_LOG" 2>&1
	TF_RC=$?
	set -e
	grep -E '^(Apply complete|Destroy complete|No changes|Plan:|Import successful|OpenTofu has been successfully initialized|Error:|Warning:|Note:)|^  # .* (will be|must be|has been|has changed)|^ {4,}~ [a-z_]+ += .* -> ' "$LAST_LOG" |
		grep -v 'Warning: Provider development overrides are in effect' | sed 's/^/    /' || true
	echo "    (exit $TF_RC)"
}

api() { curl -sS -H "Authorization: Bearer $TOKEN" "http://$API_ADDR/v4$1"; }

step "build nodebalancer and the test backend from $ROOT"
(cd "$ROOT" && go build -o "$WORK/nodebalancer" ./cmd/nodebalancer && go build -o "$WORK/backend" ./test/terraform/backend) || fail "go build"
pass

step "start three loopback backends and nodebalancer serve on $API_ADDR"
"$WORK/backend" --listen "$WEB1" --name web-1 >"$WORK/web1.log" 2>&1 &
PIDS+=($!)
"$WORK/backend" --listen "$WEB2" --name web-2 >"$WORK/web2.log" 2>&1 &
PIDS+=($!)
"$WORK/backend" --listen "$TCP1" --name tcp-1 --proxy >"$WORK/tcp1.log" 2>&1 &
PIDS+=($!)
NODEBALANCER_BOOTSTRAP_TOKEN=$TOKEN "$WORK/nodebalancer" serve --listen "$API_ADDR" \
	--data "$WORK/data" --frontend-pool "$FRONTEND_POOL" --region local --log-level debug \
	>"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
	curl -fsS "http://$API_ADDR/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fsS "http://$API_ADDR/healthz" >/dev/null || fail "server did not answer /healthz"
for b in "$WEB1" "$WEB2"; do
	curl -fsS "http://$b/" >/dev/null || fail "backend $b does not answer"
done
pass

# The provider, installed the way a user installs a provider without the registry:
# from a filesystem mirror (unpacked layout), locked in .terraform.lock.hcl by init.
# No dev_overrides: init, plan and apply use the installed copy.
MIRROR="$WORK/mirror/registry.opentofu.org/linode/linode/$PROVIDER_VERSION/linux_amd64"
mkdir -p "$MIRROR"
cp "$PROVIDER_BIN" "$MIRROR/"
cat >"$WORK/tofurc" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$WORK/mirror"
    include = ["registry.opentofu.org/linode/linode"]
  }
}
EOF
export TF_CLI_CONFIG_FILE="$WORK/tofurc" TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
export TF_VAR_api_url="http://$API_ADDR" TF_VAR_token="$TOKEN" TF_VAR_region=local
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=tf.nodebalancer.test -keyout "$WORK/tls.key" -out "$WORK/tls.crt" >/dev/null 2>&1 || fail "openssl could not make a certificate"
export TF_VAR_tls_cert="$(cat "$WORK/tls.crt")" TF_VAR_tls_key="$(cat "$WORK/tls.key")"
export TF_VAR_backend_web1="$WEB1" TF_VAR_backend_web2="$WEB2" TF_VAR_backend_tcp="$TCP1"
unset TF_VAR_web2_mode TF_VAR_web2_weight TF_VAR_http_check_interval TF_VAR_nb_tags

echo "    $("$TOFU" version | head -n1), provider: $PROVIDER_BIN"

A="$WORK/a"
mkdir -p "$A"
cp "$HERE"/tf/*.tf "$A/"

step "tofu init"
tf "$A" init init
[[ $TF_RC == 0 ]] || fail "tofu init exited $TF_RC"
pass

step "tofu apply"
tf "$A" apply apply -auto-approve
[[ $TF_RC == 0 ]] || fail "tofu apply exited $TF_RC"
grep -q 'Apply complete! Resources: 8 added, 0 changed, 0 destroyed' "$LAST_LOG" || fail "expected 8 resources added"
pass

out() { "$TOFU" -chdir="$A" output -raw "$1"; }
NB=$(out nodebalancer_id)
IPV4=$(out ipv4)
HTTP_CFG=$(out http_config_id)
TCP_CFG=$(out tcp_config_id)
HTTPS_CFG=$(out https_config_id)
NODES_JSON=$("$TOFU" -chdir="$A" output -json node_ids)
WEB1_ID=$(jq -r .web1 <<<"$NODES_JSON")
WEB2_ID=$(jq -r .web2 <<<"$NODES_JSON")
TCP1_ID=$(jq -r .tcp1 <<<"$NODES_JSON")
TLS1_ID=$(jq -r .tls1 <<<"$NODES_JSON")
echo "    nodebalancer $NB at $IPV4: http config $HTTP_CFG (nodes $WEB1_ID, $WEB2_ID), tcp config $TCP_CFG (node $TCP1_ID), https config $HTTPS_CFG (node $TLS1_ID, certificate CN $(out https_commonname))"

step "data sources read back what was applied"
got="label=$(out data_nodebalancer_label) nodebalancers=$(out data_nodebalancers_count) stickiness=$(out data_config_stickiness)"
got+=" configs=$("$TOFU" -chdir="$A" output -json data_configs | jq -c .)"
got+=" web2=$(out data_node_web2) vpcs=$(out data_nb_vpcs_count) nb_types=$(out data_nb_types_count)"
echo "    $got"
want='label=tf-web nodebalancers=1 stickiness=http_cookie configs={"8081":"none","8082":"v2","8443":"none"} web2=accept/50 vpcs=0'
[[ "$got" == "$want nb_types="* && "$got" != *"nb_types=0" ]] || fail "want $want nb_types>0"
pass

step "tofu plan -detailed-exitcode right after apply (0 = no changes)"
tf "$A" plan1 plan -detailed-exitcode
[[ $TF_RC == 0 ]] || fail "plan exited $TF_RC, want 0"
pass "exit 0"

step "traffic through the frontend $IPV4"
# Wait for the first health checks so the nodes' status is settled.
for _ in $(seq 60); do
	up=$(api "/nodebalancers/$NB/configs/$HTTP_CFG" | jq -r .nodes_status.up)
	[[ "$up" == 2 ]] && break
	sleep 0.5
done
echo "    http config nodes_status: $(api "/nodebalancers/$NB/configs/$HTTP_CFG" | jq -c .nodes_status)"
seen=""
for _ in $(seq 8); do
	seen+=$(curl -fsS "http://$IPV4:8081/" | sed -n 's/^backend=\([^ ]*\).*/\1/p')" "
done
echo "    8 cookieless requests on :8081 went to: $seen"
[[ "$seen" == *web-1* && "$seen" == *web-2* ]] || fail "both http nodes should serve cookieless requests"
jar="$WORK/cookies"
first=$(curl -fsS -c "$jar" "http://$IPV4:8081/" | sed -n 's/^backend=\([^ ]*\).*/\1/p')
grep -q NB_SRVID "$jar" || fail "no NB_SRVID cookie set by the http_cookie config"
sticky=""
for _ in $(seq 6); do
	sticky+=$(curl -fsS -b "$jar" "http://$IPV4:8081/" | sed -n 's/^backend=\([^ ]*\).*/\1/p')" "
done
echo "    with the NB_SRVID cookie of $first, 6 requests went to: $sticky"
[[ "$(tr ' ' '\n' <<<"$sticky" | sort -u | grep -v '^$')" == "$first" ]] || fail "cookie stickiness not respected"
tcp_answer=$(curl -fsS "http://$IPV4:8082/")
echo "    :8082 (tcp, proxy_protocol v2) answered: $tcp_answer"
[[ "$tcp_answer" == "backend=tcp-1 client=127.0.0.1 proxy=v2 path=/" ]] || fail "tcp config should pass the client address in a PROXY v2 header"
tls_answer=$(curl -fsS --cacert "$WORK/tls.crt" --resolve "tf.nodebalancer.test:8443:$IPV4" https://tf.nodebalancer.test:8443/)
echo "    :8443 (https, the certificate Terraform uploaded) answered: $tls_answer"
[[ "$tls_answer" == backend=web-1* ]] || fail "https config should terminate TLS with the uploaded certificate and reach web-1"
pass

step "change node web-2: mode accept -> backup, weight 50 -> 100; tofu plan shows it"
export TF_VAR_web2_mode=backup TF_VAR_web2_weight=100
tf "$A" plan2 plan -detailed-exitcode
[[ $TF_RC == 2 ]] || fail "plan exited $TF_RC, want 2 (changes)"
grep -q 'Plan: 0 to add, 1 to change, 0 to destroy' "$LAST_LOG" || fail "want exactly one in-place change"
pass "exit 2, one in-place change"

step "tofu apply the node change"
tf "$A" apply2 apply -auto-approve
[[ $TF_RC == 0 ]] || fail "tofu apply exited $TF_RC"
grep -q 'Apply complete! Resources: 0 added, 1 changed, 0 destroyed' "$LAST_LOG" || fail "expected 1 changed"
node=$(api "/nodebalancers/$NB/configs/$HTTP_CFG/nodes/$WEB2_ID" | jq -c '{label: .label, mode: .mode, weight: .weight, status: .status}')
echo "    API: $node   data source: $(out data_node_web2)"
[[ $(jq -r '"\(.mode)/\(.weight)"' <<<"$node") == backup/100 ]] || fail "the API does not show backup/100"
[[ $(out data_node_web2) == backup/100 ]] || fail "the node data source does not show backup/100"
seen=""
for _ in $(seq 6); do
	seen+=$(curl -fsS "http://$IPV4:8081/" | sed -n 's/^backend=\([^ ]*\).*/\1/p')" "
done
echo "    6 cookieless requests after the change went to: $seen"
[[ "$seen" != *web-2* ]] || fail "a backup node took traffic while web-1 is UP"
pass

step "tofu plan -detailed-exitcode after the change (0 = no changes)"
tf "$A" plan3 plan -detailed-exitcode
[[ $TF_RC == 0 ]] || fail "plan exited $TF_RC, want 0"
pass "exit 0"

step "change the http config (check_interval 5 -> 10) and the NodeBalancer's tags; tofu plan shows it"
export TF_VAR_http_check_interval=10 TF_VAR_nb_tags='["terraform","test","changed"]'
tf "$A" plan5 plan -detailed-exitcode
[[ $TF_RC == 2 ]] || fail "plan exited $TF_RC, want 2 (changes)"
grep -q 'Plan: 0 to add, 2 to change, 0 to destroy' "$LAST_LOG" || fail "want exactly two in-place changes"
pass "exit 2, two in-place changes"

step "tofu apply the config and NodeBalancer change"
tf "$A" apply3 apply -auto-approve
[[ $TF_RC == 0 ]] || fail "tofu apply exited $TF_RC"
grep -q 'Apply complete! Resources: 0 added, 2 changed, 0 destroyed' "$LAST_LOG" || fail "expected 2 changed"
cfg=$(api "/nodebalancers/$NB/configs/$HTTP_CFG" | jq -c '{check_interval: .check_interval, udp_check_port: .udp_check_port, stickiness: .stickiness}')
tags=$(api "/nodebalancers/$NB" | jq -c .tags)
echo "    API: config $cfg, tags $tags; data sources: check_interval=$(out data_config_check_interval) tags=$(out data_nodebalancer_tags)"
[[ $(jq -r .check_interval <<<"$cfg") == 10 && $(out data_config_check_interval) == 10 ]] || fail "check_interval is not 10"
[[ $(jq -r 'sort | join(",")' <<<"$tags") == changed,terraform,test && $(out data_nodebalancer_tags) == changed,terraform,test ]] || fail "tags not updated"
pass

step "tofu plan -detailed-exitcode after that change (0 = no changes)"
tf "$A" plan6 plan -detailed-exitcode
[[ $TF_RC == 0 ]] || fail "plan exited $TF_RC, want 0"
pass "exit 0"

B="$WORK/b"
mkdir -p "$B"
cp "$HERE"/tf/*.tf "$B/"
step "tofu init in a fresh directory (empty state)"
tf "$B" init-b init
[[ $TF_RC == 0 ]] || fail "tofu init exited $TF_RC"
pass

imports=(
	"linode_nodebalancer.web=$NB"
	"linode_nodebalancer_config.http=$NB,$HTTP_CFG"
	"linode_nodebalancer_config.tcp=$NB,$TCP_CFG"
	"linode_nodebalancer_config.https=$NB,$HTTPS_CFG"
	"linode_nodebalancer_node.web1=$NB,$HTTP_CFG,$WEB1_ID"
	"linode_nodebalancer_node.web2=$NB,$HTTP_CFG,$WEB2_ID"
	"linode_nodebalancer_node.tcp1=$NB,$TCP_CFG,$TCP1_ID"
	"linode_nodebalancer_node.tls1=$NB,$HTTPS_CFG,$TLS1_ID"
)
for imp in "${imports[@]}"; do
	addr=${imp%%=*} id=${imp#*=}
	step "tofu import $addr $id"
	tf "$B" "import-$addr" import "$addr" "$id"
	[[ $TF_RC == 0 ]] || fail "tofu import exited $TF_RC"
	pass
done

step "tofu plan -detailed-exitcode on the imported state (0 = no changes)"
tf "$B" plan4 plan -detailed-exitcode
[[ $TF_RC == 0 ]] || fail "plan exited $TF_RC, want 0"
pass "exit 0"

step "tofu destroy (from the imported state)"
tf "$B" destroy destroy -auto-approve
[[ $TF_RC == 0 ]] || fail "tofu destroy exited $TF_RC"
grep -q 'Destroy complete! Resources: 8 destroyed' "$LAST_LOG" || fail "expected 8 destroyed"
left=$(api "/nodebalancers" | jq .results)
echo "    NodeBalancers left on the server: $left"
[[ "$left" == 0 ]] || fail "the server still has NodeBalancers"
if curl -sS -m 2 "http://$IPV4:8081/" >/dev/null 2>&1; then
	fail "the frontend $IPV4:8081 still answers after destroy"
fi
pass

echo
echo "ALL STEPS PASSED"
