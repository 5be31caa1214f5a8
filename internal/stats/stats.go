package stats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/health"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
)

// DefaultPersistEvery is how often the series and the monthly transfer are written to
// the store besides at shutdown: a crash loses at most this much history.
const DefaultPersistEvery = time.Minute

// blobName is the store blob holding every NodeBalancer's series and transfer.
const blobName = "stats"

// Options configure Stats.
type Options struct {
	// DB is where series and transfer persist (one blob) and where NodeBalancer,
	// config and node labels come from. Required.
	DB *store.DB
	// Registry holds the counters the data plane updates. Required.
	Registry *Registry
	// Mirror, when set, is the in-memory state /metrics takes its labels from; a
	// scrape without one reads the whole state from DB.
	Mirror *store.Mirror
	// HealthOf, when set, returns a node's health counters, for /metrics
	// (health.Checker.NodeStats).
	HealthOf func(nodeID int) (health.NodeStats, bool)
	// HealthCounts, when set, returns how many nodes of a config are in each
	// status, for /metrics (health.Checker.Counts).
	HealthCounts func(configID int) health.Counts
	// NoNodeSeries leaves the per-node series out of /metrics: the per-NodeBalancer
	// and per-config ones stay (see README.md for the cardinality).
	NoNodeSeries bool
	// Listener, when set, tells whether a config's listener is open
	// (dataplane.Plane.ListenerStatus), for nodebalancer_listener_up.
	Listener func(configID int) model.ListenerStatus
	// Log receives persistence errors; slog.Default() when nil.
	Log *slog.Logger
	// Now is the wall clock that stamps samples and decides the month; time.Now when nil.
	Now func() time.Time
	// Day and Hour are the resolutions of the default and the fine /stats series
	// (DefaultDay, DefaultHour when zero). The sampler runs once per Hour.Width, and
	// Day.Width must be a multiple of it.
	Day, Hour Resolution
	// PersistEvery is how often the series are written to the store besides at
	// shutdown (DefaultPersistEvery when zero).
	PersistEvery time.Duration
	// HostID, set when several hosts share the store, names this host: it persists
	// its own traffic under its name, and reads add every host's (see hosts.go).
	HostID string
}

// Stats turns the Registry's counters into Linode's /stats series and monthly
// transfer, persists them, and exports every counter as Prometheus metrics. Create it
// with New and run its sampler with Run. All methods are safe for concurrent use.
type Stats struct {
	o      Options
	log    *slog.Logger
	checks checkLatencies
	access *AccessLog         // for its drop counter; may be nil
	drops  FirewallDropSource // may be nil

	mu     sync.Mutex
	series map[int]*series
	last   time.Time // end of the interval the last sample covered
}

// series is what Stats keeps for one NodeBalancer.
type series struct {
	since     time.Time // when observation began
	hour, day ring
	prev      sums // counter readings at the last sample; not persisted
	month     int  // year*12 + month-1 (UTC) that in and out count
	in, out   uint64
}

// New returns Stats over o.Registry, restoring the series and transfer that an
// earlier run persisted in o.DB.
func New(o Options) (*Stats, error) {
	if o.DB == nil || o.Registry == nil {
		return nil, errors.New("stats: DB and Registry are required")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Day == (Resolution{}) {
		o.Day = DefaultDay
	}
	if o.Hour == (Resolution{}) {
		o.Hour = DefaultHour
	}
	if o.PersistEvery <= 0 {
		o.PersistEvery = DefaultPersistEvery
	}
	if o.Hour.Width <= 0 || o.Day.Width <= 0 || o.Hour.Buckets <= 0 || o.Day.Buckets <= 0 || o.Day.Width%o.Hour.Width != 0 {
		return nil, fmt.Errorf("stats: day resolution %v must be a multiple of hour resolution %v", o.Day, o.Hour)
	}
	s := &Stats{o: o, log: o.Log, series: map[int]*series{}, last: o.Now()}
	b, err := o.DB.Blob(s.blob())
	if err != nil {
		return nil, fmt.Errorf("stats: read persisted series: %w", err)
	}
	if b != nil {
		if err := s.decode(b); err != nil {
			// History is not worth refusing to start over: log and begin afresh.
			s.log.Error("stats: persisted series unreadable, starting afresh", "err", err)
			s.series = map[int]*series{}
		}
	}
	return s, nil
}

func (s *Stats) newSeries(since time.Time) *series {
	return &series{since: since, hour: newRing(s.o.Hour), day: newRing(s.o.Day), month: monthOf(since)}
}

// monthOf numbers t's calendar month in UTC.
func monthOf(t time.Time) int {
	t = t.UTC()
	return t.Year()*12 + int(t.Month()) - 1
}

// Run samples the counters at every Hour.Width boundary and persists every
// PersistEvery until ctx ends; then it takes a last sample and persists once more.
// Start it before traffic flows and end it after the data plane has drained, so that
// every byte lands in the transfer.
func (s *Stats) Run(ctx context.Context) error {
	w := s.o.Hour.Width
	nextPersist := s.o.Now().Add(s.o.PersistEvery)
	for {
		now := s.o.Now()
		next := bucketStart(bucketOf(now, w)+1, w)
		t := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			s.sample(s.o.Now())
			return s.persist()
		case <-t.C:
		}
		s.sample(next)
		if now := s.o.Now(); !now.Before(nextPersist) {
			nextPersist = now.Add(s.o.PersistEvery)
			if err := s.persist(); err != nil {
				s.log.Error("stats: persist series", "err", err)
			}
		}
	}
}

