package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
)

// cutShortSetup: the default providers, a client key with a token
// limit; `chat` (alpha, then beta) rescues broken streams, the route
// `kept` (the same model) does not, and `claude-chat` (claude, then
// claude2) is the Anthropic pair; both are priced. The decision log
// goes to logFile.
func cutShortSetup(t *testing.T, logFile string) setup {
	t.Setenv("LLMROUTE_CUT_CLIENT", clientKey)
	return setup{
		Global: fmt.Sprintf("\tlog {\n\t\tlevel ERROR\n\t}\n\tlog decisions {\n\t\toutput file %s\n\t\tformat json\n\t\tinclude http.handlers.llm_route.decisions\n\t}", logFile),
		// (the default models, priced)
		Route: strings.NewReplacer(
			"upstream_name mock-chat", "upstream_name mock-chat\n\t\t\tprice 2 8",
			"upstream_name mock-claude", "upstream_name mock-claude\n\t\t\tprice 3 15",
		).Replace(defaultRoute) + `
		stream_idle_timeout 10m
		decision_log
		key team {
			secret {env.LLMROUTE_CUT_CLIENT}
			daily_tokens 1000000
		}
		route kept {
			models chat
			rescue off
		}
`,
		Mocks: defaultMocks(),
	}
}

// keyTokensUsed reads the room the key team has used of its daily
// tokens from the admin API.
func keyTokensUsed(t *testing.T) float64 {
	t.Helper()
	status, body := adminCall(t, http.MethodGet, "/llm_route/", "")
	if status != http.StatusOK {
		t.Fatalf("admin %d: %s", status, body)
	}
	var out struct {
		Handlers []struct {
			Keys []struct {
				Name  string
				Quota []struct {
					Limit string
					Used  float64
				}
			}
		}
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	for _, h := range out.Handlers {
		for _, k := range h.Keys {
			for _, q := range k.Quota {
				if k.Name == "team" && q.Limit == "daily_tokens" {
					return q.Used
				}
			}
		}
	}
	t.Fatalf("no daily_tokens of key team in %s", body)
	return 0
}

// A call whose answer reached the client and did not finish is charged
// what the client got: the prompt (its estimate, when the call reported
// none) and a token per delta sent, in the record, the cost and the
// key's limits. Before, a stream cut short before its usage was free,
// so a client that left before the end could get around its budget.
func TestCutShortIsCharged(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "decisions.log")
	start(t, cutShortSetup(t, logFile))

	charged := func(t *testing.T, id string, status, minOutput int) (in, out float64) {
		t.Helper()
		_, rec := decisionLog(t, logFile, "decision", id)
		in, _ = rec["input_tokens"].(float64)
		out, _ = rec["output_tokens"].(float64)
		cost, _ := rec["cost_usd"].(float64)
		if fmt.Sprint(rec["status"]) != fmt.Sprint(status) || in <= 0 || out < float64(minOutput) || cost <= 0 {
			t.Errorf("record: status %v, %v in, %v out, $%v; want status %d, the prompt, at least %d out and a cost",
				rec["status"], rec["input_tokens"], rec["output_tokens"], rec["cost_usd"], status, minOutput)
		}
		return in, out
	}

	t.Run("the client leaves", func(t *testing.T) {
		before := keyTokensUsed(t)
		ctx, cancel := context.WithCancel(ctxT(t))
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, gatewayURL+"/v1/chat/completions",
			strings.NewReader(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"`+prompt+`"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+clientKey)
		req.Header.Set("X-Mock-Fault", "alpha:stall,after=3")
		resp, err := newHTTPClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		id := resp.Header.Get("X-LLM-Request-Id")
		// Three content chunks (the mock stalls after them), then leave.
		sc, deltas := bufio.NewScanner(resp.Body), 0
		for deltas < 3 && sc.Scan() {
			if strings.Contains(sc.Text(), `"content":"`) && !strings.Contains(sc.Text(), `"content":""`) {
				deltas++
			}
		}
		if deltas < 3 {
			t.Fatalf("%d content chunks before the stream ended: %v", deltas, sc.Err())
		}
		cancel()
		resp.Body.Close()
		in, out := charged(t, id, 200, 3) // (the status the client got)
		if used := keyTokensUsed(t) - before; used < in+out {
			t.Errorf("the key's daily_tokens went up by %v, want the %v+%v charged", used, in, out)
		}
	})

	t.Run("a break with rescue off", func(t *testing.T) {
		before := keyTokensUsed(t)
		var hr *http.Response
		s := oaAccumulate(t, oaClient(t), chatParams("kept", prompt), faultHeader("alpha:cut,after=2"))
		if s.Err == nil {
			t.Fatal("a broken stream on a route without rescue ended without an error")
		}
		hr = s.Resp
		in, out := charged(t, hr.Header.Get("X-LLM-Request-Id"), 200, 2)
		if used := keyTokensUsed(t) - before; used < in+out {
			t.Errorf("the key's daily_tokens went up by %v, want the %v+%v charged", used, in, out)
		}
	})

	// An Anthropic call reports its prompt at the start of its stream:
	// a rescue counts that call once, not again inside the call that
	// finished the answer.
	t.Run("a rescue counts each call once", func(t *testing.T) {
		p := chatParams("claude-chat", prompt)
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := oaAccumulate(t, oaClient(t), p, faultHeader("claude:cut,after=2"))
		if s.Err != nil || s.Usage == nil {
			t.Fatalf("the stream was not rescued (%v) or has no usage", s.Err)
		}
		in, out := charged(t, s.Resp.Header.Get("X-LLM-Request-Id"), 200, 2)
		if int64(in) != s.Usage.PromptTokens || int64(out) != s.Usage.CompletionTokens {
			t.Errorf("record %v in, %v out; the client was told %d and %d, the sum of both calls",
				in, out, s.Usage.PromptTokens, s.Usage.CompletionTokens)
		}
	})
}
