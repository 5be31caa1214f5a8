package stats

import (
	"reflect"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

func TestTransferIsExactBetweenSamples(t *testing.T) {
	reg := NewRegistry()
	c := &clock{utc("2025-03-10T12:00:03Z")}
	s := newTestStats(t, teststore.New(t, statsPool), reg, c)
	nb := reg.NodeBalancer(1)
	nb.BytesIn.Add(3 << 20)
	nb.BytesOut.Add(5 << 20)
	s.sample(utc("2025-03-10T12:00:10Z"))
	nb.BytesIn.Add(1 << 20) // not sampled yet
	c.t = utc("2025-03-10T12:00:12Z")
	in, out, total := s.NodeBalancerTransfer(1)
	if in != 4 || out != 5 || total != 9 {
		t.Errorf("transfer %v %v %v MB, want 4 5 9", in, out, total)
	}
	if in, out, total := s.NodeBalancerTransfer(2); in != 0 || out != 0 || total != 0 {
		t.Errorf("unknown NodeBalancer: %v %v %v", in, out, total)
	}
}

func TestTransferResetsAtTheMonthBoundary(t *testing.T) {
	tests := []struct{ name, before, boundary, after string }{
		{"month", "2025-01-31T23:59:45Z", "2025-02-01T00:00:00Z", "2025-02-01T00:00:05Z"},
		{"year", "2025-12-31T23:59:45Z", "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := NewRegistry()
			c := &clock{utc(tt.before)}
			s := newTestStats(t, teststore.New(t, statsPool), reg, c)
			nb := reg.NodeBalancer(1)
			inMB := func() float64 { in, _, _ := s.NodeBalancerTransfer(1); return in }

			nb.BytesIn.Add(3 << 20)
			s.sample(utc(tt.before).Add(5e9))
			nb.BytesIn.Add(1 << 20)
			c.t = utc(tt.boundary).Add(-1)
			if got := inMB(); got != 4 {
				t.Fatalf("last instant of the month: %v MB, want 4", got)
			}
			// The sample at the boundary closes the old month's last bucket.
			s.sample(utc(tt.boundary))
			c.t = utc(tt.after)
			if got := inMB(); got != 0 {
				t.Fatalf("first seconds of the new month: %v MB, want 0", got)
			}
			nb.BytesIn.Add(2 << 20)
			if got := inMB(); got != 2 {
				t.Fatalf("new month, before its first sample: %v MB, want 2", got)
			}
			s.sample(utc(tt.boundary).Add(testHour.Width))
			if got := inMB(); got != 2 {
				t.Fatalf("new month, after its first sample: %v MB, want 2", got)
			}
		})
	}
}

func TestSeriesAndTransferSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	db := teststore.Open(t, dir, statsPool)
	nbA, _, _ := createNB(t, db, "kept")
	nbB, _, _ := createNB(t, db, "deleted")
	reg := NewRegistry()
	c := &clock{utc("2025-03-10T12:00:03Z")}
	s := newTestStats(t, db, reg, c)
	for _, id := range []int{nbA.ID, nbB.ID} {
		reg.NodeBalancer(id).Connections.Add(12)
		reg.NodeBalancer(id).BytesIn.Add(7 << 20)
		reg.NodeBalancer(id).BytesOut.Add(9 << 20)
	}
	s.sample(utc("2025-03-10T12:00:10Z"))
	reg.NodeBalancer(nbA.ID).BytesOut.Add(1 << 20)
	s.sample(utc("2025-03-10T12:00:20Z"))
	c.t = utc("2025-03-10T12:00:21Z")
	// The last sample of a shutdown ends mid-bucket.
	reg.NodeBalancer(nbA.ID).BytesIn.Add(1 << 20)
	s.sample(c.t)
	if err := db.DeleteNodeBalancer(nbB.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.persist(); err != nil {
		t.Fatal(err)
	}
	hour, day := s.Series(nbA.ID, "kept", PeriodHour), s.Series(nbA.ID, "kept", PeriodDay)

	// A restart: fresh counters, the same store; the clock has not moved.
	s2 := newTestStats(t, db, NewRegistry(), c)
	if got := s2.Series(nbA.ID, "kept", PeriodHour); !reflect.DeepEqual(got, hour) {
		t.Errorf("hour series after restart\n got %+v\nwant %+v", got, hour)
	}
	if got := s2.Series(nbA.ID, "kept", PeriodDay); !reflect.DeepEqual(got, day) {
		t.Errorf("day series after restart\n got %+v\nwant %+v", got, day)
	}
	if in, out, total := s2.NodeBalancerTransfer(nbA.ID); in != 8 || out != 10 || total != 18 {
		t.Errorf("transfer after restart %v %v %v MB, want 8 10 18", in, out, total)
	}
	if _, ok := s2.series[nbB.ID]; ok {
		t.Errorf("series of a deleted NodeBalancer persisted")
	}
	// Traffic after the restart adds to the month.
	reg2 := s2.o.Registry
	reg2.NodeBalancer(nbA.ID).BytesIn.Add(2 << 20)
	if in, _, _ := s2.NodeBalancerTransfer(nbA.ID); in != 10 {
		t.Errorf("transfer after restart and more traffic: %v MB in, want 10", in)
	}
	// Compact: a handful of varints per used bucket, not every sample.
	b, _ := db.Blob(blobName)
	if len(b) > 120 {
		t.Errorf("blob of one NodeBalancer with 3 used buckets is %d bytes", len(b))
	}
}

func TestUnreadableOrForeignPersistedSeries(t *testing.T) {
	t.Run("corrupt blob starts afresh", func(t *testing.T) {
		db := teststore.New(t, statsPool)
		if err := db.PutBlob(blobName, []byte("nbs1\xff\xff")); err != nil {
			t.Fatal(err)
		}
		s := newTestStats(t, db, NewRegistry(), &clock{utc("2025-03-10T12:00:00Z")})
		if len(s.series) != 0 {
			t.Errorf("series from a corrupt blob: %v", s.series)
		}
	})
	t.Run("other resolutions keep only the transfer", func(t *testing.T) {
		db := teststore.New(t, statsPool)
		nb, _, _ := createNB(t, db, "web")
		reg := NewRegistry()
		c := &clock{utc("2025-03-10T12:00:00Z")}
		s := newTestStats(t, db, reg, c)
		reg.NodeBalancer(nb.ID).BytesIn.Add(3 << 20)
		s.sample(utc("2025-03-10T12:00:10Z"))
		if err := s.persist(); err != nil {
			t.Fatal(err)
		}
		s2, err := New(Options{DB: db, Registry: NewRegistry(), Now: c.now,
			Hour: Resolution{Width: 5 * 1e9, Buckets: 10}, Day: testDay})
		if err != nil {
			t.Fatal(err)
		}
		if pts := s2.Series(nb.ID, "web", PeriodHour).Data.Connections; len(pts) != 0 {
			t.Errorf("points of another resolution restored: %v", pts)
		}
		if in, _, _ := s2.NodeBalancerTransfer(nb.ID); in != 3 {
			t.Errorf("transfer %v MB, want 3", in)
		}
	})
}
