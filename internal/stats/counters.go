// Package stats counts what the data plane does — connections, requests, responses
// and bytes per NodeBalancer, config and node — and turns the counts into Linode's
// /stats series, the monthly transfer and Prometheus metrics.
package stats

import "sync/atomic"

// Counters are the live counts of one NodeBalancer, config or node. The data plane
// updates them with atomics on the hot path; readers sample them.
type Counters struct {
	// Active is the number of open client connections.
	Active atomic.Int64
	// Connections counts accepted client connections.
	Connections atomic.Uint64
	// Refused counts connections refused by the throttle, the connection cap or for
	// want of an eligible node.
	Refused atomic.Uint64
	// Requests counts HTTP requests.
	Requests atomic.Uint64
	// Responses counts HTTP responses by class: index 1 for 1xx … 5 for 5xx, 0 other.
	Responses [6]atomic.Uint64
	// BytesIn counts bytes received from clients, BytesOut bytes sent to them.
	BytesIn, BytesOut atomic.Uint64
}

// Response counts one HTTP response with status code.
func (c *Counters) Response(code int) {
	class := code / 100
	if class < 1 || class > 5 {
		class = 0
	}
	c.Responses[class].Add(1)
}
