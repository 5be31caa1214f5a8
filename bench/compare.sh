#!/usr/bin/env bash
# compare.sh — nodebalancer side by side with HAProxy and nginx, in one run on one
# machine, loopback only. See bench/README.md for what each workload means.
#
#   bench/compare.sh                 # 3 rounds, writes bench/results/<date>.md
#   ROUNDS=5 bench/compare.sh        # more rounds
#   ONLY=l7ka,l4bulk ROUNDS=1 bench/compare.sh   # a subset, for quick A/B work
#   NB_BIN=/path/to/nodebalancer bench/compare.sh   # measure a given build
#
# Environment: ROUNDS (3), DURATION (wrk -d, 5s), IDLE_CONNS (5000), IDLE_SESSIONS
# (5000), MANY_CONNS (8000 keep-alive clients of the c10k workload, for C10K_DURATION,
# 10s), ONLY (workload list: l7ka l7close l4ka l4close l4bulk httpska c10k udprr idle
# udpidle modechange), MODE_CHANGES (node drains per modechange round, 10: each round's
# figure is their median, and the share of them in force for the next new connection), OUT (results file;
# "-" for none), NB_ENV (extra environment for nodebalancer, e.g. "GOGC=200"), NB_ARGS
# (extra serve flags, e.g. "--tcp-engine goroutine"),
# BACKEND_A / BACKEND_B (the two small-body backends, 127.0.0.2:9001 / 127.0.0.3:9001),
# UDP_A / UDP_B (the two UDP echo backends, 127.0.0.2:9053 / 127.0.0.3:9053),
# EXTRA=1 adds the load side's CPU per request and the balancer's sleeps per request.
# HOLD (seconds to keep everything up after setup, before the workloads: for profiling
# by hand; the pids and addresses are printed), PIN (1: the balancers on CPU 1, wrk,
# the backends and the helpers on CPU 0, each balancer with one thread/worker/P; 0:
# no pinning, each balancer with two), LBPROCS (PIN=0 only: HAProxy's threads and
# nginx's workers, 2; nodebalancer's Ps are Go's count, adapted by serve --adapt-procs,
# or set with NB_ENV=GOMAXPROCS=n), CGROUP (1: each balancer in a CPU cgroup of its
# own, as a service runs, instead of in the run's session with wrk and the backends;
# needs root and the cpu controller; 0: all in the run's session; unset: 1 with
# PIN=0 where it can be done, else 0; the results say which).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
IDLE_CONNS=${IDLE_CONNS:-5000}
IDLE_SESSIONS=${IDLE_SESSIONS:-5000}
MANY_CONNS=${MANY_CONNS:-8000}
C10K_DURATION=${C10K_DURATION:-10s}
MODE_CHANGES=${MODE_CHANGES:-10}
ONLY=${ONLY:-}
PIN=${PIN:-1}
NB_ENV=${NB_ENV:-}
NB_ARGS=${NB_ARGS:-}
BA=${BACKEND_A:-127.0.0.2:9001}
BB=${BACKEND_B:-127.0.0.3:9001}
UA=${UDP_A:-127.0.0.2:9053}
UB=${UDP_B:-127.0.0.3:9053}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
DATE=$(date -u +%Y-%m-%d)
OUT=${OUT:-$HERE/results/$DATE.md}

say() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
want() { [[ -z $ONLY || ",$ONLY," == *",$1,"* ]]; }
case ${CGROUP:-} in
"" | 0 | 1) ;;
*) die "CGROUP=$CGROUP: want 1 (own cgroups), 0 (the run's session), or unset" ;;
esac

