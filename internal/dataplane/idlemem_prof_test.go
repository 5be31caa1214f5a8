package dataplane

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

func TestIdleMemProfile(t *testing.T) {
	out := os.Getenv("IDLEPROF")
	if out == "" {
		t.Skip("IDLEPROF unset")
	}
	e := newEnv(t, "127.0.64.0/24")
	nameServer(t, "127.0.65.2:9011", "web")
	nb := e.create(config(model.ProtocolHTTP, 80, node("web", "127.0.65.2:9011", 50)))
	waitFor(t, 2*time.Second, "probes", func() bool { return e.plane.active.Load() == 0 })
	const n = 5000
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	for i := range conns {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := net.Dial("tcp", nb.IPv4+":80")
			if err != nil {
				t.Error(err)
				return
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: p\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Error(err)
				return
			}
			io.ReadAll(resp.Body)
			conns[i] = c
		}()
	}
	wg.Wait()
	time.Sleep(time.Second)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	t.Logf("heapinuse growth per conn: %d B, heapalloc %d B", (int64(ms1.HeapInuse)-int64(ms0.HeapInuse))/n, (int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc))/n)
	f, _ := os.Create(out)
	pprof.Lookup("heap").WriteTo(f, 0)
	f.Close()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

func init() {
	if os.Getenv("IDLEPROF") != "" {
		runtime.MemProfileRate = 1
	}
}
