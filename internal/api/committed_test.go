package api

import (
	"fmt"
	"net/http"
	"testing"
)

// TestCommittedRunsAfterEachSuccessfulWrite: Options.Committed is called once per
// write that succeeded, after its transaction committed (the store's revision already
// counts it), and never for a read or a refused write.
func TestCommittedRunsAfterEachSuccessfulWrite(t *testing.T) {
	var calls int
	var revAtCall uint64
	var e *env
	e = newEnv(t, func(o *Options) {
		o.Committed = func() {
			calls++
			revAtCall, _ = e.db.Backend().Revision()
		}
	})
	nb := e.must("POST", "/v4/nodebalancers", `{"region":"local","label":"committed","configs":[{"port":80,"nodes":[{"address":"127.0.2.1:80","label":"node-1"}]}]}`)
	rev, _ := e.db.Backend().Revision()
	if calls != 1 || revAtCall != rev {
		t.Fatalf("after a create: %d calls, revision %d at the call, want 1 call at revision %d", calls, revAtCall, rev)
	}
	path := fmt.Sprintf("/v4/nodebalancers/%d/configs", int(nb["id"].(float64)))
	cfgs := e.must("GET", path, "")
	cfg := cfgs["data"].([]any)[0].(map[string]any)
	nodes := e.must("GET", fmt.Sprintf("%s/%d/nodes", path, int(cfg["id"].(float64))), "")
	node := nodes["data"].([]any)[0].(map[string]any)
	nodePath := fmt.Sprintf("%s/%d/nodes/%d", path, int(cfg["id"].(float64)), int(node["id"].(float64)))
	if calls != 1 {
		t.Fatalf("reads made %d calls in all, want the create's 1", calls)
	}
	if r := e.do("PUT", nodePath, `{"mode":"sideways"}`); r.status != http.StatusBadRequest || calls != 1 {
		t.Fatalf("a refused write: status %d, %d calls, want 400 and still 1", r.status, calls)
	}
	e.must("PUT", nodePath, `{"mode":"drain"}`)
	rev, _ = e.db.Backend().Revision()
	if calls != 2 || revAtCall != rev {
		t.Fatalf("after a mode change: %d calls, revision %d at the call, want 2 calls, the last at revision %d", calls, revAtCall, rev)
	}
}
