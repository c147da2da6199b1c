package llmroute

import (
	"testing"
	"time"
)

// The dashboard's errors of a model at a provider are the answers that
// failed: a client that went away (499) is no error of the provider's.
func TestDashboardErrorsLeaveOutClientsGone(t *testing.T) {
	h := mustLoadHandler(t, `{
		"providers": [{"name": "dash-p", "proxy": `+proxyTo("127.0.0.1:1")+`}],
		"models": [{"name": "dash-m", "providers": ["dash-p"]}]
	}`)
	t.Cleanup(func() { _ = h.Cleanup() })
	c := newCandidate(h.models["dash-m"], h.models["dash-m"].serving[0], nil)
	for _, st := range []struct {
		status int
		cause  cause
	}{{200, causeOK}, {499, causeGone}, {502, cause5xx}, {499, causeGone}} {
		now := time.Now()
		rec := &record{h: h, start: now, read: now, decided: now, status: st.status, p: &plan{route: "dash-m"},
			attempts: []attemptRecord{{c: &c, cause: st.cause}}}
		observe(rec, now)
	}
	for _, m := range modelTotals() {
		if m.Model != "dash-m" || m.Provider != "dash-p" {
			continue
		}
		if m.Requests != 4 || m.Errors != 1 {
			t.Errorf("requests %v errors %v, want 4 and 1 (the 502)", m.Requests, m.Errors)
		}
		return
	}
	t.Fatal("no totals of dash-m at dash-p")
}
