package dataplane

import "github.com/nodebalancer/nodebalancer/internal/model"

// How tcp configs are served (Options.TCPEngine).
const (
	// TCPEngineEpoll serves tcp configs on a few event loops of the data plane's own
	// (l4engine_linux.go): no goroutine per session. Linux only; the default there.
	TCPEngineEpoll = "epoll"
	// TCPEngineGoroutine serves each tcp session with two goroutines over Go's net
	// package (tcp.go): the default elsewhere, and the fallback when the engine
	// cannot start.
	TCPEngineGoroutine = "goroutine"
)

// tcpEngine returns the engine tcp listeners are served on, started on first use;
// nil when the goroutine path serves them. p.mu is held.
func (p *Plane) tcpEngine() *engine {
	if p.opts.TCPEngine == TCPEngineGoroutine || p.engineFailed {
		return nil
	}
	if p.engine == nil {
		e, err := newEngine(p, engineLoops())
		if err != nil {
			p.log.Error("tcp engine not started; serving tcp configs with goroutines", "err", err)
			p.engineFailed = true
			return nil
		}
		p.engine = e
	}
	return p.engine
}

// stopEngine ends the engine's loops; every listener is closed and drained.
func (p *Plane) stopEngine() {
	p.mu.Lock()
	e := p.engine
	p.engine = nil
	p.mu.Unlock()
	if e != nil {
		e.stop()
	}
}

// start serves l's sockets: on the engine for a tcp config when there is one, else
// with an accept goroutine per socket.
func (l *listener) start() {
	if l.protocol == model.ProtocolTCP {
		if e := l.plane.tcpEngine(); e != nil && e.adopt(l) {
			return
		}
	}
	if l.adoptRaw() {
		l.wg.Add(len(l.raw))
		for i := range l.raw {
			go l.serveRaw(i)
		}
		return
	}
	l.wg.Add(len(l.lns))
	for i := range l.lns {
		go l.serve(i)
	}
}
