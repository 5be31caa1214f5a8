// Package udpproxy forwards the datagrams of one udp config: a socket on the
// NodeBalancer's ipv4:port, sessions keyed by the client's address and port,
// one connected socket per session towards its node, and replies sent back
// to the client from the frontend address.
//
// # Goroutines and ownership
//
// A Proxy runs two goroutines. The front loop reads client datagrams in
// batches (recvmmsg), owns the session table (no lock: nothing else touches
// it), opens sessions, writes each datagram to its session's node socket and
// ends idle sessions. The node loop waits on an epoll set holding every
// session's node socket (the epoll descriptor itself sits in Go's netpoller,
// so an idle proxy holds no thread), reads replies in batches and sends them
// to their clients in one sendmmsg on the frontend socket. Only the node loop
// closes node sockets: the front loop hands it the sessions it ends, so a
// socket number is never reused while a read on it may be in flight.
//
// A session costs one socket and about 200 bytes of Go memory: no goroutine
// and no buffer of its own. The batch buffers (16 slots of 64 KiB per loop,
// enough for the largest datagram, 65,507 bytes) belong to the proxy; pages
// the kernel never writes to are never resident.
//
// # The per-datagram path
//
// Reading a batch, finding the session, writing to the node socket, and the
// reverse path allocate nothing and take no lock; counters are atomics, the
// config's and NodeBalancer's added once per batch. golang.org/x/net/ipv4's
// ReadBatch would have done the batching, but it allocates the source address
// of every datagram it reads (two allocations each, measured), so the proxy
// issues recvmmsg and sendmmsg itself (golang.org/x/sys/unix) on preallocated
// headers.
package udpproxy
