// Command nbbench holds the measuring parts of bench/compare.sh that are awkward in a
// shell: a bulk download timer, an idle-connection memory probe, a mode-change latency
// probe (nodebalancer's API and HAProxy's runtime API), and the table of medians.
//
// It talks only to the addresses it is given, which compare.sh keeps on loopback.
//
//	nbbench bulk ADDR PATH                 one HTTP/1.0 GET, body discarded: bytes, s, GB/s
//	nbbench idle -addr A -n N [-http] -pids P,Q [-hold D]
//	                                       RSS growth of P,Q (and their children) per idle connection
//	nbbench modechange -addr A (-api ... | -haproxy-sock S -server be/a) [-n N -send inline|goroutine -v]
//	                                       ms from the change to the first response that reflects it
//	nbbench table RAW.tsv                  markdown table of medians and ratios
//	nbbench setup -api URL -token T ...    create the benchmark NodeBalancer, wait for UP nodes
//	nbbench sock PATH                      send stdin to a unix socket (HAProxy's), print the answer
//	nbbench get ADDR                       wait (up to 20 s) until ADDR answers a GET with a backend's body
//	nbbench udpecho ADDR...                UDP echo servers
//	nbbench udpload -addr A [-c 64 -d 5s]  closed-loop UDP request/response: datagrams/s, p99 ms, lost, sent
//	nbbench udpidle -addr A -n N -pids P   RSS growth of P per held UDP session
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: nbbench bulk|idle|modechange|table ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "bulk":
		err = bulk(os.Args[2:])
	case "idle":
		err = idle(os.Args[2:])
	case "modechange":
		err = modeChange(os.Args[2:])
	case "table":
		err = table(os.Args[2:])
	case "setup":
		err = setup(os.Args[2:])
	case "sock":
		err = sock(os.Args[2:])
	case "get":
		err = get(os.Args[2:])
	case "udpecho":
		err = udpEcho(os.Args[2:])
	case "udpload":
		err = udpLoad(os.Args[2:])
	case "udpidle":
		err = udpIdle(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nbbench:", err)
		os.Exit(1)
	}
}