# --- what it needs ------------------------------------------------------------------
need=()
for c in haproxy nginx wrk openssl ss; do command -v "$c" >/dev/null || need+=("$c"); done
[[ -f /usr/lib/nginx/modules/ngx_stream_module.so ]] || need+=(libnginx-mod-stream)
if ((${#need[@]})); then
	[[ $(id -u) == 0 ]] || die "missing ${need[*]}; run as root to install them from Debian"
	pkgs=(haproxy nginx libnginx-mod-stream wrk openssl iproute2)
	say "installing ${pkgs[*]}"
	# Keep the packages' own services from starting (they would take port 80).
	policy=""
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
		policy=/usr/sbin/policy-rc.d
	fi
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
	[[ -n $policy ]] && rm -f "$policy"
fi
command -v go >/dev/null || [[ -n ${NB_BIN:-} ]] || die "go is needed to build nodebalancer (or set NB_BIN)"

DIR=$(mktemp -d /tmp/nb-bench.XXXXXX)
# The bulk file lives in a folder of this run's own: a fixed name would be deleted by
# another run's cleanup while this one still serves it.
BULKDIR=$(mktemp -d /dev/shm/nb-bench.XXXXXX)
chmod 755 "$BULKDIR" # nginx's workers run as nobody
BULK=$BULKDIR/nb-bench-512m.bin
PIDS=()
CGDIRS=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
	rm -rf "$BULKDIR"
	for d in "${CGDIRS[@]}"; do rmdir "$d" 2>/dev/null || true; done
	if ((rc != 0)); then say "logs kept in $DIR"; else rm -rf "$DIR"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- ports --------------------------------------------------------------------------
NB_IP=127.0.9.1
API=127.0.0.1:18080
ADDRS=($BA $BB 127.0.0.4:9002 $API
	127.0.0.1:8081 127.0.0.1:8091 127.0.0.1:8191 127.0.0.1:8481
	127.0.0.1:8082 127.0.0.1:8092 127.0.0.1:8192 127.0.0.1:8482
	$NB_IP:8083 $NB_IP:8093 $NB_IP:8193 $NB_IP:8483)
listening=$(ss -Htln | awk '{print $4}')
for a in "${ADDRS[@]}"; do
	port=${a##*:}
	if grep -qxE "(${a//./\\.}|0\.0\.0\.0:$port|\*:$port|\[::\]:$port)" <<<"$listening"; then
		die "$a is already in use (by: $(ss -Htlnp src "$a" | awk '{print $6}' | head -1)); stop it and run again"
	fi
done
UDP_ADDRS=($UA $UB 127.0.0.1:8054 $NB_IP:8053)
udp_bound=$(ss -Huln | awk '{print $4}')
for a in "${UDP_ADDRS[@]}"; do
	port=${a##*:}
	if grep -qxE "(${a//./\\.}|0\.0\.0\.0:$port|\*:$port|\[::\]:$port)" <<<"$udp_bound"; then
		die "udp $a is already in use (by: $(ss -Hulnp src "$a" | awk '{print $6}' | head -1)); stop it and run again"
	fi
done

# --- build and files ----------------------------------------------------------------
if [[ -n ${NB_BIN:-} ]]; then
	cp "$NB_BIN" "$DIR/nodebalancer"
else
	say "building nodebalancer"
	(cd "$ROOT" && go build -o "$DIR/nodebalancer" ./cmd/nodebalancer)
fi
(cd "$ROOT" && go build -o "$DIR/nbbench" ./bench/nbbench)
NBB=$DIR/nbbench
if [[ $PIN == 1 ]]; then
	((NPROC = $(nproc) )) && ((NPROC >= 2)) || die "PIN=1 needs two CPUs"
	LB_CPU=(taskset -c 1) LOAD_CPU=(taskset -c 0) LBPROCS=1
else
	LB_CPU=() LOAD_CPU=() LBPROCS=${LBPROCS:-2}
fi
# CGROUP=1: each balancer runs in a CPU cgroup of its own (where a service runs: a
# systemd unit gets a cgroup, a daemon its own session), made here and removed on
# exit. With CGROUP=0 the balancers share the run's session (autogroup) with wrk and
# the backends, where a waking wrk preempts a balancer's thread on every response it
# is sent (bench/README.md, "https keep-alive tail" and "Each balancer in a cgroup
# of its own"). Unset, it is 1 with PIN=0 where it can be done (root, the cpu
# controller); pinned, each balancer has a CPU of its own and it is 0.
declare -A CGPRE=([haproxy]="" [lbnginx]="" [nodebalancer]="")
CGROOT=
if [[ -f /sys/fs/cgroup/cpu/cgroup.procs ]]; then
	CGROOT=/sys/fs/cgroup/cpu # v1
elif grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
	CGROOT=/sys/fs/cgroup # v2 with the cpu controller on
fi
if [[ -z ${CGROUP:-} ]]; then
	CGROUP=0
	[[ $PIN == 0 && -n $CGROOT && $(id -u) == 0 ]] && CGROUP=1
fi
if [[ $CGROUP == 1 ]]; then
	[[ -n $CGROOT ]] || die "CGROUP=1 needs the cpu cgroup controller (v1 /sys/fs/cgroup/cpu, or v2 with cpu in /sys/fs/cgroup/cgroup.subtree_control)"
	for b in haproxy lbnginx nodebalancer; do
		d=$CGROOT/nb-bench-$b-$$
		mkdir "$d" || die "cannot make the cgroup $d (CGROUP=1 needs root)"
		CGDIRS+=("$d")
		CGPRE[$b]=$d
	done
	say "CGROUP=1: each balancer in a CPU cgroup of its own under $CGROOT (CGROUP=0: in this session)"
fi
# in_cgroup DIR CMD...: runs CMD in cgroup DIR ("" for none); children follow it.
in_cgroup() {
	local d=$1
	shift
	[[ -n $d ]] && echo $BASHPID >"$d/cgroup.procs"
	exec "$@"
}
for f in backend-nginx.conf bulk-nginx.conf haproxy.cfg lb-nginx.conf; do
	sed "s|@DIR@|$DIR|g; s|@BULKDIR@|$BULKDIR|g; s|@BA@|$BA|g; s|@BB@|$BB|g; s|@UA@|$UA|g; s|@UB@|$UB|g; s|@LBPROCS@|$LBPROCS|g" "$HERE/conf/$f" >"$DIR/$f"
done
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj /CN=bench.test -keyout "$DIR/key.pem" -out "$DIR/cert.pem" 2>/dev/null
cat "$DIR/cert.pem" "$DIR/key.pem" >"$DIR/cert-and-key.pem"
say "writing the 512 MiB bulk file to $BULK"
dd if=/dev/zero of="$BULK" bs=1M count=512 status=none

# --- start everything ---------------------------------------------------------------
start() { # name cmd...
	local name=$1
	shift
	"$@" >"$DIR/$name.log" 2>&1 &
	PIDS+=($!)
	eval "PID_$name=$!"
}
wait_port() { # addr
	for _ in $(seq 100); do
		ss -Htln | awk '{print $4}' | grep -qx "$1" && return 0
		sleep 0.1
	done
	die "nothing listens on $1; see $DIR/*.log"
}
wait_udp() { # addr
	for _ in $(seq 100); do
		ss -Huln | awk '{print $4}' | grep -qx "$1" && return 0
		sleep 0.1
	done
	die "nothing is bound to udp $1; see $DIR/*.log"
}
start backend "${LOAD_CPU[@]}" nginx -c "$DIR/backend-nginx.conf"
start bulk "${LOAD_CPU[@]}" nginx -c "$DIR/bulk-nginx.conf"
start udpecho "${LOAD_CPU[@]}" "$NBB" udpecho "$UA" "$UB"
TOKEN=bench-token-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
# start_balancers starts HAProxy, nginx and nodebalancer (which keeps its store, so a
# restart brings its configuration back).
start_balancers() {
	start haproxy in_cgroup "${CGPRE[haproxy]}" "${LB_CPU[@]}" haproxy -db -f "$DIR/haproxy.cfg"
	start lbnginx in_cgroup "${CGPRE[lbnginx]}" "${LB_CPU[@]}" nginx -c "$DIR/lb-nginx.conf"
	# shellcheck disable=SC2086
	start nodebalancer in_cgroup "${CGPRE[nodebalancer]}" "${LB_CPU[@]}" env NODEBALANCER_BOOTSTRAP_TOKEN="$TOKEN" $NB_ENV "$DIR/nodebalancer" serve \
		--data "$DIR/nbdata" --listen $API --frontend-pool 127.0.9.0/24 --log-level warn --max-conns 15000 $NB_ARGS
}
# stop_balancers stops the three and waits until they are gone.
stop_balancers() {
	local p
	for p in $PID_haproxy $PID_lbnginx $PID_nodebalancer; do kill "$p" 2>/dev/null || true; done
	for p in $PID_haproxy $PID_lbnginx $PID_nodebalancer; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	done
}
start_balancers
for a in $BA $BB 127.0.0.4:9002 127.0.0.1:8081 127.0.0.1:8082 $API; do wait_port "$a"; done
NODE_URL=$("$NBB" setup -api "http://$API" -token "$TOKEN" -ipv4 $NB_IP -cert "$DIR/cert.pem" -key "$DIR/key.pem" -a "$BA" -b "$BB" -ua "$UA" -ub "$UB")
for a in $NB_IP:8083 $NB_IP:8093 $NB_IP:8193 $NB_IP:8483; do wait_port "$a"; done
for a in $UA $UB 127.0.0.1:8054 $NB_IP:8053; do wait_udp "$a"; done
# HAProxy's checks: both servers UP (rise 2 at inter 2s).
for _ in $(seq 100); do
	up=$(echo "show stat" | "$NBB" sock "$DIR/haproxy.sock" 2>/dev/null | grep -cE '^(be|be4),(a|b),.*,UP' || true)
	[[ $up == 4 ]] && break
	sleep 0.2
done
[[ $up == 4 ]] || die "HAProxy's servers are not all UP"
say "all up: nodebalancer pid $PID_nodebalancer, haproxy pid $PID_haproxy, nginx pid $PID_lbnginx"
if [[ -n ${HOLD:-} ]]; then
	say "holding for $HOLD s: nodebalancer $NB_IP:8083 (http) :8093 (tcp) :8193 (bulk) :8483 (https), HAProxy 127.0.0.1:8081/8091/8191/8481, nginx 8082/8092/8192/8482"
	sleep "$HOLD" &
	wait $! # (a signal ends wait at once, and the trap stops everything)
fi

# --- workloads ----------------------------------------------------------------------
RAW=$DIR/raw.tsv
: >"$RAW"
NOTES=$DIR/notes.txt
: >"$NOTES"
declare -A L7=([nodebalancer]=http://$NB_IP:8083/ [haproxy]=http://127.0.0.1:8081/ [nginx]=http://127.0.0.1:8082/ [direct]=http://$BA/)
declare -A L4=([nodebalancer]=http://$NB_IP:8093/ [haproxy]=http://127.0.0.1:8091/ [nginx]=http://127.0.0.1:8092/ [direct]=http://$BA/)
declare -A TLS=([nodebalancer]=https://$NB_IP:8483/ [haproxy]=https://127.0.0.1:8481/ [nginx]=https://127.0.0.1:8482/)
declare -A BULKA=([nodebalancer]=$NB_IP:8193 [haproxy]=127.0.0.1:8191 [nginx]=127.0.0.1:8192 [direct]=127.0.0.4:9002)
# HAProxy's open-source edition has no UDP: the udp rows compare nodebalancer and nginx.
declare -A UDPA=([nodebalancer]=$NB_IP:8053 [nginx]=127.0.0.1:8054 [direct]=$UA)

declare -A PIDOF=([nodebalancer]=$PID_nodebalancer [haproxy]=$PID_haproxy [nginx]=$PID_lbnginx)
# cpu_ticks PID: user+system clock ticks of PID and its children (nginx's workers).
cpu_ticks() {
	local t=0 p f
	for p in $1 $(pgrep -P "$1"); do
		read -r -a f <"/proc/$p/stat" || continue
		t=$((t + f[13] + f[14]))
	done
	echo $t
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# sleeps PID: voluntary context switches of every thread of PID and its children.
sleeps() {
	local t=0 p f
	for p in $1 $(pgrep -P "$1"); do
		for f in /proc/"$p"/task/*/status; do
			t=$((t + $(awk '/^voluntary_ctxt_switches:/{print $2}' "$f" 2>/dev/null || echo 0)))
		done
	done
	echo $t
}

# rss_kib PID: resident memory of PID and its children (nginx's workers), KiB.
rss_kib() {
	local t=0 p v
	for p in $1 $(pgrep -P "$1"); do
		v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null) || continue
		t=$((t + ${v:-0}))
	done
	echo $t
}

# wrk_run WORKLOAD BALANCER ROUND URL CONNS [HEADER]: one wrk run: req/s, p99 (ms) and
# the balancer's CPU time per request (µs). With RSS=1 in the environment, also the
# balancer's peak resident memory during the run (sampled every 0.5 s), MiB.
wrk_run() {
	local work=$1 bal=$2 round=$3 url=$4 conns=$5 hdr=${6:-}
	local args=(-t1 -c"$conns" -d"${WRK_DURATION:-$DURATION}" --latency --timeout 10s)
	[[ -n $hdr ]] && args+=(-H "$hdr")
	local out t0=0 t1=0 pid=${PIDOF[$bal]:-} sampler="" peak=""
	[[ -n $pid ]] && t0=$(cpu_ticks "$pid")
	# EXTRA=1: also the load side's CPU per request (wrk's own, from time(1), and the
	# backends' nginx) and the balancer's sleeps (voluntary context switches) per request.
	local extra=() b0=0 s0=0
	if [[ ${EXTRA:-} == 1 ]]; then
		extra=(/usr/bin/time -f '%U %S' -o "$DIR/wrk.time")
		b0=$(cpu_ticks "$PID_backend")
		[[ -n $pid ]] && s0=$(sleeps "$pid")
	fi
	if [[ -n $pid && ${RSS:-} == 1 ]]; then
		peak=$DIR/rss.peak
		echo 0 >"$peak"
		(
			m=0
			while :; do
				v=$(rss_kib "$pid")
				((v > m)) && m=$v && echo "$m" >"$peak"
				sleep 0.5
			done
		) &
		sampler=$!
	fi
	out=$("${LOAD_CPU[@]}" "${extra[@]}" wrk "${args[@]}" "$url" 2>&1) || { [[ -n $sampler ]] && kill "$sampler"; die "wrk $url failed: $out"; }
	if [[ -n $sampler ]]; then
		kill "$sampler" 2>/dev/null || true
		wait "$sampler" 2>/dev/null || true
		peak=$(awk '{printf "%.1f", $1/1024}' "$peak")
	fi
	[[ -n $pid ]] && t1=$(cpu_ticks "$pid")
	local rps p99 errs reqs cpu=""
	reqs=$(awk '/requests in/{print $1}' <<<"$out")
	if [[ -n $pid && ${reqs:-0} -gt 0 ]]; then
		cpu=$(awk -v t=$((t1 - t0)) -v us=$TICK_US -v n="$reqs" 'BEGIN{printf "%.2f", t*us/n}')
	fi
	rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
	p99=$(awk '$1=="99%"{v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v}' <<<"$out")
	errs=$(awk '/Socket errors|Non-2xx/' <<<"$out" | tr -s ' ' | paste -sd';')
	[[ -n $rps ]] || die "no result from wrk $url: $out"
	[[ -n $errs ]] && echo "$work $bal round $round: $errs" >>"$NOTES"
	printf '%s\t%s\t%s\treq/s\t%s\n%s\t%s\t%s\tp99 ms\t%s\n' "$work" "$bal" "$round" "$rps" "$work" "$bal" "$round" "$p99" >>"$RAW"
	[[ -n $cpu ]] && printf '%s\t%s\t%s\tCPU µs/req\t%s\n' "$work" "$bal" "$round" "$cpu" >>"$RAW"
	[[ -n $peak ]] && printf '%s\t%s\t%s\tRSS MiB (peak)\t%s\n' "$work" "$bal" "$round" "$peak" >>"$RAW"
	if [[ ${EXTRA:-} == 1 && ${reqs:-0} -gt 0 ]]; then
		local b1 load sl=""
		b1=$(cpu_ticks "$PID_backend")
		load=$(awk -v b=$((b1 - b0)) -v us=$TICK_US -v n="$reqs" 'NF == 2 {u = $1 + $2} END {printf "%.2f", (u*1e6 + b*us)/n}' "$DIR/wrk.time")
		printf '%s\t%s\t%s\tCPU load side µs/req\t%s\n' "$work" "$bal" "$round" "$load" >>"$RAW"
		if [[ -n $pid ]]; then
			sl=$(awk -v d=$(($(sleeps "$pid") - s0)) -v n="$reqs" 'BEGIN{printf "%.3f", d/n}')
			printf '%s\t%s\t%s\tsleeps/req\t%s\n' "$work" "$bal" "$round" "$sl" >>"$RAW"
		fi
		say "    load side $load µs/req${sl:+, sleeps $sl/req}"
	fi
	say "  $work $bal: $rps req/s, p99 ${p99} ms${cpu:+, CPU $cpu µs/req}${peak:+, RSS $peak MiB}${errs:+ ($errs)}"
}

# udp_run BALANCER ROUND: closed-loop UDP request/response with 64 clients (sessions):
# datagrams/s, p99 (ms) and the balancer's CPU time per request/response pair (µs).
udp_run() {
	local bal=$1 round=$2 work="UDP req/resp (c64)" out t0=0 t1=0 pid=${PIDOF[$1]:-}
	[[ -n $pid ]] && t0=$(cpu_ticks "$pid")
	out=$("${LOAD_CPU[@]}" "$NBB" udpload -addr "${UDPA[$bal]}" -c 64 -d "$DURATION") || die "udpload through $bal failed: $out"
	[[ -n $pid ]] && t1=$(cpu_ticks "$pid")
	local rps p99 lost sent cpu=""
	read -r rps p99 lost sent <<<"$out"
	[[ -n $pid ]] && cpu=$(awk -v t=$((t1 - t0)) -v us=$TICK_US -v n="$sent" 'BEGIN{printf "%.2f", t*us/n}')
	((lost > 0)) && echo "$work $bal round $round: $lost of $sent requests got no reply within 200 ms" >>"$NOTES"
	printf '%s\t%s\t%s\tdatagrams/s\t%s\n%s\t%s\t%s\tp99 ms\t%s\n' "$work" "$bal" "$round" "$rps" "$work" "$bal" "$round" "$p99" >>"$RAW"
	[[ -n $cpu ]] && printf '%s\t%s\t%s\tCPU µs/req\t%s\n' "$work" "$bal" "$round" "$cpu" >>"$RAW"
	say "  $work $bal: $rps datagrams/s, p99 $p99 ms, lost $lost${cpu:+, CPU $cpu µs/req}"
}

run_one() { # WORKLOAD BALANCER ROUND
	local work=$1 bal=$2 r=$3
	case $work in
	l7ka) wrk_run "L7 keep-alive (c64)" "$bal" "$r" "${L7[$bal]}" 64 ;;
	l7close) wrk_run "L7 new conn/request (c32)" "$bal" "$r" "${L7[$bal]}" 32 "Connection: close" ;;
	l4ka) wrk_run "L4 keep-alive (c64)" "$bal" "$r" "${L4[$bal]}" 64 ;;
	l4close) wrk_run "L4 new conn/request (c32)" "$bal" "$r" "${L4[$bal]}" 32 "Connection: close" ;;
	httpska) [[ $bal == direct ]] || wrk_run "https keep-alive (c64)" "$bal" "$r" "${TLS[$bal]}" 64 ;;
	c10k) RSS=1 WRK_DURATION=$C10K_DURATION wrk_run "L7 keep-alive, $MANY_CONNS clients" "$bal" "$r" "${L7[$bal]}" "$MANY_CONNS" ;;
	udprr) [[ $bal == haproxy ]] || udp_run "$bal" "$r" ;;
	l4bulk)
		local res
		res=$("${LOAD_CPU[@]}" "$NBB" bulk "${BULKA[$bal]}" /nb-bench-512m.bin) || die "bulk through $bal failed"
		printf '%s\t%s\t%s\tGB/s\t%s\n' "L4 bulk 512 MiB" "$bal" "$r" "${res##* }" >>"$RAW"
		say "  bulk $bal: $res (bytes s GB/s)"
		;;
	esac
}

BALS=(nodebalancer haproxy nginx direct)
WORKS=()
for w in l7ka l7close l4ka l4close l4bulk httpska c10k udprr; do want $w && WORKS+=($w); done

if ((${#WORKS[@]})); then
	say "warm-up"
	for b in nodebalancer haproxy nginx; do
		"${LOAD_CPU[@]}" wrk -t1 -c64 -d1s "${L7[$b]}" >/dev/null
		"${LOAD_CPU[@]}" wrk -t1 -c64 -d1s "${TLS[$b]}" >/dev/null
		"${LOAD_CPU[@]}" wrk -t1 -c64 -d1s "${L4[$b]}" >/dev/null
		[[ $b == haproxy ]] || "${LOAD_CPU[@]}" "$NBB" udpload -addr "${UDPA[$b]}" -c 64 -d 1s >/dev/null
	done
fi
for ((r = 1; r <= ROUNDS; r++)); do
	((${#WORKS[@]})) || break
	say "round $r of $ROUNDS"
	for w in "${WORKS[@]}"; do
		# Rotate the order each round so that no balancer always runs first or last.
		for ((i = 0; i < ${#BALS[@]}; i++)); do
			run_one "$w" "${BALS[$(((i + r - 1) % ${#BALS[@]}))]}" "$r"
		done
	done
done

if want idle; then
	say "idle connections: $IDLE_CONNS held through each balancer"
	declare -A IDLE_TCP=([nodebalancer]=$NB_IP:8093 [haproxy]=127.0.0.1:8091 [nginx]=127.0.0.1:8092)
	declare -A IDLE_HTTP=([nodebalancer]=$NB_IP:8083 [haproxy]=127.0.0.1:8081 [nginx]=127.0.0.1:8082)
	for kind in tcp http; do
		# Fresh processes for each kind: memory a balancer grew for earlier work (its
		# pools, our stacks) would otherwise be reused and hide the growth.
		stop_balancers
		start_balancers
		for a in 127.0.0.1:8081 127.0.0.1:8082 127.0.0.1:8091 127.0.0.1:8092 $NB_IP:8083 $NB_IP:8093; do
			wait_port "$a"
			"$NBB" get "$a" || die "no answer through $a after the restart"
		done
		PIDOF=([nodebalancer]=$PID_nodebalancer [haproxy]=$PID_haproxy [nginx]=$PID_lbnginx)
		for b in nodebalancer haproxy nginx; do
			if [[ $kind == tcp ]]; then addr=${IDLE_TCP[$b]} flag=""; else addr=${IDLE_HTTP[$b]} flag=-http; fi
			# shellcheck disable=SC2086
			res=$("${LOAD_CPU[@]}" "$NBB" idle -addr "$addr" -n "$IDLE_CONNS" $flag -pids "${PIDOF[$b]}") ||
				{ echo "idle $kind $b: failed ($res)" >>"$NOTES"; say "  idle $kind $b failed"; continue; }
			printf '%s\t%s\t1\tB/conn\t%s\n' "idle $kind ($IDLE_CONNS conns), RSS growth" "$b" "${res##* }" >>"$RAW"
			say "  idle $kind $b: $res (conns KiB B/conn)"
			sleep 2 # let the closes settle
		done
	done
fi

if want udpidle; then
	say "udp sessions: $IDLE_SESSIONS held through each balancer"
	stop_balancers
	start_balancers
	for a in 127.0.0.1:8054 $NB_IP:8053; do wait_udp "$a"; done
	PIDOF=([nodebalancer]=$PID_nodebalancer [haproxy]=$PID_haproxy [nginx]=$PID_lbnginx)
	for b in nodebalancer nginx; do
		# One warm-up session, then let it expire (2 s) before measuring from a quiet start.
		"${LOAD_CPU[@]}" "$NBB" udpload -addr "${UDPA[$b]}" -c 1 -d 200ms >/dev/null
		sleep 3
		res=$("${LOAD_CPU[@]}" "$NBB" udpidle -addr "${UDPA[$b]}" -n "$IDLE_SESSIONS" -pids "${PIDOF[$b]}") ||
			{ echo "udp sessions $b: failed ($res)" >>"$NOTES"; say "  udp sessions $b failed"; continue; }
		printf '%s\t%s\t1\tB/session\t%s\n' "udp ($IDLE_SESSIONS sessions held), RSS growth" "$b" "${res##* }" >>"$RAW"
		say "  udp sessions $b: $res (sessions KiB B/session)"
		sleep 3 # the sessions expire
	done
fi

if want modechange; then
	say "mode-change latency"
	for ((r = 1; r <= ROUNDS; r++)); do
		# nbbench prints the median ms, the changes in force for the first new
		# connection after the request, and the changes made.
		out=$("${LOAD_CPU[@]}" "$NBB" modechange -n "$MODE_CHANGES" -addr $NB_IP:8083 -api "$NODE_URL" -token "$TOKEN") || die "modechange (nodebalancer) failed"
		read -r ms won made <<<"$out"
		out=$("${LOAD_CPU[@]}" "$NBB" modechange -n "$MODE_CHANGES" -addr 127.0.0.1:8081 -haproxy-sock "$DIR/haproxy.sock" -server be/a) || die "modechange (haproxy) failed"
		read -r ms2 won2 made2 <<<"$out"
		printf '%s\t%s\t%s\tms\t%s\n' "mode change → first request reflecting it" nodebalancer "$r" "$ms" \
			"mode change → first request reflecting it" haproxy "$r" "$ms2" >>"$RAW"
		printf '%s\t%s\t%s\t%% of changes\t%s\n' "mode change in force for the next new connection" nodebalancer "$r" "$((100 * won / made))" \
			"mode change in force for the next new connection" haproxy "$r" "$((100 * won2 / made2))" >>"$RAW"
		say "  nodebalancer $ms ms ($won of $made in force for the next connection), haproxy $ms2 ms ($won2 of $made2)"
	done
fi

# --- the table ----------------------------------------------------------------------
TABLE=$("$NBB" table "$RAW")
echo
echo "$TABLE"
if [[ -s $NOTES ]]; then echo; echo "Notes:"; cat "$NOTES"; fi
if [[ $OUT != - ]]; then
	mkdir -p "$(dirname "$OUT")"
	{
		echo "# nodebalancer vs HAProxy vs nginx — $(date -u '+%Y-%m-%d %H:%M UTC')"
		echo
		echo "\`bench/compare.sh\`, ROUNDS=$ROUNDS, wrk -t1 -d$DURATION; medians (n = samples)."
		if [[ $PIN == 1 ]]; then
			echo "PIN=1: each balancer on CPU 1 with one thread (HAProxy nbthread 1, nginx 1 worker, Go GOMAXPROCS 1); wrk, backends, helpers on CPU 0."
		else
			echo "PIN=0: nothing pinned; HAProxy and nginx with $LBPROCS threads/workers, nodebalancer with Go's two Ps that serve --adapt-procs lowers while its threads wait for a CPU; all sharing both CPUs with wrk and the backends."
		fi
		if [[ $CGROUP == 1 ]]; then
			echo "CGROUP=1: each balancer in a CPU cgroup of its own (no quota or weight), as a service runs."
		else
			echo "CGROUP=0: the balancers in the run's session (one autogroup) with wrk and the backends."
		fi
		echo "Machine: $(nproc) cores, $(uname -r); $(haproxy -v | head -1 | cut -d' ' -f1-3);"
		echo "$(nginx -v 2>&1 | sed 's/.*: //'); nodebalancer $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $NB_ENV ]] && echo " with $NB_ENV")$( [[ -n $NB_ARGS ]] && echo " serve $NB_ARGS")."
		echo "Ratios: > 1 means nodebalancer is better (throughput ours÷theirs; latency, memory theirs÷ours)."
		echo
		echo "$TABLE"
		if [[ -s $NOTES ]]; then echo; echo "Notes:"; echo; sed 's/^/- /' "$NOTES"; fi
		echo
		echo "Raw samples:"
		echo
		echo '```'
		cat "$RAW"
		echo '```'
	} >"$OUT"
	say "wrote $OUT"
fi
