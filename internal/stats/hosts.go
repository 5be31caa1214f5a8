package stats

import (
	"strings"
)

// With several hosts (Options.HostID set), each host persists only its own traffic,
// in its own blob "stats/host/<id>", and a read adds up every host's: this host's
// live series and transfer plus what each other host last persisted. A byte is
// counted by the one host that carried it, once, and survives that host's restarts
// in its blob. Another host's part is as fresh as its last persist
// (Options.PersistEvery).
const hostBlobPrefix = "stats/host/"

// blob is the name of the blob this host persists to.
func (s *Stats) blob() string {
	if s.o.HostID == "" {
		return blobName
	}
	return hostBlobPrefix + s.o.HostID
}

// peers decodes what the other hosts persisted; nil without Options.HostID.
func (s *Stats) peers() []map[int]*series {
	if s.o.HostID == "" {
		return nil
	}
	blobs, err := s.o.DB.Blobs(hostBlobPrefix)
	if err != nil {
		s.log.Warn("stats: read the other hosts' series", "err", err)
		return nil
	}
	var out []map[int]*series
	for name, b := range blobs {
		if strings.TrimPrefix(name, hostBlobPrefix) == s.o.HostID {
			continue
		}
		p := &Stats{o: s.o, log: s.log, series: map[int]*series{}}
		p.last = s.o.Now()
		if err := p.decode(b); err != nil {
			s.log.Warn("stats: another host's series unreadable", "blob", name, "err", err)
			continue
		}
		out = append(out, p.series)
	}
	return out
}

// withPeers returns ser (may be nil) plus NodeBalancer id's series of every peer, as
// a new series; ser is not modified.
func (s *Stats) withPeers(id int, ser *series, peers []map[int]*series) *series {
	if len(peers) == 0 {
		return ser
	}
	sum := s.newSeries(s.last)
	if ser != nil {
		sum.since, sum.month, sum.in, sum.out, sum.prev = ser.since, ser.month, ser.in, ser.out, ser.prev
		sum.hour.merge(&ser.hour)
		sum.day.merge(&ser.day)
	}
	for _, p := range peers {
		o := p[id]
		if o == nil {
			continue
		}
		if o.since.Before(sum.since) {
			sum.since = o.since
		}
		sum.hour.merge(&o.hour)
		sum.day.merge(&o.day)
		if o.month == sum.month {
			sum.in += o.in
			sum.out += o.out
		} else if o.month > sum.month {
			sum.month, sum.in, sum.out = o.month, o.in, o.out
		}
	}
	return sum
}

// merge adds every used slot of o to r.
func (r *ring) merge(o *ring) {
	if r.res != o.res {
		return
	}
	for _, b := range o.slots {
		if b.used {
			r.add(b.idx, b.sums)
		}
	}
}