// sample reads the counters of every NodeBalancer and adds their growth since the last
// sample to its series and monthly transfer, as traffic of the interval ending at.
func (s *Stats) sample(at time.Time) {
	v := view{nbs: s.o.Registry.nodeBalancers()} // the sampler needs no per-node map
	s.mu.Lock()
	defer s.mu.Unlock()
	from := s.last
	m := monthOf(at.Add(-1))
	for id, c := range v.nbs {
		ser := s.series[id]
		if ser == nil {
			ser = s.newSeries(from)
			s.series[id] = ser
		}
		cur := read(c)
		d := cur.since(ser.prev)
		ser.prev = cur
		ser.spread(from, at, d)
		if ser.month != m {
			ser.month, ser.in, ser.out = m, 0, 0
		}
		ser.in += d.in
		ser.out += d.out
	}
	if at.After(s.last) {
		s.last = at
	}
}

// read takes the readings of c that the series follow.
func read(c *Counters) sums {
	return sums{c.Connections.Load(), c.BytesIn.Load(), c.BytesOut.Load()}
}

// bytesPerMB is the MB of Linode's transfer figures.
const bytesPerMB = 1 << 20

// NodeBalancerTransfer returns NodeBalancer id's traffic this calendar month (UTC) in
// MB: bytes from clients, bytes to clients, and their sum. It is exact to the byte
// the counters have seen, the traffic since the last sample included; across a month
// boundary, traffic not yet sampled counts for the new month.
func (s *Stats) NodeBalancerTransfer(id int) (in, out, total float64) {
	c := s.o.Registry.lookupNodeBalancer(id)
	now := monthOf(s.o.Now())
	peers := s.peers()
	s.mu.Lock()
	var acc, prev sums
	if ser := s.withPeers(id, s.series[id], peers); ser != nil {
		prev = ser.prev
		if ser.month == now {
			acc = sums{in: ser.in, out: ser.out}
		}
	}
	s.mu.Unlock()
	if c != nil {
		acc.add(read(c).since(prev))
	}
	in, out = float64(acc.in)/bytesPerMB, float64(acc.out)/bytesPerMB
	return in, out, float64(acc.in+acc.out) / bytesPerMB
}

// Period names a /stats series: PeriodDay (Linode's, the default) or PeriodHour.
type Period string

// The periods of GET /nodebalancers/{id}/stats?period=….
const (
	PeriodDay  Period = "day"
	PeriodHour Period = "hour"
)

// Response is the body of GET /nodebalancers/{id}/stats, in Linode's shape.
type Response struct {
	Data  Data   `json:"data"`
	Title string `json:"title"`
}

// Data holds the series of a Response.
type Data struct {
	// Connections are new client connections per second.
	Connections []Point `json:"connections"`
	Traffic     Traffic `json:"traffic"`
}

// Traffic holds bits per second from clients (In) and to them (Out).
type Traffic struct {
	In  []Point `json:"in"`
	Out []Point `json:"out"`
}

// Series returns NodeBalancer id's series for period p, titled with its label. The
// last point covers the bucket in progress up to the last sample.
func (s *Stats) Series(id int, label string, p Period) Response {
	peers := s.peers()
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.o.Day
	if p == PeriodHour {
		r = &s.o.Hour
	}
	resp := Response{Title: fmt.Sprintf("nodebalancer - %s (%d) - %s (%s avg)", label, id, p, human(r.Width))}
	ser := s.withPeers(id, s.series[id], peers)
	if ser == nil {
		ser = &series{since: s.last, hour: ring{res: s.o.Hour}, day: ring{res: s.o.Day}}
	}
	rg := &ser.day
	if p == PeriodHour {
		rg = &ser.hour
	}
	resp.Data.Connections, resp.Data.Traffic.In, resp.Data.Traffic.Out = rg.points(ser.since, s.last)
	return resp
}

// human writes a bucket width the way Linode's titles do: "5 min", "10 sec".
func human(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%d hr", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%d min", d/time.Minute)
	case d >= time.Second && d%time.Second == 0:
		return fmt.Sprintf("%d sec", d/time.Second)
	}
	return fmt.Sprintf("%d ms", d/time.Millisecond)
}

// persist writes every series of a NodeBalancer that still exists to the store, and
// forgets the others.
func (s *Stats) persist() error {
	nbs, err := s.o.DB.ListNodeBalancers()
	if err != nil {
		return fmt.Errorf("stats: list nodebalancers: %w", err)
	}
	keep := make(map[int]bool, len(nbs))
	for _, nb := range nbs {
		keep[nb.ID] = true
	}
	s.mu.Lock()
	for id := range s.series {
		if !keep[id] {
			delete(s.series, id)
		}
	}
	b := s.encode()
	s.mu.Unlock()
	if err := s.o.DB.PutBlob(s.blob(), b); err != nil {
		return fmt.Errorf("stats: write series: %w", err)
	}
	return nil
}