// bulk downloads one file over HTTP/1.0 (so the body ends at close, whatever sits in
// between) and prints "bytes seconds GB/s".
func bulk(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: bulk ADDR PATH")
	}
	c, err := net.DialTimeout("tcp", args[0], 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: bench\r\n\r\n", args[1]); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 1<<20)
	var total int64
	for {
		n, err := c.Read(buf)
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	d := time.Since(start).Seconds()
	if total < 1<<20 {
		return fmt.Errorf("only %d bytes received", total)
	}
	fmt.Printf("%d %.3f %.3f\n", total, d, float64(total)/d/1e9)
	return nil
}

// idle opens n connections to addr (with -http, sends one keep-alive GET on each and
// reads its response), holds them, and prints the RSS growth of the given processes
// (and their children) as "conns total_kib bytes_per_conn".
func idle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	addr := fs.String("addr", "", "address to connect to")
	n := fs.Int("n", 5000, "connections")
	useHTTP := fs.Bool("http", false, "send one GET on each connection and read the response")
	pids := fs.String("pids", "", "comma-separated pids whose RSS (with children) is measured")
	settle := fs.Duration("settle", 3*time.Second, "wait after the last connection before measuring")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var roots []int
	for _, p := range strings.Split(*pids, ",") {
		if v, err := strconv.Atoi(strings.TrimSpace(p)); err == nil {
			roots = append(roots, v)
		}
	}
	if len(roots) == 0 {
		return errors.New("-pids is required")
	}
	before := rssKiB(roots)
	conns := make([]net.Conn, 0, *n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := 0; i < *n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := net.DialTimeout("tcp", *addr, 5*time.Second)
			if err == nil && *useHTTP {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err = c.Write(req); err == nil {
					err = readOneResponse(c)
				}
				c.SetDeadline(time.Time{})
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if c != nil {
					c.Close()
				}
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	if len(conns) < *n {
		return fmt.Errorf("only %d of %d connections held: %v", len(conns), *n, firstErr)
	}
	time.Sleep(*settle)
	// A tcp proxy that has closed our connection is not holding it: check a few.
	for _, c := range conns[:min(len(conns), 50)] {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		var b [1]byte
		if _, err := c.Read(b[:]); err == nil || !isTimeout(err) {
			return fmt.Errorf("a held connection was closed by the other side: %v", err)
		}
	}
	after := rssKiB(roots)
	growth := after - before
	fmt.Printf("%d %d %.0f\n", len(conns), growth, float64(growth)*1024/float64(len(conns)))
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readOneResponse reads one HTTP response with a Content-Length body.
func readOneResponse(c net.Conn) error {
	br := bufio.NewReaderSize(c, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if br.Buffered() > 0 {
		return errors.New("unexpected bytes after the response")
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

// rssKiB sums VmRSS of the given processes and all their descendants.
func rssKiB(roots []int) int64 {
	children := map[int][]int{}
	ents, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, e := range ents {
		b, err := os.ReadFile(e)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pid, _ := strconv.Atoi(strings.Fields(string(b))[0])
		children[ppid] = append(children[ppid], pid)
	}
	var total int64
	seen := map[int]bool{}
	var walk func(int)
	walk = func(p int) {
		if seen[p] {
			return
		}
		seen[p] = true
		total += vmRSS(p)
		for _, c := range children[p] {
			walk(c)
		}
	}
	for _, r := range roots {
		walk(r)
	}
	return total
}

func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v
			}
		}
	}
	return 0
}

// modeChange drains the node answering "from a" and measures the time until
// responses stop coming from it: the send time of the first request after which no
// response came from a. Requests use a new connection each, so connection reuse
// cannot hide the change. The node is put back in accept mode after each change.
//
// Both balancers are asked over a connection made before the clock starts: the API
// on one that a warm-up GET of the node used (as a controller such as linodego keeps
// its connection), HAProxy on its stats socket dialled just before. By default
// (-send inline) the probing goroutine writes the request's bytes itself and only
// then dials its first probe; the clock starts when that write returns, when on
// loopback the request is in the balancer's socket, so the TCP write of an HTTP
// request and the unix-socket write of HAProxy's command cost neither side. A
// goroutine started earlier reads the answer. With -send goroutine the change is
// made in a goroutine of its own (the API's through net/http) and the clock starts
// just before it, as in the earlier versions of this probe: the goroutine's start
// (and, for the API, net/http's hand-off to its writer) put the request on the wire
// after the first probe had been dialled, a median 169 µs after the clock started
// for the API and 79 µs for HAProxy's socket, against 16 µs for each inline.
//
// Before each change the probe sends requests until one is answered by b, so that
// round robin would send the first probe after the change to a: a first probe
// answered by b means the change was in force before that probe was picked. The
// figure's resolution is one probe (a new connection through the balancer,
// 0.3–0.5 ms): the change landed between the arrival of the last probe that reached
// a and the arrival of the one after it. With -n N it changes N times and prints the
// median in ms, then how many changes were in force for the first probe, then N.
// -v prints each change's request write time and probes on stderr.
func modeChange(args []string) error {
	fs := flag.NewFlagSet("modechange", flag.ContinueOnError)
	target := fs.String("addr", "", "frontend address (host:port) answering 'hello from a' or 'b'")
	api := fs.String("api", "", "nodebalancer node URL: http://host:port/v4/nodebalancers/N/configs/C/nodes/I")
	token := fs.String("token", "", "API token")
	sock := fs.String("haproxy-sock", "", "HAProxy stats socket (admin level)")
	server := fs.String("server", "be/a", "HAProxy backend/server to drain")
	n := fs.Int("n", 1, "changes to measure; the median is printed")
	send := fs.String("send", "inline", "how the change leaves: inline (its bytes written by the probing goroutine, on a connection made before the clock) or goroutine (a goroutine of its own, the API through net/http)")
	verbose := fs.Bool("v", false, "print each change's timings (µs from the clock's start) on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *send != "inline" && *send != "goroutine" {
		return fmt.Errorf("-send %q: want inline or goroutine", *send)
	}
	// prepare readies a change (connects; with inline, starts the goroutine that
	// will read its answer) and returns it: issue writes the request (inline) or
	// starts it (goroutine), and the change's answer arrives on done. written is
	// when the request's write returned.
	type changeFn struct {
		issue   func() error
		written func() time.Time
		restore func() error
	}
	var prepare func(done chan<- error) (changeFn, error)
	switch {
	case *api != "":
		u, err := url.Parse(*api)
		if err != nil {
			return fmt.Errorf("-api: %w", err)
		}
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		call := func(ctx context.Context, method, body string) (string, error) {
			var rd io.Reader
			if body != "" {
				rd = strings.NewReader(body)
			}
			req, _ := http.NewRequestWithContext(ctx, method, *api, rd)
			req.Header.Set("Authorization", "Bearer "+*token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			return readMode(method, *api, resp)
		}
		put := func(ctx context.Context, mode string) error {
			got, err := call(ctx, http.MethodPut, `{"mode":"`+mode+`"}`)
			if err == nil && got != mode {
				err = fmt.Errorf("PUT %s: mode %q", *api, got)
			}
			return err
		}
		prepare = func(done chan<- error) (changeFn, error) {
			restore := func() error { return put(context.Background(), "accept") }
			if *send == "goroutine" {
				if mode, err := call(context.Background(), http.MethodGet, ""); err != nil || mode != "accept" {
					return changeFn{}, fmt.Errorf("warm-up GET of the node: mode %q, %v", mode, err)
				}
				var wrote time.Time
				ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
					WroteRequest: func(httptrace.WroteRequestInfo) { wrote = time.Now() },
				})
				return changeFn{
					issue: func() error {
						go func() { done <- put(ctx, "drain") }()
						return nil
					},
					written: func() time.Time { return wrote },
					restore: restore,
				}, nil
			}
			// inline: one connection, the warm-up GET then the PUT, both as raw bytes.
			c, err := net.Dial("tcp", u.Host)
			if err != nil {
				return changeFn{}, err
			}
			rd := bufio.NewReader(c)
			raw := func(method, body string) []byte {
				return fmt.Appendf(nil, "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
					method, u.RequestURI(), u.Host, *token, len(body), body)
			}
			answer := func(method string) (string, error) {
				resp, err := http.ReadResponse(rd, nil)
				if err != nil {
					return "", err
				}
				defer resp.Body.Close()
				return readMode(method, *api, resp)
			}
			if _, err := c.Write(raw(http.MethodGet, "")); err != nil {
				c.Close()
				return changeFn{}, err
			}
			if mode, err := answer(http.MethodGet); err != nil || mode != "accept" {
				c.Close()
				return changeFn{}, fmt.Errorf("warm-up GET of the node: mode %q, %v", mode, err)
			}
			putDrain := raw(http.MethodPut, `{"mode":"drain"}`)
			var wrote time.Time
			go func() {
				defer c.Close()
				mode, err := answer(http.MethodPut)
				if err == nil && mode != "drain" {
					err = fmt.Errorf("PUT %s: mode %q", *api, mode)
				}
				done <- err
			}()
			return changeFn{
				issue: func() error {
					_, err := c.Write(putDrain)
					wrote = time.Now()
					if err != nil {
						c.Close() // ends the reader
					}
					return err
				},
				written: func() time.Time { return wrote },
				restore: restore,
			}, nil
		}
	case *sock != "":
		cmd := func(c net.Conn, s string) error {
			defer c.Close()
			if _, err := io.WriteString(c, s+"\n"); err != nil {
				return err
			}
			return haproxyAnswer(c)
		}
		prepare = func(done chan<- error) (changeFn, error) {
			c, err := net.Dial("unix", *sock)
			if err != nil {
				return changeFn{}, err
			}
			restore := func() error {
				c, err := net.Dial("unix", *sock)
				if err != nil {
					return err
				}
				return cmd(c, "set server "+*server+" state ready")
			}
			drain := "set server " + *server + " state drain\n"
			var wrote time.Time
			issue := func() error {
				go func() {
					defer c.Close()
					_, err := io.WriteString(c, drain)
					wrote = time.Now()
					if err == nil {
						err = haproxyAnswer(c)
					}
					done <- err
				}()
				return nil
			}
			if *send == "inline" {
				go func() {
					defer c.Close()
					done <- haproxyAnswer(c)
				}()
				issue = func() error {
					_, err := io.WriteString(c, drain)
					wrote = time.Now()
					if err != nil {
						c.Close() // ends the reader
					}
					return err
				}
			}
			return changeFn{issue: issue, written: func() time.Time { return wrote }, restore: restore}, nil
		}
	default:
		return errors.New("-api or -haproxy-sock is required")
	}
	get := func() (byte, error) {
		c, err := net.DialTimeout("tcp", *target, 2*time.Second)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"); err != nil {
			return 0, err
		}
		b, err := io.ReadAll(c)
		if err != nil {
			return 0, err
		}
		i := bytes.Index(b, []byte("hello from "))
		if i < 0 || i+11 >= len(b) {
			return 0, fmt.Errorf("unexpected response %q", b)
		}
		return b[i+11], nil
	}
	once := func() (ms float64, first bool, err error) {
		// Both nodes must be answering before the change.
		seen := map[byte]bool{}
		for i := 0; i < 20; i++ {
			who, err := get()
			if err != nil {
				return 0, false, err
			}
			seen[who] = true
		}
		if !seen['a'] || !seen['b'] {
			return 0, false, fmt.Errorf("before the change, answers came from %v only", seen)
		}
		// End on an answer from b, so that round robin sends the first probe after the
		// change to a unless the change is in force by then: the probe then tells a
		// change that beat the first pick from one that did not, rather than reading
		// whichever node the rotation had reached.
		for i := 0; ; i++ {
			who, err := get()
			if err != nil {
				return 0, false, err
			}
			if who == 'b' {
				break
			}
			if i == 20 {
				return 0, false, errors.New("before the change, no answer came from b in 20 requests")
			}
		}
		done := make(chan error, 1)
		ch, err := prepare(done)
		if err != nil {
			return 0, false, err
		}
		type sample struct {
			sent time.Time
			who  byte
		}
		var samples []sample
		t0 := time.Now()
		if err := ch.issue(); err != nil {
			return 0, false, err
		}
		if *send == "inline" {
			t0 = ch.written() // the request is in the balancer's socket
		}
		changeErr := error(nil)
		changed := false
		deadline := t0.Add(5 * time.Second)
		for time.Now().Before(deadline) {
			sent := time.Now()
			who, err := get()
			if err != nil {
				return 0, false, err
			}
			samples = append(samples, sample{sent, who})
			if !changed {
				select {
				case changeErr = <-done:
					changed = true
					deadline = time.Now().Add(300 * time.Millisecond)
				default:
				}
			}
			if changeErr != nil {
				return 0, false, changeErr
			}
		}
		if !changed {
			return 0, false, errors.New("the change request did not return within 5 s")
		}
		if err := ch.restore(); err != nil {
			return 0, false, fmt.Errorf("restore: %w", err)
		}
		last := -1
		for i, s := range samples {
			if s.who == 'a' {
				last = i
			}
		}
		if last == len(samples)-1 {
			return 0, false, errors.New("node a still answered at the end")
		}
		ms = float64(samples[last+1].sent.Sub(t0).Microseconds()) / 1000
		if *verbose {
			us := func(t time.Time) int64 { return t.Sub(t0).Microseconds() }
			var b strings.Builder
			for i, s := range samples[:min(len(samples), last+3)] {
				fmt.Fprintf(&b, " %d:%c@%d", i, s.who, us(s.sent))
			}
			fmt.Fprintf(os.Stderr, "change: %.2f ms, request written at %d µs; probes%s; clock started at %d ns\n", ms, us(ch.written()), b.String(), t0.UnixNano())
		}
		return ms, last == -1, nil
	}
	var ms []float64
	won := 0
	for range max(*n, 1) {
		v, first, err := once()
		if err != nil {
			return err
		}
		ms = append(ms, v)
		if first {
			won++
		}
	}
	slices.Sort(ms)
	m := ms[len(ms)/2]
	if len(ms)%2 == 0 {
		m = (ms[len(ms)/2-1] + ms[len(ms)/2]) / 2
	}
	fmt.Printf("%.2f %d %d\n", m, won, len(ms))
	return nil
}

