package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/netip"
	"os"

	"github.com/prometheus/common/expfmt"

	"github.com/nodebalancer/nodebalancer/internal/ha"
)

// openHolder prepares this host's part in holding the frontend addresses when
// Config.FrontendInterface asks for it.
func (s *Server) openHolder() error {
	if s.cfg.FrontendInterface == "" {
		return nil
	}
	if s.etcd == nil {
		return fmt.Errorf("--frontend-interface needs --store etcd: the hosts elect the addresses' holder through etcd")
	}
	h, err := ha.New(ha.Options{
		Client: s.etcd.Client(), Prefix: s.etcd.Prefix(), HostID: s.cfg.HostID,
		Interface: s.cfg.FrontendInterface, Pool: s.cfg.FrontendPool, TTL: s.cfg.FrontendLease,
		Addresses: s.frontendAddresses, Log: s.cfg.Log, Handover: true,
		PeerPort: s.cfg.FrontendPeerPort,
		Ready:    func() bool { p := s.plane.Load(); return p != nil && p.Ready() },
	})
	if err != nil {
		return err
	}
	s.holder = h
	return nil
}

// frontendAddresses is every NodeBalancer's frontend address in the state served.
func (s *Server) frontendAddresses() []netip.Addr {
	m := s.mirror.Load()
	if m == nil {
		return nil
	}
	var out []netip.Addr
	for _, v := range m.View() {
		for _, ip := range [...]string{v.NodeBalancer.IPv4, v.NodeBalancer.IPv6} {
			if a, err := netip.ParseAddr(ip); err == nil {
				out = append(out, a)
			}
		}
	}
	return out
}

// Holding reports whether this host holds the frontend addresses now (false without
// Config.FrontendInterface).
func (s *Server) Holding() bool { return s.holder != nil && s.holder.Holding() }

// withHoldingMetric puts nodebalancer_frontend_holding (1 on the host holding the
// frontend addresses, 0 on the others) before the rest of /metrics: summed over the
// hosts it must be 1, an alert's rule.
func (s *Server) withHoldingMetric(next http.Handler) http.Handler {
	contentType := string(expfmt.NewFormat(expfmt.TypeTextPlain))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := 0
		if s.holder.Holding() {
			v = 1
		}
		w.Header().Set("Content-Type", contentType) // before the first write: next sets the same
		fmt.Fprintf(w, "# HELP nodebalancer_frontend_holding Whether this host holds the frontend addresses (--frontend-interface).\n"+
			"# TYPE nodebalancer_frontend_holding gauge\nnodebalancer_frontend_holding %d\n", v)
		next.ServeHTTP(w, r)
	})
}

// loadAPICert reads the API's certificate and key, when configured.
func (s *Server) loadAPICert() error {
	if s.cfg.APITLSCert == "" && s.cfg.APITLSKey == "" {
		return nil
	}
	if s.cfg.APITLSCert == "" || s.cfg.APITLSKey == "" {
		return fmt.Errorf("--api-tls-cert and --api-tls-key go together")
	}
	c, err := tls.LoadX509KeyPair(s.cfg.APITLSCert, s.cfg.APITLSKey)
	if err != nil {
		return fmt.Errorf("--api-tls-cert/--api-tls-key: %w", err)
	}
	s.apiCert.Store(&c)
	return nil
}

// reloadOnHUP reads the API's certificate again on every SIGHUP until ctx ends: new
// connections get the new one, open ones keep theirs. A pair that cannot be read
// leaves the old one in place; without TLS the signal is only logged.
func (s *Server) reloadOnHUP(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if s.apiCert.Load() == nil {
			s.cfg.Log.Info("SIGHUP: nothing to reload (no --api-tls-cert)")
			continue
		}
		if err := s.loadAPICert(); err != nil {
			s.cfg.Log.Error("SIGHUP: API certificate not reloaded; the old one stays", "err", err)
			continue
		}
		s.cfg.Log.Info("SIGHUP: API certificate reloaded", "cert", s.cfg.APITLSCert)
	}
}
