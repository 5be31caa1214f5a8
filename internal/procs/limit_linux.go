package procs

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// newLimit returns a reader of the number of Ps Go's runtime would choose now:
// the CPUs the process may run on (its affinity), capped by its cgroup's CPU limit
// rounded up and at least 2, as Go (1.25 and later) chooses at start and then
// follows while nothing has set GOMAXPROCS. It finds the cgroup's directory once,
// as Go does, and reads its limit at each call; ok is false when the CPUs cannot be
// read.
func newLimit() func() (n int, ok bool) {
	cg := findCgroup("/")
	return func() (int, bool) {
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil || set.Count() < 1 {
			return 0, false
		}
		return cg.capped(set.Count()), true
	}
}

// cgroup is where the CPU limit of the process's cgroup is read: dir holds
// cpu.max (v2) or cpu.cfs_quota_us and cpu.cfs_period_us (v1). dir is "" when
// there is none to read.
type cgroup struct {
	dir string
	v1  bool
}

// findCgroup finds the process's cgroup that holds the cpu controller, under root
// (a directory standing for "/", for tests): a v1 hierarchy listing "cpu" in
// /proc/self/cgroup, else the v2 one, at the first mount of that hierarchy in
// /proc/self/mountinfo whose root holds it.
func findCgroup(root string) cgroup {
	b, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return cgroup{}
	}
	path, v1, found := cpuCgroup(b)
	if !found {
		return cgroup{}
	}
	mi, err := os.ReadFile(filepath.Join(root, "proc/self/mountinfo"))
	if err != nil {
		return cgroup{}
	}
	dir, found := cgroupDir(mi, path, v1)
	if !found {
		return cgroup{}
	}
	return cgroup{dir: filepath.Join(root, dir), v1: v1}
}

// capped caps cpus by the cgroup's CPU limit, rounded up and at least 2, as Go's
// runtime does; without a limit it can read, cpus.
func (c cgroup) capped(cpus int) int {
	limit, ok, err := c.limit()
	if err != nil || !ok {
		return cpus
	}
	return min(cpus, max(int(math.Ceil(limit)), 2))
}

// limit reads the cgroup's CPU limit, in CPUs' worth of time per second; ok is
// false when it sets none.
func (c cgroup) limit() (limit float64, ok bool, err error) {
	if c.dir == "" {
		return 0, false, nil
	}
	if !c.v1 {
		b, err := os.ReadFile(filepath.Join(c.dir, "cpu.max"))
		if err != nil {
			return 0, false, err
		}
		f := strings.Fields(string(b))
		if len(f) != 2 {
			return 0, false, errors.New("cpu.max: malformed")
		}
		if f[0] == "max" {
			return 0, false, nil
		}
		return quotient(f[0], f[1])
	}
	q, err := os.ReadFile(filepath.Join(c.dir, "cpu.cfs_quota_us"))
	if err != nil {
		return 0, false, err
	}
	p, err := os.ReadFile(filepath.Join(c.dir, "cpu.cfs_period_us"))
	if err != nil {
		return 0, false, err
	}
	if strings.TrimSpace(string(q)) == "-1" {
		return 0, false, nil
	}
	return quotient(strings.TrimSpace(string(q)), strings.TrimSpace(string(p)))
}

// quotient is quota/period, both in microseconds.
func quotient(quota, period string) (float64, bool, error) {
	q, err := strconv.ParseInt(quota, 10, 64)
	if err != nil {
		return 0, false, err
	}
	p, err := strconv.ParseInt(period, 10, 64)
	if err != nil || p <= 0 {
		return 0, false, errors.New("malformed CPU period " + strconv.Quote(period))
	}
	return float64(q) / float64(p), true, nil
}

// cpuCgroup finds in /proc/self/cgroup the process's cgroup that holds the cpu
// controller: a v1 hierarchy listing "cpu", else the v2 one (ID 0).
func cpuCgroup(b []byte) (path string, v1, found bool) {
	for line := range bytes.Lines(b) {
		f := strings.SplitN(strings.TrimSpace(string(line)), ":", 3)
		if len(f) != 3 || !strings.HasPrefix(f[2], "/") {
			continue
		}
		if f[0] == "0" && f[1] == "" {
			if !v1 {
				path, found = f[2], true
			}
			continue
		}
		if hasOption(f[1], "cpu") {
			return f[2], true, true
		}
	}
	return path, false, found
}

// cgroupDir finds in /proc/self/mountinfo the first mount of the cpu controller's
// hierarchy (cgroup2, or cgroup with "cpu" in its super options) whose root holds
// path, and returns path's directory under it.
func cgroupDir(mountinfo []byte, path string, v1 bool) (string, bool) {
	for line := range bytes.Lines(mountinfo) {
		f := strings.Fields(string(line))
		sep := slices.Index(f, "-")
		if sep < 6 || sep+1 >= len(f) { // root is f[3], the mount point f[4]
			continue
		}
		fstype, super := f[sep+1], ""
		if sep+3 < len(f) {
			super = f[sep+3]
		}
		switch {
		case !v1 && fstype == "cgroup2":
		case v1 && fstype == "cgroup" && hasOption(super, "cpu"):
		default:
			continue
		}
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(unescape(f[3]), "/"))
		if !ok || (rel != "" && rel[0] != '/') { // "/a" does not hold "/ab"
			continue
		}
		point := unescape(f[4])
		return filepath.Join(point, rel), true
	}
	return "", false
}

// hasOption reports whether the comma-separated list opts holds o.
func hasOption(opts, o string) bool {
	return slices.Contains(strings.Split(opts, ","), o)
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