// readMode reads a node's mode from the API's answer to method.
func readMode(method, url string, resp *http.Response) (string, error) {
	var out struct {
		Mode string `json:"mode"`
	}
	b, _ := io.ReadAll(resp.Body) // read to the end: the connection is kept
	json.Unmarshal(b, &out)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s %s: status %d", method, url, resp.StatusCode)
	}
	return out.Mode, nil
}

// haproxyAnswer reads HAProxy's answer to a runtime command to its end: none means
// it was done.
func haproxyAnswer(c net.Conn) error {
	out, _ := io.ReadAll(c)
	if len(bytes.TrimSpace(out)) > 0 {
		return fmt.Errorf("haproxy: %s", bytes.TrimSpace(out))
	}
	return nil
}

// table reads raw results ("workload<TAB>balancer<TAB>round<TAB>metric<TAB>value"), and
// prints a markdown table of medians per workload and balancer with the ratios
// ours/HAProxy and ours/nginx.
func table(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: table RAW.tsv")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	type key struct{ work, metric, bal string }
	vals := map[key][]float64{}
	var rows []string // workload|metric, in first-seen order
	seenRow := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(sc.Text(), "\t")
		if len(p) != 5 {
			continue
		}
		v, err := strconv.ParseFloat(p[4], 64)
		if err != nil {
			continue
		}
		k := key{p[0], p[3], p[1]}
		vals[k] = append(vals[k], v)
		if r := p[0] + "|" + p[3]; !seenRow[r] {
			seenRow[r] = true
			rows = append(rows, r)
		}
	}
	median := func(v []float64) (float64, bool) {
		if len(v) == 0 {
			return 0, false
		}
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		if len(s)%2 == 1 {
			return s[len(s)/2], true
		}
		return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
	}
	bals := []string{"nodebalancer", "haproxy", "nginx", "direct"}
	fmt.Println("| workload | metric | nodebalancer | HAProxy | nginx | direct | ours/HAProxy | ours/nginx | ours/direct |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		work, metric, _ := strings.Cut(r, "|")
		cells := []string{work, metric}
		med := map[string]float64{}
		for _, b := range bals {
			m, ok := median(vals[key{work, metric, b}])
			if !ok {
				cells = append(cells, "—")
				continue
			}
			med[b] = m
			cells = append(cells, fmtValue(m)+fmt.Sprintf(" (n=%d)", len(vals[key{work, metric, b}])))
		}
		// For latency and memory smaller is better: the ratio is inverted so that > 1
		// always means ours is better.
		lowerBetter := strings.HasPrefix(metric, "p99") || strings.HasPrefix(metric, "B/") || strings.HasPrefix(metric, "ms") ||
			strings.HasPrefix(metric, "CPU") || strings.HasPrefix(metric, "RSS") || strings.HasPrefix(metric, "sleeps")
		for _, other := range []string{"haproxy", "nginx", "direct"} {
			o, okO := med[other]
			n, okN := med["nodebalancer"]
			switch {
			case !okO || !okN || o == 0 || n == 0:
				cells = append(cells, "—")
			case lowerBetter:
				cells = append(cells, fmt.Sprintf("%.2f×", o/n))
			default:
				cells = append(cells, fmt.Sprintf("%.2f×", n/o))
			}
		}
		fmt.Println("| " + strings.Join(cells, " | ") + " |")
	}
	return sc.Err()
}

