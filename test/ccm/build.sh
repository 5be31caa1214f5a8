#!/bin/sh
# build.sh WORK — builds the CCM driver in WORK, which must hold the extracted
# sources: WORK/ccm-src (linode/linode-cloud-controller-manager) and WORK/linodego-v2
# (linode/linodego at the commit the CCM's go.mod pins, 52f201e73a60). Neither is on
# the Go module proxy: get them with `git archive` from clones (see README.md).
# Writes WORK/driver/ccmrun. Heavy (Kubernetes modules): expect minutes on 2 cores.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: build.sh WORK}
work=$(cd "$work" && pwd)
test -f "$work/ccm-src/go.mod" || { echo "missing $work/ccm-src (the CCM's source)" >&2; exit 1; }
test -f "$work/linodego-v2/go.mod" || { echo "missing $work/linodego-v2 (linodego at 52f201e73a60)" >&2; exit 1; }
mkdir -p "$work/driver"
cp "$here/main.go" "$here/go.mod" "$work/driver/"
[ -f "$here/go.sum" ] && cp "$here/go.sum" "$work/driver/"
# The CCM keeps its kube client in an unexported field; an overlay adds one setter
# to its cloud/linode package without touching the extracted tree.
cp "$here/overlay_kubeclient.go.txt" "$work/driver/"
printf '{"Replace":{"%s":"%s"}}\n' "$work/ccm-src/cloud/linode/zz_nodebalancer_driver.go" "$work/driver/overlay_kubeclient.go.txt" > "$work/driver/overlay.json"
cd "$work/driver"
go mod tidy
nice -n 10 go build -overlay overlay.json -o ccmrun .
echo "built $work/driver/ccmrun"
