package stats

import (
	"math"
	"time"
)

// Resolution is the bucket width of a series and how many buckets it keeps.
type Resolution struct {
	Width   time.Duration
	Buckets int
}

// span is how much time the series covers.
func (r Resolution) span() time.Duration { return r.Width * time.Duration(r.Buckets) }

// The resolutions of production: Linode's 5-minute averages over a day, and the
// console's live view of 10-second averages over the last hour.
var (
	DefaultDay  = Resolution{Width: 5 * time.Minute, Buckets: 288}
	DefaultHour = Resolution{Width: 10 * time.Second, Buckets: 360}
)

// sums are the NodeBalancer counters the series follow: new connections and bytes
// from and to clients. They serve both as counter readings and as their deltas.
type sums struct {
	conns, in, out uint64
}

// since returns the growth from prev to s; a counter that went backwards was
// recreated, so all of its value is new.
func (s sums) since(prev sums) sums {
	d := func(cur, old uint64) uint64 {
		if cur < old {
			return cur
		}
		return cur - old
	}
	return sums{d(s.conns, prev.conns), d(s.in, prev.in), d(s.out, prev.out)}
}

func (s *sums) add(d sums) {
	s.conns += d.conns
	s.in += d.in
	s.out += d.out
}

// bucket is one slot of a ring: the sums of the bucket that starts at idx×width.
type bucket struct {
	idx  int64
	used bool
	sums
}

// ring keeps the last Buckets buckets of one resolution, addressed by absolute bucket
// index (start time / width) so that slots of another era are recognised as stale.
type ring struct {
	res   Resolution
	slots []bucket
}

func newRing(res Resolution) ring { return ring{res: res, slots: make([]bucket, res.Buckets)} }

func (r *ring) slot(idx int64) *bucket {
	n := int64(len(r.slots))
	return &r.slots[((idx%n)+n)%n]
}

// add adds d to bucket idx, taking over the slot from an older bucket. A bucket older
// than the slot's (a clock that stepped back) is dropped rather than erase newer data.
func (r *ring) add(idx int64, d sums) {
	b := r.slot(idx)
	switch {
	case b.used && b.idx > idx:
		return
	case !b.used || b.idx < idx:
		*b = bucket{idx: idx, used: true}
	}
	b.sums.add(d)
}

// get returns the sums of bucket idx, zero when the ring does not hold it.
func (r *ring) get(idx int64) sums {
	b := r.slot(idx)
	if b.used && b.idx == idx {
		return b.sums
	}
	return sums{}
}

// bucketOf returns the index of the bucket of width w that holds t.
func bucketOf(t time.Time, w time.Duration) int64 {
	n := t.UnixNano()
	q := n / int64(w)
	if n%int64(w) < 0 {
		q--
	}
	return q
}

// bucketStart is the start time of bucket idx of width w.
func bucketStart(idx int64, w time.Duration) time.Time { return time.Unix(0, idx*int64(w)) }

// spread adds d, counted over [from, to), to the hour and day rings, dividing it
// between the hour buckets the interval overlaps in proportion to the overlap. An
// interval longer than the hour ring (the sampler did not run for that long) is taken
// to have happened in its last hour.
func (s *series) spread(from, to time.Time, d sums) {
	if d == (sums{}) {
		return
	}
	if !to.After(from) {
		from = to.Add(-1)
	}
	w := s.hour.res.Width
	if span := s.hour.res.span(); to.Sub(from) > span {
		from = to.Add(-span)
	}
	first, last := bucketOf(from, w), bucketOf(to.Add(-1), w)
	if first == last {
		s.hour.add(first, d)
		s.day.add(bucketOf(bucketStart(first, w), s.day.res.Width), d)
		return
	}
	total := float64(to.Sub(from))
	var given sums
	for idx := first; idx <= last; idx++ {
		var part sums
		if idx < last {
			start, end := bucketStart(idx, w), bucketStart(idx+1, w)
			frac := float64(minTime(end, to).Sub(maxTime(start, from))) / total
			part = sums{share(d.conns, given.conns, frac), share(d.in, given.in, frac), share(d.out, given.out, frac)}
		} else {
			part = sums{d.conns - given.conns, d.in - given.in, d.out - given.out}
		}
		given.add(part)
		s.hour.add(idx, part)
		s.day.add(bucketOf(bucketStart(idx, w), s.day.res.Width), part)
	}
}

// share is frac of total, never more than what is left after given.
func share(total, given uint64, frac float64) uint64 {
	v := uint64(math.Floor(float64(total) * frac))
	return min(v, total-given)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Point is one [timestamp in milliseconds, value] pair of a Linode stats series.
type Point [2]float64

// points turns ring r into Linode's series for the window that ends with the bucket
// holding the instant before end: one point per bucket from the later of since and the
// window's start, stamped with the bucket's start. Values are rates per second
// averaged over the bucket, or over its part before end for the last bucket;
// connections are new connections per second, traffic bits per second.
func (r *ring) points(since, end time.Time) (conns, in, out []Point) {
	w := r.res.Width
	n := r.res.Buckets
	conns, in, out = make([]Point, 0, n), make([]Point, 0, n), make([]Point, 0, n)
	if !end.After(since) {
		return
	}
	last := bucketOf(end.Add(-1), w)
	first := max(last-int64(n)+1, bucketOf(since, w))
	for idx := first; idx <= last; idx++ {
		start := bucketStart(idx, w)
		secs := minTime(start.Add(w), end).Sub(start).Seconds()
		v := r.get(idx)
		ts := float64(start.UnixMilli())
		conns = append(conns, Point{ts, float64(v.conns) / secs})
		in = append(in, Point{ts, float64(v.in) * 8 / secs})
		out = append(out, Point{ts, float64(v.out) * 8 / secs})
	}
	return
}
