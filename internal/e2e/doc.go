// Package e2e proves the node modes, health checks and stickiness of a running
// nodebalancer end to end: each test starts the real server (API, store, data plane,
// health checker), drives it with the Linode client (linodego), runs its own backends
// on loopback and sends real client traffic through the NodeBalancer's ipv4:port. It
// holds tests only; they are the executable form of the mode table in DESIGN.md and
// of the mode-change latency the project promises (well under Linode's 60 s), and
// ccm_test.go replays the requests Linode's Kubernetes cloud controller manager sends
// for a Service's whole life.
//
// clients_test.go replays the NodeBalancer-tree requests of Linode's other clients —
// terraform-provider-linode (through linodego, with the options it builds), linode-cli
// and linode_api4-python (raw JSON, in the shapes they send) — and checks what each
// client relies on in the answers.
//
// Every test gets its own server and its own loopback networks, so tests run in
// parallel without sharing a port: frontends come from 127.61.N.0/24, backends
// listen on 127.62.N.x and clients bind 127.63.N.x, where N is the test's number.
package e2e
