// Command nodebalancer is a self-hosted load balancer driven by Linode's NodeBalancer
// API: `nodebalancer serve` runs it, the other commands are its client.
package main

import (
	"os"

	"github.com/nodebalancer/nodebalancer/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
