package procs

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// spin keeps n goroutines busy until ctx ends.
func spin(ctx context.Context, n int) {
	for range n {
		go func() {
			var x uint64
			for ctx.Err() == nil {
				for range 1 << 16 {
					x++
				}
			}
			_ = x
		}()
	}
}

// The sampler's run time covers what the process's threads ran. The goroutine spins
// until the process has run 50ms by getrusage, rather than for a fixed time: on a busy
// machine (or with many test binaries at once) a fixed 200ms gave it as little as 15ms.
func TestSamplerSeesTheThreadsRunAndTheInterval(t *testing.T) {
	s, err := newSampler()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cpu0 := processCPU(t)
	ctx, cancel := context.WithCancel(context.Background())
	spin(ctx, 1)
	for processCPU(t)-cpu0 < 50*time.Millisecond && time.Since(start) < 20*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	elapsed := time.Since(start)
	smp, err := s.sample()
	if err != nil {
		t.Fatal(err)
	}
	if smp.Interval < elapsed || smp.Interval > elapsed+5*time.Second {
		t.Errorf("interval %v; want the %v spun and a little", smp.Interval, elapsed)
	}
	if smp.Run < 20*time.Millisecond || smp.Run > 2*smp.Interval*time.Duration(runtime.NumCPU()) {
		t.Errorf("run %v over %v, the process having run %v; want a good part of it",
			smp.Run, smp.Interval, processCPU(t)-cpu0)
	}
	if smp.Wait < 0 || smp.HostIdle < 0 {
		t.Errorf("wait %v, host idle %v; want neither negative", smp.Wait, smp.HostIdle)
	}
}

// processCPU is the CPU time the process has used, user and system.
func processCPU(t *testing.T) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// setAffinity pins every thread of the process to set and returns the mask each had.
// Threads the runtime starts later inherit their creator's mask.
func setAffinity(t *testing.T, set *unix.CPUSet) map[int]unix.CPUSet {
	old := map[int]unix.CPUSet{}
	for round := 0; round < 3; round++ {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			tid, _ := strconv.Atoi(e.Name())
			if _, done := old[tid]; done || tid == 0 {
				continue
			}
			var was unix.CPUSet
			if unix.SchedGetaffinity(tid, &was) != nil {
				continue // exited
			}
			if err := unix.SchedSetaffinity(tid, set); err != nil {
				continue
			}
			old[tid] = was
		}
	}
	return old
}

// Two Ps whose threads share one CPU wait for it as long as they run: the
// controller, reading the real thread statistics, drops to one P.
func TestRunDropsAPWhenItsThreadsShareOneCPU(t *testing.T) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Skipf("no CPU affinity here: %v", err)
	}
	var one unix.CPUSet
	for cpu := 0; cpu < 1024; cpu++ {
		if all.IsSet(cpu) {
			one.Set(cpu)
			break
		}
	}
	before := runtime.GOMAXPROCS(2)
	old := setAffinity(t, &one)
	t.Cleanup(func() {
		for tid := range old {
			_ = unix.SchedSetaffinity(tid, &all)
		}
		setAffinity(t, &all)
		runtime.GOMAXPROCS(before)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	spin(ctx, 2)
	s, err := newSampler()
	if err != nil {
		t.Fatal(err)
	}
	pol := DefaultPolicy(2)
	pol.Every = 100 * time.Millisecond
	pol.BusyFloor = 0.1 // the CPU may be shared with other test processes too
	var set atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, pol, s, func(n int) int {
			if n > 0 {
				set.Store(int32(n))
				cancel()
			}
			return runtime.GOMAXPROCS(0)
		}, func() (int, bool) { return 2, true }, slog.New(slog.DiscardHandler))
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := set.Load(); n != 1 {
		t.Fatalf("in 20 s with two Ps on one CPU the controller set %d Ps; want 1", n)
	}
}
