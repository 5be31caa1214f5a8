package stats

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"
)

// The persisted form is one blob, written every PersistEvery and at shutdown rather
// than per sample. It holds, per NodeBalancer, the monthly transfer and the used slots
// of both rings as varints (an idle bucket costs nothing, a busy one a few bytes):
//
//	"nbs1" hourWidthMs hourBuckets dayWidthMs dayBuckets count
//	count × { id sinceMs month in out ring(hour) ring(day) }
//	ring = n × { idxDelta conns in out }   (n first; idx deltas from the previous slot)
//
// Rings written with other resolutions are dropped on load; the transfer is kept.
const magic = "nbs1"

func (s *Stats) encode() []byte {
	b := []byte(magic)
	b = binary.AppendUvarint(b, uint64(s.o.Hour.Width/time.Millisecond))
	b = binary.AppendUvarint(b, uint64(s.o.Hour.Buckets))
	b = binary.AppendUvarint(b, uint64(s.o.Day.Width/time.Millisecond))
	b = binary.AppendUvarint(b, uint64(s.o.Day.Buckets))
	ids := make([]int, 0, len(s.series))
	for id := range s.series {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		ser := s.series[id]
		b = binary.AppendUvarint(b, uint64(id))
		b = binary.AppendVarint(b, ser.since.UnixMilli())
		b = binary.AppendUvarint(b, uint64(ser.month))
		b = binary.AppendUvarint(b, ser.in)
		b = binary.AppendUvarint(b, ser.out)
		b = ser.hour.appendTo(b)
		b = ser.day.appendTo(b)
	}
	return b
}

func (r *ring) appendTo(b []byte) []byte {
	used := make([]bucket, 0, len(r.slots))
	for _, sl := range r.slots {
		if sl.used && sl.sums != (sums{}) {
			used = append(used, sl)
		}
	}
	sort.Slice(used, func(i, j int) bool { return used[i].idx < used[j].idx })
	b = binary.AppendUvarint(b, uint64(len(used)))
	var prev int64
	for _, sl := range used {
		b = binary.AppendVarint(b, sl.idx-prev)
		prev = sl.idx
		b = binary.AppendUvarint(b, sl.conns)
		b = binary.AppendUvarint(b, sl.in)
		b = binary.AppendUvarint(b, sl.out)
	}
	return b
}

// decoder reads varints, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

var errCorrupt = errors.New("truncated or corrupt")

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

// decode restores the series of an encode'd blob into s.series.
func (s *Stats) decode(b []byte) error {
	if len(b) < len(magic) || string(b[:len(magic)]) != magic {
		return fmt.Errorf("not a stats blob")
	}
	d := &decoder{b: b[len(magic):]}
	hour := Resolution{time.Duration(d.uvarint()) * time.Millisecond, int(d.uvarint())}
	day := Resolution{time.Duration(d.uvarint()) * time.Millisecond, int(d.uvarint())}
	sameRes := hour == s.o.Hour && day == s.o.Day
	n := d.uvarint()
	for i := uint64(0); i < n && d.err == nil; i++ {
		id := int(d.uvarint())
		ser := s.newSeries(time.UnixMilli(d.varint()))
		ser.month = int(d.uvarint())
		ser.in, ser.out = d.uvarint(), d.uvarint()
		for _, r := range []*ring{&ser.hour, &ser.day} {
			cnt := d.uvarint()
			var idx int64
			for j := uint64(0); j < cnt && d.err == nil; j++ {
				idx += d.varint()
				v := sums{d.uvarint(), d.uvarint(), d.uvarint()}
				if sameRes {
					r.add(idx, v)
				}
			}
		}
		if !sameRes {
			ser.since = s.last
		}
		if d.err == nil {
			s.series[id] = ser
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	return d.err
}
