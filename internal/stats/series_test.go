package stats

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

func TestSeriesAreRatesPerBucketInLinodeShape(t *testing.T) {
	db := teststore.New(t, statsPool)
	reg := NewRegistry()
	c := &clock{utc("2025-03-10T12:00:03Z")}
	s := newTestStats(t, db, reg, c)
	nb := reg.NodeBalancer(7)

	// 30 connections and 1.25 MB in, 2.5 MB out in the bucket 12:00:00–12:00:10.
	nb.Connections.Add(30)
	nb.BytesIn.Add(1_250_000)
	nb.BytesOut.Add(2_500_000)
	s.sample(utc("2025-03-10T12:00:10Z"))
	// 60 connections and nothing else in the next one.
	nb.Connections.Add(60)
	s.sample(utc("2025-03-10T12:00:20Z"))

	t0 := float64(utc("2025-03-10T12:00:00Z").UnixMilli())
	hour := s.Series(7, "web", PeriodHour)
	wantHour := Data{
		Connections: []Point{{t0, 3}, {t0 + 10_000, 6}},
		Traffic: Traffic{
			In:  []Point{{t0, 1_000_000}, {t0 + 10_000, 0}},
			Out: []Point{{t0, 2_000_000}, {t0 + 10_000, 0}},
		},
	}
	if !reflect.DeepEqual(hour.Data, wantHour) {
		t.Errorf("hour series\n got %+v\nwant %+v", hour.Data, wantHour)
	}
	if hour.Title != "nodebalancer - web (7) - hour (10 sec avg)" {
		t.Errorf("hour title %q", hour.Title)
	}

	// The day bucket 12:00–12:05 is in progress: its average covers the 20 s sampled.
	day := s.Series(7, "web", PeriodDay)
	wantDay := Data{
		Connections: []Point{{t0, 90.0 / 20}},
		Traffic:     Traffic{In: []Point{{t0, 1_250_000 * 8.0 / 20}}, Out: []Point{{t0, 2_500_000 * 8.0 / 20}}},
	}
	if !reflect.DeepEqual(day.Data, wantDay) {
		t.Errorf("day series\n got %+v\nwant %+v", day.Data, wantDay)
	}
	if day.Title != "nodebalancer - web (7) - day (5 min avg)" {
		t.Errorf("day title %q", day.Title)
	}

	// Linode's JSON: {"data":{"connections":[[ms,v]…],"traffic":{"in":…,"out":…}},"title":…}
	b, _ := json.Marshal(day)
	var back struct {
		Data struct {
			Connections [][]float64 `json:"connections"`
			Traffic     struct {
				In, Out [][]float64
			} `json:"traffic"`
		} `json:"data"`
		Title string `json:"title"`
	}
	if err := json.Unmarshal(b, &back); err != nil || len(back.Data.Connections) != 1 || len(back.Data.Traffic.Out) != 1 ||
		back.Data.Connections[0][0] != t0 || back.Title == "" {
		t.Errorf("JSON %s: %+v %v", b, back, err)
	}
}

