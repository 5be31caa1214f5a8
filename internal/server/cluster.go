package server

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/cluster"
)

// storeProblem is why the store cannot take requests now ("" when it can): the
// etcd store out of reach, or this host's heartbeat failing.
func (s *Server) storeProblem() string {
	if s.etcd == nil {
		return ""
	}
	if r := s.etcd.Unreachable(); r != "" {
		return "store: " + r + " (serving the last configuration; API reads and writes answer 503)"
	}
	if r := s.member.Problem(); r != "" {
		return "cluster heartbeat: " + r
	}
	return ""
}

// probeStore reads etcd's revision every second, so that /healthz learns that etcd
// went away, or came back, even when no request touches the store; and every
// Config.EtcdCompactEvery it compacts etcd's history up to the revision it read
// one period before (every host does: compacting twice is harmless).
func (s *Server) probeStore(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	every := s.cfg.EtcdCompactEvery
	next := time.Now().Add(every)
	var keep uint64 // compact up to here at the next period
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rev, err := s.etcd.Revision() // records the outcome for storeProblem
		if err != nil || every <= 0 || time.Now().Before(next) {
			continue
		}
		next = time.Now().Add(every)
		if keep > 0 {
			if err := s.etcd.Compact(keep); err != nil {
				s.cfg.Log.Warn("compact etcd's history", "revision", keep, "err", err)
			} else {
				s.cfg.Log.Debug("compacted etcd's history", "revision", keep)
			}
		}
		keep = rev
	}
}

// clusterResponse is the body of GET /cluster.
type clusterResponse struct {
	// HostID is the host that answered.
	HostID string `json:"host_id"`
	// Store is "bolt" or "etcd".
	Store string `json:"store"`
	// Revision is the revision of the store's latest change to the desired state:
	// a host whose applied_revision is at least this one serves the latest
	// configuration.
	Revision uint64 `json:"revision"`
	// FrontendHolder is the host holding the frontend addresses, with
	// --frontend-interface ("" while none does).
	FrontendHolder string         `json:"frontend_holder,omitempty"`
	Data           []cluster.Host `json:"data"`
	Results        int            `json:"results"`
}

// serveCluster answers GET /cluster (not a Linode endpoint): the hosts serving this
// store with their heartbeat age, applied revision and version. With the embedded
// store it lists this host alone.
func (s *Server) serveCluster(w http.ResponseWriter, r *http.Request) {
	resp := clusterResponse{HostID: s.cfg.HostID, Store: StoreBolt}
	var rev uint64
	var err error
	if s.etcd != nil {
		rev, err = s.etcd.StateRevision()
	} else {
		rev, err = s.db.Backend().Revision()
	}
	if err == nil && s.member != nil {
		resp.Store = StoreEtcd
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Etcd.Timeout+time.Second)
		resp.Data, err = s.member.Hosts(ctx)
		if err == nil && s.holder != nil {
			resp.FrontendHolder, err = s.holder.Current(ctx)
		}
		cancel()
	} else if err == nil {
		now := time.Now().UTC()
		resp.Data = []cluster.Host{{ID: s.cfg.HostID, Version: s.cfg.Version, API: s.ln.Addr().String(),
			Heartbeat: now, Applied: s.applied(), Self: true}}
	}
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"reason": "cannot read the cluster's hosts: " + err.Error()}}})
		return
	}
	resp.Revision, resp.Results = rev, len(resp.Data)
	json.NewEncoder(w).Encode(resp)
}
