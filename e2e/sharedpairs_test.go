package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"

	"github.com/caddy-llm-route/llmroute/internal/redistest"
)

// Two Caddy processes sharing one Redis share their cooldowns: a 429
// with Retry-After on gateway 1's alpha makes gateway 2 skip alpha once
// it polled, though alpha would answer it; a success on gateway 1's
// alpha (tried as the last resort of a model it alone serves) makes
// gateway 2 route to alpha again. Nothing but Redis connects the two
// processes' pair state.
func TestFleetSharesCooldowns(t *testing.T) {
	srv := redistest.Start(t)
	bin := caddyBinary(t)
	alphaPort, betaPort := freePort(t), freePort(t)
	gateways := make([]openai.Client, 2)
	for i := range gateways {
		gw := freePort(t)
		gateways[i] = oaClient(t, oaoption.WithBaseURL(fmt.Sprintf("http://127.0.0.1:%d/v1/", gw)))
		mocks := ""
		if i == 0 {
			mocks = fmt.Sprintf("http://127.0.0.1:%d {\n\tllm_mock {\n\t\tname alpha\n\t\ttext %s\n\t}\n}\n", alphaPort, alphaText) +
				fmt.Sprintf("http://127.0.0.1:%d {\n\tllm_mock {\n\t\tname beta\n\t\ttext %s\n\t}\n}\n", betaPort, betaText)
		}
		runCaddy(t, bin, fmt.Sprintf(`{
	admin off
	auto_https off
	skip_install_trust
	log {
		level ERROR
	}
}
http://127.0.0.1:%d {
	llm_route {
		state redis %s {
			sync_interval 100ms
			timeout 2s
		}
		fail_threshold 1000
		forward_headers X-Mock-Fault
		provider alpha http://127.0.0.1:%d
		provider beta http://127.0.0.1:%d
		model chat alpha beta {
			upstream_name mock-chat
		}
		model direct alpha {
			upstream_name mock-chat
		}
	}
}
%s`, gw, srv.URL(), alphaPort, betaPort, mocks))
	}
	ask := func(gw int, model string, opts ...oaoption.RequestOption) routed {
		t.Helper()
		var hr *http.Response
		if _, err := gateways[gw].Chat.Completions.New(ctxT(t), chatParams(model, prompt), append(opts, oaoption.WithResponseInto(&hr))...); err != nil {
			t.Fatalf("gateway %d, %s: %v", gw+1, model, err)
		}
		return routeOf(hr.Header)
	}
	// until sends requests for chat to gateway 2 until one is routed so.
	until := func(what, provider string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			got := ask(1, "chat")
			if got.Provider == provider && got.Attempts == 1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("gateway 2 after 60s: %s, want %s with one attempt (%s)", got, provider, what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	if got := ask(1, "chat"); got.Provider != "alpha" || got.Attempts != 1 {
		t.Fatalf("gateway 2 before any fault: %s, want alpha with one attempt", got)
	}
	if got := ask(0, "chat", faultHeader("alpha:status,code=429,retry_after=300")); got.Provider != "beta" || got.Attempts != 2 {
		t.Fatalf("gateway 1 with alpha answering 429: %s, want beta after two attempts", got)
	}
	until("alpha's cooldown from gateway 1 does not reach it", "beta")

	if got := ask(0, "direct"); got.Provider != "alpha" {
		t.Fatalf("gateway 1, model direct: %s, want alpha (the last resort)", got)
	}
	until("alpha's success on gateway 1 does not close the cooldown there", "alpha")
}
