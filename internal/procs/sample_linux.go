package procs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// linuxSampler reads the process's threads' schedstat and the host's /proc/stat.
// Thread counts are kept per thread, so that a thread's exit does not show as time
// going backwards.
type linuxSampler struct {
	prev     map[int]schedstat
	seen     map[int]schedstat
	prevIdle uint64 // host idle time, in clock ticks
	prevAt   time.Time
	buf      []byte   // one /proc file's start
	dirBuf   []byte   // directory entries of /proc/self/task
	names    []string // the thread ids listed last
}

// schedstat is one thread's cumulative run and wait time, ns.
type schedstat struct{ run, wait uint64 }

// clockTick is the unit of /proc/stat (USER_HZ, 100 on every Linux architecture Go
// supports).
const clockTick = 10 * time.Millisecond

func newSampler() (sampler, error) {
	s := &linuxSampler{prev: map[int]schedstat{}, seen: map[int]schedstat{}, buf: make([]byte, 512)}
	if _, err := s.threads(); err != nil {
		return nil, fmt.Errorf("thread statistics: %w", err)
	}
	idle, err := s.hostIdle()
	if err != nil {
		return nil, fmt.Errorf("host statistics: %w", err)
	}
	s.prevIdle, s.prevAt = idle, time.Now()
	s.prev, s.seen = s.seen, s.prev
	return s, nil
}

func (s *linuxSampler) sample() (Sample, error) {
	clear(s.seen)
	d, err := s.threads()
	if err != nil {
		return Sample{}, err
	}
	idle, err := s.hostIdle()
	if err != nil {
		return Sample{}, err
	}
	now := time.Now()
	d.Interval = now.Sub(s.prevAt)
	if idle >= s.prevIdle {
		d.HostIdle = time.Duration(idle-s.prevIdle) * clockTick
	}
	s.prevIdle, s.prevAt = idle, now
	s.prev, s.seen = s.seen, s.prev
	return d, nil
}

// threads reads every thread's schedstat into s.seen and returns the time run and
// waited since s.prev, over the threads present in both.
func (s *linuxSampler) threads() (Sample, error) {
	names, err := s.threadNames()
	if err != nil {
		return Sample{}, err
	}
	var d Sample
	for _, name := range names {
		tid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		st, err := s.readSchedstat(name)
		if err != nil {
			continue // the thread exited
		}
		s.seen[tid] = st
		if p, ok := s.prev[tid]; ok && st.run >= p.run && st.wait >= p.wait {
			d.Run += time.Duration(st.run - p.run)
			d.Wait += time.Duration(st.wait - p.wait)
		}
	}
	if len(s.seen) == 0 {
		return Sample{}, errors.New("no thread's schedstat could be read")
	}
	return d, nil
}

// threadNames lists /proc/self/task into s.names (reused), with plain system calls as
// read does.
func (s *linuxSampler) threadNames() ([]string, error) {
	const dir = "/proc/self/task"
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	if s.dirBuf == nil {
		s.dirBuf = make([]byte, 8192)
	}
	names := s.names[:0]
	for {
		n, err := unix.ReadDirent(fd, s.dirBuf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "readdirent", Path: dir, Err: err}
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(s.dirBuf[:n], -1, names)
	}
	s.names = names
	return names, nil
}

// readSchedstat reads /proc/self/task/<name>/schedstat: "run_ns wait_ns slices".
func (s *linuxSampler) readSchedstat(name string) (schedstat, error) {
	b, err := s.read("/proc/self/task/" + name + "/schedstat")
	if err != nil {
		return schedstat{}, err
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return schedstat{}, fmt.Errorf("schedstat %q", b)
	}
	run, err1 := strconv.ParseUint(string(f[0]), 10, 64)
	wait, err2 := strconv.ParseUint(string(f[1]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return schedstat{}, fmt.Errorf("schedstat %q: %w", b, err)
	}
	return schedstat{run, wait}, nil
}

// hostIdle reads the idle and iowait ticks of all CPUs from /proc/stat's first line:
// "cpu user nice system idle iowait irq softirq steal ...".
func (s *linuxSampler) hostIdle() (uint64, error) {
	b, err := s.read("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 6 || string(f[0]) != "cpu" {
		return 0, fmt.Errorf("/proc/stat starts %q", line)
	}
	idle, err1 := strconv.ParseUint(string(f[4]), 10, 64)
	iowait, err2 := strconv.ParseUint(string(f[5]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/stat: %w", err)
	}
	return idle + iowait, nil
}

// read reads the start of a small /proc file into s.buf (enough for the lines read).
// It uses plain system calls: os.Open would offer each file to Go's poller (an
// epoll_ctl that fails, and two fcntl calls), three wasted calls per file read.
func (s *linuxSampler) read(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Read(fd, s.buf)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		case n == 0:
			return nil, &os.PathError{Op: "read", Path: path, Err: io.EOF}
		}
		return s.buf[:n], nil
	}
}
