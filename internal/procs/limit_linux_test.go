package procs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// fakeRoot writes files (path → content) under a temporary directory standing for
// "/".
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const (
	v2Mounts = "24 30 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
	// A hybrid host (as this bench machine): v1 holds the cpu controller, v2 is
	// mounted too without it.
	v1Mounts = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n" +
		"32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n" +
		"33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n" +
		"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
	v1Cgroups = "4:memory:/svc\n2:cpuacct:/\n1:cpu:/svc/lb\n0::/\n"
)

// v2At is a cgroup v2 host whose process is in cgroup path, with cpuMax in its cpu.max.
func v2At(path, cpuMax string) map[string]string {
	return map[string]string{"proc/self/cgroup": "0::" + path + "\n", "proc/self/mountinfo": v2Mounts,
		"sys/fs/cgroup" + path + "/cpu.max": cpuMax}
}

// v1With is a hybrid host whose process's v1 cpu cgroup /svc/lb has quota (and a
// 100 ms period).
func v1With(quota string) map[string]string {
	return map[string]string{"proc/self/cgroup": v1Cgroups, "proc/self/mountinfo": v1Mounts,
		"sys/fs/cgroup/cpu/svc/lb/cpu.cfs_quota_us":  quota,
		"sys/fs/cgroup/cpu/svc/lb/cpu.cfs_period_us": "100000\n"}
}

// The CPU limit is read as Go's runtime reads it, from the process's own cgroup,
// for cgroup v2 and for v1, and caps the CPUs rounded up and at least 2.
func TestCPULimit(t *testing.T) {
	for name, tt := range map[string]struct {
		files  map[string]string
		limit  float64
		ok     bool
		capped int // of 8 CPUs
	}{
		"v2, 1.5 CPUs":   {v2At("/system.slice/nb.service", "150000 100000\n"), 1.5, true, 2},
		"v2, 3.2 CPUs":   {v2At("/a", "320000 100000\n"), 3.2, true, 4},
		"v2, half a CPU": {v2At("/a", "50000 100000\n"), 0.5, true, 2},
		"v2, no limit":   {v2At("/a", "max 100000\n"), 0, false, 8},
		"v2 in a container (namespaced: the mount root is the cgroup)": {map[string]string{
			"proc/self/cgroup":      "0::/\n",
			"proc/self/mountinfo":   "600 590 0:22 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw\n",
			"sys/fs/cgroup/cpu.max": "600000 100000\n",
		}, 6, true, 6},
		"v2, mount root a parent of the cgroup": {map[string]string{
			"proc/self/cgroup":              "0::/kubepods/pod1/c1\n",
			"proc/self/mountinfo":           "600 590 0:22 /kubepods /sys/fs/cgroup ro - cgroup2 cgroup rw\n",
			"sys/fs/cgroup/pod1/c1/cpu.max": "250000 100000\n",
		}, 2.5, true, 3},
		"v1 cpu controller": {v1With("400000\n"), 4, true, 4},
		"v1, no quota":      {v1With("-1\n"), 0, false, 8},
		"no cgroup mount for the cgroup": {map[string]string{
			"proc/self/cgroup":    "0::/a\n",
			"proc/self/mountinfo": "600 590 0:22 /other /sys/fs/cgroup ro - cgroup2 cgroup rw\n",
		}, 0, false, 8},
	} {
		t.Run(name, func(t *testing.T) {
			cg := findCgroup(fakeRoot(t, tt.files))
			limit, ok, err := cg.limit()
			if err != nil || ok != tt.ok || limit != tt.limit {
				t.Fatalf("limit = %v, %v, %v; want %v, %v", limit, ok, err, tt.limit, tt.ok)
			}
			if n := cg.capped(8); n != tt.capped {
				t.Fatalf("8 CPUs capped to %d; want %d", n, tt.capped)
			}
		})
	}
}

// A limit file that cannot be read or parsed leaves the CPUs as they are.
func TestCPULimitUnreadable(t *testing.T) {
	cg := findCgroup(fakeRoot(t, v2At("/a", "lots\n")))
	if _, _, err := cg.limit(); err == nil {
		t.Fatal("a malformed cpu.max read without an error")
	}
	if n := cg.capped(8); n != 8 {
		t.Fatalf("capped(8) = %d; want 8", n)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescape(`/mnt/with\040space\134x`); got != `/mnt/with space\x` {
		t.Fatalf("unescape = %q", got)
	}
}

// On this machine the reading works and gives between 1 and the CPUs Go saw.
func TestLimitOnThisMachine(t *testing.T) {
	n, ok := newLimit()()
	if !ok || n < 1 || n > runtime.NumCPU() {
		t.Fatalf("newLimit() = %d, %v; want 1–%d", n, ok, runtime.NumCPU())
	}
}

// TestLimitOfARealCgroup runs a child process in a cgroup of its own limited to
// half a CPU (v1 or v2, whichever holds the cpu controller here) and has it read
// its limit through /proc/self/cgroup and /proc/self/mountinfo, as Run does.
func TestLimitOfARealCgroup(t *testing.T) {
	if dir := os.Getenv("NB_PROCS_CGROUP_CHILD"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			t.Fatal(err)
		}
		limit, ok, err := findCgroup("/").limit()
		fmt.Printf("limit=%v ok=%v err=%v\n", limit, ok, err)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("making a cgroup needs root")
	}
	var parent string
	v1 := false
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cgroup.procs"); err == nil {
		parent, v1 = "/sys/fs/cgroup/cpu", true
	} else if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control"); err == nil && slices.Contains(strings.Fields(string(b)), "cpu") {
		parent = "/sys/fs/cgroup"
	} else {
		t.Skip("no cpu cgroup controller here (v1 /sys/fs/cgroup/cpu, or v2 with cpu in cgroup.subtree_control)")
	}
	dir := filepath.Join(parent, fmt.Sprintf("nb-procs-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot make a cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove the test cgroup: %v", err)
		}
	})
	write := func(name, v string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if v1 {
		write("cpu.cfs_period_us", "100000")
		write("cpu.cfs_quota_us", "50000")
	} else {
		write("cpu.max", "50000 100000")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLimitOfARealCgroup$", "-test.count=1")
	cmd.Env = append(os.Environ(), "NB_PROCS_CGROUP_CHILD="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "limit=0.5 ok=true err=<nil>") {
		t.Fatalf("the child in a cgroup of half a CPU read:\n%s", out)
	}
}
