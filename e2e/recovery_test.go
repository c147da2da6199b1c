package e2e

import (
	"net/http"
	"testing"
	"time"

	oaoption "github.com/openai/openai-go/v3/option"

	"github.com/caddy-llm-route/llmroute/upstreams"
)

// A provider down for 5 s, then healthy, under a request every 500 ms:
// the fallback serves every request while it is down, and once it is
// back a probe (half-open) finds it well long before the 30 s cooldown
// ends, after which traffic ramps back to it.
func TestFastRecovery(t *testing.T) {
	start(t, withDefaults(`
		fail_threshold 1
		cooldown 30s
		probe_interval 1s
		ramp 2s`))
	c := oaClient(t)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	send := func(fault string) string {
		t.Helper()
		<-tick.C
		opts := []oaoption.RequestOption{}
		var hr *http.Response
		opts = append(opts, oaoption.WithResponseInto(&hr))
		if fault != "" {
			opts = append(opts, faultHeader(fault))
		}
		if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), opts...); err != nil {
			t.Fatalf("a request failed: %v", err)
		}
		return hr.Header.Get("X-LLM-Provider")
	}

	states := map[string]bool{}
	for down := time.Now(); time.Since(down) < 5*time.Second; {
		if p := send("alpha:status,code=503"); p != "beta" {
			t.Fatalf("served by %s while alpha is down", p)
		}
		states[pairInfo(t, "alpha", "mock-chat").State] = true
	}
	during := pairInfo(t, "alpha", "mock-chat")
	if during.Probes < 2 || during.Recoveries != 0 || !states[upstreams.StateOpen] {
		t.Fatalf("while down: %d probes, %d recoveries, states %v; want probes through the cooldown", during.Probes, during.Recoveries, states)
	}

	recovered := time.Now()
	var back time.Duration
	for i := 0; back == 0; i++ {
		if i == 20 {
			t.Fatalf("alpha does not serve again 10s after its recovery")
		}
		if send("") == "alpha" {
			back = time.Since(recovered)
		}
	}
	t.Logf("alpha served again %v after its recovery (cooldown 30s, probe_interval 1s)", back)
	after := pairInfo(t, "alpha", "mock-chat")
	if after.Recoveries != 1 || after.Probes <= during.Probes {
		t.Errorf("after recovery: %d probes (%d before), %d recoveries; want a successful probe", after.Probes, during.Probes, after.Recoveries)
	}
	// The ramp ends and alpha, the first choice, takes all the traffic.
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatalf("alpha's ramp does not end: state %s", pairInfo(t, "alpha", "mock-chat").State)
		}
		if send("") == "alpha" && pairInfo(t, "alpha", "mock-chat").State == upstreams.StateClosed {
			break
		}
	}
}