func TestSeriesOfUnknownNodeBalancerAreEmptyArrays(t *testing.T) {
	s := newTestStats(t, teststore.New(t, statsPool), NewRegistry(), &clock{utc("2025-03-10T12:00:03Z")})
	b, err := json.Marshal(s.Series(3, "x", PeriodDay))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"data":{"connections":[],"traffic":{"in":[],"out":[]}},"title":"nodebalancer - x (3) - day (5 min avg)"}`
	if string(b) != want {
		t.Errorf("got %s\nwant %s", b, want)
	}
}

func TestLateSampleIsSpreadOverTheBucketsItCovers(t *testing.T) {
	tests := []struct {
		name     string
		from, at string
		in       uint64
		want     []float64 // bytes per hour bucket from the first one
	}{
		{"one bucket", "2025-03-10T12:00:00Z", "2025-03-10T12:00:10Z", 1000, []float64{1000}},
		{"three whole buckets", "2025-03-10T12:00:00Z", "2025-03-10T12:00:30Z", 3000, []float64{1000, 1000, 1000}},
		{"uneven split keeps every byte", "2025-03-10T12:00:00Z", "2025-03-10T12:00:30Z", 1001, []float64{333, 333, 335}},
		{"partial first bucket", "2025-03-10T12:00:05Z", "2025-03-10T12:00:20Z", 300, []float64{100, 200}},
		{"shutdown mid-bucket", "2025-03-10T12:00:10Z", "2025-03-10T12:00:14Z", 40, []float64{40}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := NewRegistry()
			c := &clock{utc(tt.from)}
			s := newTestStats(t, teststore.New(t, statsPool), reg, c)
			reg.NodeBalancer(1).BytesIn.Add(tt.in)
			s.sample(utc(tt.at))
			ser := s.series[1]
			first := bucketOf(utc(tt.from), testHour.Width)
			var got []float64
			var sum uint64
			for i := range tt.want {
				v := ser.hour.get(first + int64(i))
				got = append(got, float64(v.in))
				sum += v.in
			}
			if !reflect.DeepEqual(got, tt.want) || sum != tt.in {
				t.Errorf("buckets %v (sum %d), want %v (sum %d)", got, sum, tt.want, tt.in)
			}
			if day := ser.day.get(bucketOf(utc(tt.from), testDay.Width)); day.in != tt.in {
				t.Errorf("day bucket has %d bytes, want %d", day.in, tt.in)
			}
		})
	}
}

func TestWindowsKeepTheLastHourAndDay(t *testing.T) {
	reg := NewRegistry()
	start := utc("2025-03-10T00:00:00Z")
	c := &clock{start}
	s := newTestStats(t, teststore.New(t, statsPool), reg, c)
	nb := reg.NodeBalancer(1)
	// 25 hours of one connection per 10 s sample.
	var at time.Time
	for i := 1; i <= 25*360; i++ {
		nb.Connections.Add(1)
		at = start.Add(time.Duration(i) * testHour.Width)
		s.sample(at)
	}
	hour := s.Series(1, "x", PeriodHour).Data.Connections
	if len(hour) != 360 || hour[0][0] != float64(at.Add(-time.Hour).UnixMilli()) || hour[359][0] != float64(at.Add(-10*time.Second).UnixMilli()) {
		t.Fatalf("hour: %d points from %v to %v", len(hour), hour[0], hour[len(hour)-1])
	}
	day := s.Series(1, "x", PeriodDay).Data.Connections
	if len(day) != 288 || day[287][0] != float64(at.Add(-5*time.Minute).UnixMilli()) {
		t.Fatalf("day: %d points, last %v", len(day), day[len(day)-1])
	}
	for _, p := range append(hour, day...) {
		if math.Abs(p[1]-0.1) > 1e-12 {
			t.Fatalf("point %v, want 0.1 connections per second", p)
		}
	}
}

func TestCounterResetCountsTheNewValue(t *testing.T) {
	reg := NewRegistry()
	c := &clock{utc("2025-03-10T12:00:00Z")}
	s := newTestStats(t, teststore.New(t, statsPool), reg, c)
	reg.NodeBalancer(1).BytesIn.Add(500)
	s.sample(utc("2025-03-10T12:00:10Z"))
	// The data plane dropped and recreated the NodeBalancer's counters.
	reg.Retain(nil, nil, nil)
	reg.NodeBalancer(1).BytesIn.Add(200)
	s.sample(utc("2025-03-10T12:00:20Z"))
	c.t = utc("2025-03-10T12:00:25Z")
	if in, _, _ := s.NodeBalancerTransfer(1); in*bytesPerMB != 700 {
		t.Errorf("transfer in %v bytes, want 700", in*bytesPerMB)
	}
}
