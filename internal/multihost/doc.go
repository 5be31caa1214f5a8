// Package multihost holds the end-to-end tests of several nodebalancer hosts sharing
// one etcd store: real `nodebalancer serve` processes, an embedded etcd, and, for
// the tests that need two hosts serving the same frontend addresses, network
// namespaces the tests create (as root) and remove. It has no code of its own.
package multihost