func fmtValue(v float64) string {
	switch {
	case v >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// setup creates the NodeBalancer compare.sh measures (http, https, tcp and bulk tcp
// configs; health checks like HAProxy's), waits until every checked node is UP, and
// prints the node URL of the http config's node "a" for modechange.
func setup(args []string) error {
	fs := flag.NewFlagSet("setup", flag.ContinueOnError)
	api := fs.String("api", "", "API base URL, e.g. http://127.0.0.1:18080")
	token := fs.String("token", "", "API token")
	ipv4 := fs.String("ipv4", "", "frontend address from the pool")
	certFile := fs.String("cert", "", "PEM certificate for the https config")
	keyFile := fs.String("key", "", "PEM key for the https config")
	nodeA := fs.String("a", "127.0.0.2:9001", "node a")
	nodeB := fs.String("b", "127.0.0.3:9001", "node b")
	udpA := fs.String("ua", "127.0.0.2:9053", "udp node a")
	udpB := fs.String("ub", "127.0.0.3:9053", "udp node b")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cert, err := os.ReadFile(*certFile)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		return err
	}
	call := func(method, path string, body, out any) error {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, *api+path, rd)
		req.Header.Set("Authorization", "Bearer "+*token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return json.Unmarshal(b, out)
	}
	two := []map[string]any{
		{"label": "a", "address": *nodeA},
		{"label": "b", "address": *nodeB},
	}
	checked := func(port int, proto string) map[string]any {
		return map[string]any{"port": port, "protocol": proto, "algorithm": "roundrobin",
			"check": "http", "check_path": "/", "check_interval": 2, "check_timeout": 1, "check_attempts": 3,
			"nodes": two}
	}
	// Node labels are 3-32 characters.
	for _, n := range two {
		n["label"] = "node-" + n["label"].(string)
	}
	https := checked(8483, "https")
	https["ssl_cert"], https["ssl_key"] = string(cert), string(key)
	// The region is required; compare.sh runs the balancer with the default one.
	body := map[string]any{
		"label": "bench", "ipv4": *ipv4, "region": "local",
		"configs": []any{
			checked(8083, "http"), https, checked(8093, "tcp"),
			map[string]any{"port": 8193, "protocol": "tcp", "algorithm": "roundrobin", "check": "none",
				"nodes": []map[string]any{{"label": "bulk", "address": "127.0.0.4:9002"}}},
			// UDP echo nodes have no TCP port to check; nginx's stream proxy has only
			// passive checks either way.
			map[string]any{"port": 8053, "protocol": "udp", "algorithm": "roundrobin", "check": "none",
				"nodes": []map[string]any{{"label": "udp-a", "address": *udpA}, {"label": "udp-b", "address": *udpB}}},
		},
	}
	var nb struct {
		ID   int    `json:"id"`
		IPv4 string `json:"ipv4"`
	}
	if err := call("POST", "/v4/nodebalancers", body, &nb); err != nil {
		return err
	}
	if nb.IPv4 != *ipv4 {
		return fmt.Errorf("got frontend %s, wanted %s", nb.IPv4, *ipv4)
	}
	type node struct {
		ID     int    `json:"id"`
		Label  string `json:"label"`
		Status string `json:"status"`
	}
	var configs struct {
		Data []struct {
			ID    int    `json:"id"`
			Port  int    `json:"port"`
			Check string `json:"check"`
		} `json:"data"`
	}
	if err := call("GET", fmt.Sprintf("/v4/nodebalancers/%d/configs", nb.ID), nil, &configs); err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	nodeURL := ""
	for _, c := range configs.Data {
		if c.Check == "none" {
			continue
		}
		for {
			var nodes struct{ Data []node }
			path := fmt.Sprintf("/v4/nodebalancers/%d/configs/%d/nodes", nb.ID, c.ID)
			if err := call("GET", path, nil, &nodes); err != nil {
				return err
			}
			up := 0
			for _, n := range nodes.Data {
				if n.Status == "UP" {
					up++
				}
				if c.Port == 8083 && n.Label == "node-a" {
					nodeURL = fmt.Sprintf("%s%s/%d", *api, path, n.ID)
				}
			}
			if up == len(nodes.Data) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("config on port %d: only %d of %d nodes UP after 20 s", c.Port, up, len(nodes.Data))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if nodeURL == "" {
		return errors.New("node-a of the http config not found")
	}
	fmt.Println(nodeURL)
	return nil
}

// sock sends standard input to the unix socket at args[0] and copies the answer to
// standard output.
func sock(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: sock PATH")
	}
	c, err := net.Dial("unix", args[0])
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := io.Copy(c, os.Stdin); err != nil {
		return err
	}
	_, err = io.Copy(os.Stdout, c)
	return err
}

// get waits until args[0] answers a GET with one of the backends' bodies.
func get(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: get ADDR")
	}
	var last error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", args[0], time.Second)
		if err != nil {
			last = err
			continue
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
		b, _ := io.ReadAll(c)
		c.Close()
		if err == nil && bytes.HasPrefix(b, []byte("HTTP/1.1 200")) && bytes.Contains(b, []byte("hello from ")) {
			return nil
		}
		last = fmt.Errorf("answer %q, %v", b, err)
	}
	return fmt.Errorf("%s: %v", args[0], last)
}
