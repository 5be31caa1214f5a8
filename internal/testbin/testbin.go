// Package testbin builds the nodebalancer binary for tests that run it as a real
// process (the CLI's serve and demo tests, the multi-host lab).
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once    sync.Once
	binPath string
	err     error
)

// Nodebalancer builds cmd/nodebalancer once per test binary and returns its path.
func Nodebalancer(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		dir, e := os.MkdirTemp("", "nodebalancer-bin-")
		if e != nil {
			err = e
			return
		}
		binPath = filepath.Join(dir, "nodebalancer")
		out, e := exec.Command("go", "build", "-o", binPath, "github.com/nodebalancer/nodebalancer/cmd/nodebalancer").CombinedOutput()
		if e != nil {
			err = fmt.Errorf("build: %v\n%s", e, out)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return binPath
}

// Remove deletes the binary Nodebalancer built, if any; a TestMain calls it after
// the tests ran.
func Remove() {
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
}
