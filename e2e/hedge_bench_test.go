package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"

	"github.com/caddy-llm-route/llmroute/mock"
)

// BenchmarkHedgeTTFT measures the time to first token of streamed
// answers through a route of two providers whose time to first token
// has a heavy tail (50ms, and 10× that for 5% of requests), without
// hedging and with it (after 80ms, or after the live p95; budget 10%). It reports p50 and p99 TTFT
// and the extra upstream calls as a share of requests. Each iteration
// runs hedgeBenchRequests requests per arm, one at a time; run it with
// -benchtime 1x:
//
//	go test -run '^$' -bench BenchmarkHedgeTTFT -benchtime 1x ./e2e/
func BenchmarkHedgeTTFT(b *testing.B) {
	const hedgeBenchRequests = 600
	for _, arm := range []struct{ name, route string }{{"plain", "plain"}, {"hedge_80ms", "hedged"}, {"hedge_p95", "hedged-p95"}} {
		b.Run(arm.name, func(b *testing.B) {
			s := setup{
				Mocks: []mockSite{
					{Port: portAlpha, Name: "tail-a", Text: alphaText, Lines: []string{"ttft 50ms", "ttft_tail 0.05 10"}},
					{Port: portBeta, Name: "tail-b", Text: betaText, Lines: []string{"ttft 50ms", "ttft_tail 0.05 10"}},
				},
				Route: fmt.Sprintf(`
		first_byte_timeout 30s
		provider tail-a http://127.0.0.1:%d
		provider tail-b http://127.0.0.1:%d
		model a tail-a
		model b tail-b
		route plain {
			models a b
		}
		route hedged {
			models a b
			hedge 80ms budget 0.1
		}
		route hedged-p95 {
			models a b
			hedge p95 budget 0.1
		}
`, portAlpha, portBeta),
			}
			caddytest.NewTester(b).WithDefaultOverrides(caddytest.Config{LoadRequestTimeout: 30 * time.Second}).
				InitServer(s.caddyfile(), "caddyfile")
			time.Sleep(30 * time.Millisecond) // (as start: the old listeners close)
			c := openai.NewClient(oaoption.WithBaseURL(gatewayURL+"/v1/"), oaoption.WithAPIKey(clientKey), oaoption.WithMaxRetries(0))
			for b.Loop() {
				var ttft []time.Duration
				servedBefore := mock.Served("tail-a") + mock.Served("tail-b")
				for range hedgeBenchRequests {
					t0 := time.Now()
					stream := c.Chat.Completions.NewStreaming(b.Context(), openai.ChatCompletionNewParams{
						Model: arm.route, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
					first := time.Duration(0)
					for stream.Next() {
						if first == 0 && len(stream.Current().Choices) > 0 && stream.Current().Choices[0].Delta.Content != "" {
							first = time.Since(t0)
						}
					}
					if err := stream.Err(); err != nil || first == 0 {
						b.Fatalf("stream: %v (first token after %v)", err, first)
					}
					stream.Close()
					ttft = append(ttft, first)
				}
				extra := mock.Served("tail-a") + mock.Served("tail-b") - servedBefore - hedgeBenchRequests
				slices.Sort(ttft)
				b.ReportMetric(float64(ttft[len(ttft)/2].Microseconds())/1000, "p50_ms")
				b.ReportMetric(float64(ttft[len(ttft)*99/100].Microseconds())/1000, "p99_ms")
				b.ReportMetric(100*float64(extra)/hedgeBenchRequests, "extra_calls_%")
			}
		})
	}
}
