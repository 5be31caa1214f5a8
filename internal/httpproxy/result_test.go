package httpproxy

import "testing"

// TestResultFailed pins the passive-failure rule, which lives only here: transport
// failures count, a client abort does not, and of the statuses only 5xx other than 501
// and 505 (the request was wrong, not the node broken, as Linode's rule has it).
func TestResultFailed(t *testing.T) {
	for code := 0; code < 700; code++ {
		want := code >= 500 && code < 600 && code != 501 && code != 505
		if got := (Result{Status: code}).Failed(); got != want {
			t.Errorf("status %d: Failed() = %v, want %v", code, got, want)
		}
	}
	for f, want := range map[Failure]bool{FailConnect: true, FailTimeout: true, FailProtocol: true, FailClientAbort: false} {
		for _, code := range []int{0, 200, 503} {
			if got := (Result{Failure: f, Status: code}).Failed(); got != want {
				t.Errorf("failure %d with status %d: Failed() = %v, want %v", f, code, got, want)
			}
		}
	}
}
