// Command nbprof is nodebalancer with Go's profiler: the same command line as
// nodebalancer, plus net/http/pprof on the address in NBPROF_LISTEN (default
// 127.0.0.1:6060). It exists for bench/: profiling a running balancer under load
// (`go tool pprof http://127.0.0.1:6060/debug/pprof/profile?seconds=5`, or
// `.../heap` and `.../goroutine` for the memory of idle connections).
package main

import (
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"

	"github.com/nodebalancer/nodebalancer/internal/cli"
)

func main() {
	addr := os.Getenv("NBPROF_LISTEN")
	if addr == "" {
		addr = "127.0.0.1:6060"
	}
	go func() {
		if err := http.ListenAndServe(addr, nil); err != nil {
			slog.Error("nbprof: pprof listener", "err", err)
		}
	}()
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
