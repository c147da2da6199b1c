package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
)

// The strategy tests run their own mocks on the suite's reserved ports
// (alpha, beta and claude ports, served as OpenAI-format mocks here) and
// name each provider like the mock behind it, so that expectRoute's
// X-Mock-Name check holds.

// answer is one routed, successful chat completion.
type answer struct {
	hr   *http.Response
	resp *openai.ChatCompletion
}

func (a answer) route() routed    { return routeOf(a.hr.Header) }
func (a answer) reason() string   { return a.hr.Header.Get("X-LLM-Route-Reason") }
func (a answer) provider() string { return a.hr.Header.Get("X-LLM-Provider") }
func (a answer) text() string     { return a.resp.Choices[0].Message.Content }

// ask sends one chat completion and fails the test if it does not
// succeed.
func ask(t *testing.T, c openai.Client, p openai.ChatCompletionNewParams, opts ...oaoption.RequestOption) answer {
	t.Helper()
	var hr *http.Response
	resp, err := c.Chat.Completions.New(ctxT(t), p, append(opts, oaoption.WithResponseInto(&hr))...)
	if err != nil {
		t.Fatalf("%s: %v", p.Model, err)
	}
	if len(resp.Choices) == 0 {
		t.Fatalf("%s: no choices in %s", p.Model, resp.RawJSON())
	}
	return answer{hr: hr, resp: resp}
}

// expectPick checks the routing headers (see expectRoute) and the
// decision's reason.
func expectPick(t *testing.T, a answer, model, provider, route, reason string, attempts int) {
	t.Helper()
	expectRoute(t, a.hr, model, provider, route, attempts)
	if got := a.reason(); got != reason {
		t.Errorf("X-LLM-Route-Reason %q, want %q (%s)", got, reason, a.route())
	}
}

// expectRefused checks that err is a 400 no_candidate answered by the
// gateway itself.
func expectRefused(t *testing.T, err error, what string) {
	t.Helper()
	var oerr *openai.Error
	if !asError(err, &oerr) {
		t.Errorf("%s: got %v, want a 400 no_candidate", what, err)
		return
	}
	if oerr.StatusCode != http.StatusBadRequest || oerr.Code != "no_candidate" || oerr.Message == "" {
		t.Errorf("%s: status %d code %q message %q, want 400 no_candidate", what, oerr.StatusCode, oerr.Code, oerr.Message)
	}
	if mock := oerr.Response.Header.Get("X-Mock-Name"); mock != "" {
		t.Errorf("%s: a provider (%s) was called", what, mock)
	}
}

// pairStats are the live stats of a provider and upstream model.
func pairStats(t *testing.T, provider, model string) string {
	s := pairInfo(t, provider, model).Stats
	return fmt.Sprintf("%s: samples=%d latency=%.1fms ttft=%.1fms tps=%.0f", provider, s.Samples, s.LatencyMs, s.TTFTMs, s.TokensPerSecond)
}

// Three priced models, one per mock and provider of the same name.
const (
	cheapText   = "Cheap answer in plain words."
	midText     = "Middle answer with some more care."
	premiumText = "Premium answer crafted with great care and detail."
)

// trioSetup serves the models cheap (0.1/0.2 USD per 1M tokens, quality
// 0.5), mid (1/2, 0.7) and premium (5/15, 0.95) from mocks of the same
// names, with the given time to first token each, plus extra llm_route
// lines.
func trioSetup(ttftCheap, ttftMid, ttftPremium, route string) setup {
	mock := func(port int, name, text, ttft string) mockSite {
		m := mockSite{Port: port, Name: name, Text: text}
		if ttft != "" {
			m.Lines = []string{"ttft " + ttft}
		}
		return m
	}
	return setup{
		Mocks: []mockSite{
			mock(portAlpha, "cheap", cheapText, ttftCheap),
			mock(portBeta, "mid", midText, ttftMid),
			mock(portClaude, "premium", premiumText, ttftPremium),
		},
		Route: fmt.Sprintf(`
		provider cheap http://127.0.0.1:%d
		provider mid http://127.0.0.1:%d
		provider premium http://127.0.0.1:%d
		model cheap cheap {
			price 0.1 0.2
			quality 0.5
		}
		model mid mid {
			price 1 2
			quality 0.7
		}
		model premium premium {
			price 5 15
			quality 0.95
		}
%s`, portAlpha, portBeta, portClaude, route),
	}
}

// The built-in aliases over all registered models. mid is the fastest
// model here, so that fastest and cheapest disagree.
//
// auto (balanced, quality 0.5, cost 0.3, latency 0.2): the prompt is a
// dozen tokens and 256 output tokens are assumed, so the estimated costs
// are about 52, 524 and 3900 µUSD, scaled to 0, 0.12 and 1. Cold, every
// latency counts 0.5: cheap 0.25-0-0.1 = 0.15, mid 0.35-0.037-0.1 =
// 0.21, premium 0.475-0.3-0.1 = 0.075. Measured (mid fastest: 0, cheap
// about 0.5, premium 1): cheap 0.15, mid 0.31, premium -0.025. mid
// wins either way.
func TestAliases(t *testing.T) {
	start(t, trioSetup("40ms", "", "80ms", ""))
	c := oaClient(t)
	const q = "Hello, which model are you?"

	t.Run("auto is balanced", func(t *testing.T) {
		a := ask(t, c, chatParams("auto", q))
		expectPick(t, a, "mid", "mid", "auto", "balanced", 1)
		if a.text() != midText || a.resp.Model != "mid" {
			t.Errorf("content %q from model %q", a.text(), a.resp.Model)
		}
	})

	t.Run("cheapest", func(t *testing.T) {
		a := ask(t, c, chatParams("cheapest", q))
		expectPick(t, a, "cheap", "cheap", "cheapest", "cheapest", 1)
		if a.text() != cheapText {
			t.Errorf("content %q", a.text())
		}
	})

	t.Run("best_quality", func(t *testing.T) {
		a := ask(t, c, chatParams("best_quality", q))
		expectPick(t, a, "premium", "premium", "best_quality", "best_quality", 1)
		if a.text() != premiumText {
			t.Errorf("content %q", a.text())
		}
	})

	t.Run("fastest after warm-up", func(t *testing.T) {
		// Cold models go first until measured (3 samples by default),
		// so asking fastest itself warms every model up.
		warm := func() bool {
			for _, name := range []string{"cheap", "mid", "premium"} {
				if pairInfo(t, name, name).Stats.Samples < 3 {
					return false
				}
			}
			return true
		}
		for i := 0; !warm(); i++ {
			if i == 20 {
				t.Fatalf("still cold after %d requests: %s; %s; %s", i,
					pairStats(t, "cheap", "cheap"), pairStats(t, "mid", "mid"), pairStats(t, "premium", "premium"))
			}
			a := ask(t, c, chatParams("fastest", q))
			if r := a.route(); r.Route != "fastest" || r.Attempts != 1 {
				t.Errorf("warm-up %d: %s", i, r)
			}
		}
		t.Logf("%s; %s; %s", pairStats(t, "cheap", "cheap"), pairStats(t, "mid", "mid"), pairStats(t, "premium", "premium"))
		// explore (5% by default) may put another model first; such a
		// decision says so in its reason.
		picked := 0
		for i := 0; i < 8; i++ {
			a := ask(t, c, chatParams("fastest", q))
			switch a.reason() {
			case "lowest_latency":
				picked++
				expectPick(t, a, "mid", "mid", "fastest", "lowest_latency", 1)
			case "lowest_latency explore":
			default:
				t.Errorf("reason %q", a.reason())
			}
		}
		if picked < 4 {
			t.Errorf("only %d of 8 decisions were not exploring", picked)
		}
	})

	t.Run("auto once measured", func(t *testing.T) {
		a := ask(t, c, chatParams("auto", q))
		expectPick(t, a, "mid", "mid", "auto", "balanced", 1)
	})

	t.Run("aliases stream too", func(t *testing.T) {
		s := chatStream(t, c, chatParams("best_quality", q))
		if s.Err != nil {
			t.Fatal(s.Err)
		}
		expectRoute(t, s.Resp, "premium", "premium", "best_quality", 1)
		if s.Text != premiumText {
			t.Errorf("streamed %q", s.Text)
		}
	})

	t.Run("an operator's route or model overrides the alias", func(t *testing.T) {
		start(t, trioSetup("", "", "", `
		route cheapest {
			models premium mid
		}
		model fastest premium
`))
		c := oaClient(t)
		a := ask(t, c, chatParams("cheapest", q))
		expectPick(t, a, "premium", "premium", "cheapest", "fallback", 1)
		a = ask(t, c, chatParams("fastest", q))
		expectPick(t, a, "fastest", "premium", "fastest", "direct", 1)
		if a.resp.Model != "fastest" {
			t.Errorf("the upstream got model %q, want fastest", a.resp.Model)
		}
		// the other aliases remain, and the unpriced model "fastest"
		// joins them without winning
		a = ask(t, c, chatParams("best_quality", q))
		expectPick(t, a, "premium", "premium", "best_quality", "best_quality", 1)
		a = ask(t, c, chatParams("auto", q))
		expectPick(t, a, "mid", "mid", "auto", "balanced", 1)
	})
}

// latencySetup serves the model pool from the mocks b (300ms) and a (the
// given latency), b first in the configured order; the route quick
// orders them by lowest_latency.
func latencySetup(aLatency string) setup {
	return setup{
		Mocks: []mockSite{
			{Port: portAlpha, Name: "a", Text: "A answers.", Lines: []string{"latency " + aLatency}},
			{Port: portBeta, Name: "b", Text: "B answers.", Lines: []string{"latency 300ms"}},
		},
		Route: fmt.Sprintf(`
		first_byte_timeout 10s
		provider a http://127.0.0.1:%d
		provider b http://127.0.0.1:%d
		model pool b a {
			upstream_name pool-up
		}
		route quick {
			models pool
			strategy lowest_latency {
				min_samples 2
				explore 0
			}
		}
`, portAlpha, portBeta),
	}
}

func TestLowestLatencyShiftsTraffic(t *testing.T) {
	start(t, latencySetup("10ms"))
	c := oaClient(t)
	const q = "Quick question about latency."

	var seq []string
	for range 12 {
		a := ask(t, c, chatParams("quick", q))
		if r := a.route(); r.Attempts != 1 || r.Model != "pool" || r.Route != "quick" || a.reason() != "lowest_latency" {
			t.Errorf("%s reason %q", r, a.reason())
		}
		seq = append(seq, a.provider())
	}
	// cold pairs first, in configured order, until each has 2 samples;
	// then the fast one
	if got, want := strings.Join(seq, " "), "b b a a a a a a a a a a"; got != want {
		t.Errorf("providers while a is fast:\n got  %s\n want %s", got, want)
	}
	t.Logf("%s; %s", pairStats(t, "a", "pool-up"), pairStats(t, "b", "pool-up"))

	// a slows down: a new configuration; the stats survive the reload
	loadConfig(t, latencySetup("1s"))
	if s := pairInfo(t, "a", "pool-up").Stats; s.Samples < 10 || s.LatencyMs <= 0 || s.LatencyMs > 150 {
		t.Fatalf("a's stats after the reload: %s", pairStats(t, "a", "pool-up"))
	}
	c = oaClient(t)
	seq = seq[:0]
	for range 10 {
		a := ask(t, c, chatParams("quick", q))
		seq = append(seq, a.provider())
	}
	t.Logf("after a slowed down: %s; %s; %s", strings.Join(seq, " "), pairStats(t, "a", "pool-up"), pairStats(t, "b", "pool-up"))
	if seq[0] != "a" {
		t.Errorf("first request after the reload went to %s: the measurements did not survive", seq[0])
	}
	// a's average (about 10ms) passes b's 300ms after two slow samples
	// (alpha 0.2: 10 → 208 → 366). The latencies are far apart, so that
	// a loaded machine's delays (tens of ms) do not change the order.
	slow := 0
	for _, p := range seq {
		if p == "a" {
			slow++
		}
	}
	if slow > 3 {
		t.Errorf("a still got %d of 10 requests after slowing down: %s", slow, strings.Join(seq, " "))
	}
	if got := strings.Join(seq[5:], " "); got != "b b b b b" {
		t.Errorf("the last 5 requests went to %s, want b only", got)
	}
}

func TestHighestThroughput(t *testing.T) {
	const genText = "one two three four five six"
	start(t, setup{
		Mocks: []mockSite{
			{Port: portAlpha, Name: "slowgen", Text: genText, Lines: []string{"tokens_per_second 40"}},
			{Port: portBeta, Name: "fastgen", Text: genText, Lines: []string{"tokens_per_second 400"}},
		},
		Route: fmt.Sprintf(`
		provider slowgen http://127.0.0.1:%d
		provider fastgen http://127.0.0.1:%d
		model gen slowgen fastgen {
			upstream_name gen-up
		}
		route prolific {
			models gen
			strategy highest_throughput {
				min_samples 2
				explore 0
			}
		}
`, portAlpha, portBeta),
	})
	c := oaClient(t)
	p := chatParams("prolific", "Count to six, please.")
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}

	var seq []string
	for i := range 8 {
		s := chatStream(t, c, p)
		if s.Err != nil {
			t.Fatalf("stream %d: %v", i, s.Err)
		}
		if s.Text != genText || s.Usage[1] != 6 {
			t.Errorf("stream %d: %q, usage %v", i, s.Text, s.Usage)
		}
		if r := s.Resp.Header.Get("X-LLM-Route-Reason"); r != "highest_throughput" {
			t.Errorf("stream %d: reason %q", i, r)
		}
		seq = append(seq, s.Resp.Header.Get("X-LLM-Provider"))
	}
	t.Logf("%s; %s", pairStats(t, "slowgen", "gen-up"), pairStats(t, "fastgen", "gen-up"))
	if got, want := strings.Join(seq, " "), "slowgen slowgen fastgen fastgen fastgen fastgen fastgen fastgen"; got != want {
		t.Errorf("providers:\n got  %s\n want %s", got, want)
	}
	slow := pairInfo(t, "slowgen", "gen-up").Stats.TokensPerSecond
	fast := pairInfo(t, "fastgen", "gen-up").Stats.TokensPerSecond
	if !(slow > 0 && fast > 3*slow) {
		t.Errorf("measured %.0f tokens/s for slowgen and %.0f for fastgen", slow, fast)
	}
}

// Texts of the small and large mocks.
const (
	smallText = "Small model says hello back to you quickly."
	largeText = "Large model writes a long and careful answer here."
)

// tieredSetup serves the models small and large from mocks of the same
// names and the model recorder from the test's own upstream, with a
// rules route (assistant) and a difficulty route (tiered).
func tieredSetup(recURL string) setup {
	return setup{
		Mocks: []mockSite{
			{Port: portAlpha, Name: "small", Text: smallText},
			{Port: portBeta, Name: "large", Text: largeText},
		},
		Route: fmt.Sprintf(`
		provider small http://127.0.0.1:%d
		provider large http://127.0.0.1:%d
		provider recorder %s
		model small small
		model large large
		model recorder recorder
		route assistant {
			models large small recorder
			strategy rules {
				rule greeting {
					keywords hello hi 你好
					max_tokens 20
					models small
					set temperature 0.3
					set max_tokens 3
				}
				rule capture {
					keywords capture
					models recorder
					set temperature 0.3
					set max_tokens 3
				}
				default large
			}
		}
		route tiered {
			models small large
			strategy difficulty {
				tier 0 small
				tier 0.4 large
			}
		}
`, portAlpha, portBeta, recURL),
	}
}

// The rules' keywords match substrings: the prompts that must not greet
// avoid "hi" (as in "this") on purpose.
func TestRulesStrategy(t *testing.T) {
	srv, rec := newRecorder(t, false)
	start(t, tieredSetup(srv.URL))
	c := oaClient(t)

	t.Run("greeting goes to small with the rule's params", func(t *testing.T) {
		p := chatParams("assistant", "Hello there, how are you?")
		p.MaxTokens = openai.Int(100) // the rule's max_tokens wins
		a := ask(t, c, p)
		expectPick(t, a, "small", "small", "assistant", "rule=greeting", 1)
		if got, want := a.text(), words(smallText, 3); got != want {
			t.Errorf("content %q, want the 3 tokens %q (set max_tokens 3)", got, want)
		}
		if a.resp.Choices[0].FinishReason != "length" || a.resp.Usage.CompletionTokens != 3 {
			t.Errorf("finish %q, completion tokens %d, want length and 3", a.resp.Choices[0].FinishReason, a.resp.Usage.CompletionTokens)
		}
	})

	t.Run("Chinese greeting", func(t *testing.T) {
		a := ask(t, c, chatParams("assistant", "你好！今天天气怎么样？"))
		expectPick(t, a, "small", "small", "assistant", "rule=greeting", 1)
		if got, want := a.text(), words(smallText, 3); got != want || a.resp.Usage.CompletionTokens != 3 {
			t.Errorf("content %q (%d tokens), want %q", got, a.resp.Usage.CompletionTokens, want)
		}
	})

	t.Run("greeting streamed", func(t *testing.T) {
		s := chatStream(t, c, chatParams("assistant", "hi"))
		if s.Err != nil {
			t.Fatal(s.Err)
		}
		expectRoute(t, s.Resp, "small", "small", "assistant", 1)
		if want := words(smallText, 3); s.Text != want || s.Finish != "length" {
			t.Errorf("streamed %q (%s), want %q (length)", s.Text, s.Finish, want)
		}
	})

	t.Run("no rule matches: the default", func(t *testing.T) {
		a := ask(t, c, chatParams("assistant", "Explain quantum tunneling in detail."))
		expectPick(t, a, "large", "large", "assistant", "rule=default", 1)
		if a.text() != largeText || a.resp.Choices[0].FinishReason != "stop" {
			t.Errorf("content %q (%s), want the whole text: the default sets no params", a.text(), a.resp.Choices[0].FinishReason)
		}
	})

	t.Run("a greeting above max_tokens is no greeting", func(t *testing.T) {
		long := "Hello. " + strings.Repeat("Please review the attached quarterly report and summarize every open question. ", 4)
		a := ask(t, c, chatParams("assistant", long))
		expectPick(t, a, "large", "large", "assistant", "rule=default", 1)
	})

	t.Run("the rule's params reach the upstream body", func(t *testing.T) {
		p := chatParams("assistant", "Capture the request body, please.")
		p.Temperature = openai.Float(0.9)
		p.MaxTokens = openai.Int(100)
		before := rec.count()
		a := ask(t, c, p)
		expectPick(t, a, "recorder", "recorder", "assistant", "rule=capture", 1)
		if rec.count() != before+1 {
			t.Fatalf("the recorder got %d requests, want 1", rec.count()-before)
		}
		body := rec.last(t).Body
		for path, want := range map[string]string{"temperature": "0.3", "max_tokens": "3", "model": "recorder"} {
			if got := jsonPath(body, path); got != want {
				t.Errorf("upstream body %s = %q, want %q (body %s)", path, got, want, body)
			}
		}
	})
}

func TestDifficultyStrategy(t *testing.T) {
	srv, _ := newRecorder(t, false)
	start(t, tieredSetup(srv.URL))
	c := oaClient(t)

	// score parses "difficulty=<score> tier=<n>".
	score := func(t *testing.T, reason string) (float64, string) {
		t.Helper()
		rest, ok := strings.CutPrefix(reason, "difficulty=")
		num, tier, ok2 := strings.Cut(rest, " tier=")
		v, err := strconv.ParseFloat(num, 64)
		if !ok || !ok2 || err != nil {
			t.Fatalf("reason %q, want difficulty=<score> tier=<n>", reason)
		}
		return v, tier
	}

	t.Run("easy goes to small", func(t *testing.T) {
		a := ask(t, c, chatParams("tiered", "Hello! How are you today?"))
		expectRoute(t, a.hr, "small", "small", "tiered", 1)
		if v, tier := score(t, a.reason()); v >= 0.4 || tier != "0" {
			t.Errorf("reason %q, want a score below 0.4 in tier 0", a.reason())
		}
		if a.text() != smallText {
			t.Errorf("content %q", a.text())
		}
	})

	t.Run("hard goes to large", func(t *testing.T) {
		hard := `Prove that the algorithm below terminates and derive its worst-case time complexity step by step. Requirements:
1. The proof must be rigorous, by induction on n, and you must state every invariant.
2. Analyze why the amortized cost is O(log n) and compare it with a balanced binary search tree.
3. Write the implementation in Go, with unit tests; it must handle concurrent access without data races.
4. Output a JSON object with the fields "proof", "complexity" and "code"; the code must be in a fenced code block.
5. Explain the trade-offs under the constraint that memory is at most 64 MiB, and optimize the hot path.
` + "```go\nfunc splay(t *node, key int) *node {\n\tfor t != nil && t.key != key {\n\t\tt = rotate(t, key)\n\t}\n\treturn t\n}\n```\n" +
			`Finally, derive a lower bound for any comparison-based algorithm solving the same problem with an adversary argument.`
		a := ask(t, c, chatParams("tiered", hard))
		expectRoute(t, a.hr, "large", "large", "tiered", 1)
		if v, tier := score(t, a.reason()); v < 0.4 || tier != "1" {
			t.Errorf("reason %q, want a score of at least 0.4 in tier 1", a.reason())
		}
		if a.text() != largeText {
			t.Errorf("content %q", a.text())
		}
	})

	t.Run("the tier falls back to the other model", func(t *testing.T) {
		a := ask(t, c, chatParams("tiered", "Hello! How are you today?"), faultHeader("small:status,code=503"))
		expectRoute(t, a.hr, "large", "large", "tiered", 2)
		if !strings.HasPrefix(a.reason(), "difficulty=") {
			t.Errorf("reason %q", a.reason())
		}
	})
}

// filterSetup: lean (cheap, JSON but no tools, a 60-token context),
// tooly (tools and JSON) and premium (expensive, no capabilities listed,
// so never checked).
func filterSetup() setup {
	return setup{
		Mocks: []mockSite{
			{Port: portAlpha, Name: "lean", Text: "Lean answer."},
			{Port: portBeta, Name: "tooly", Text: "Tooly answer."},
			{Port: portClaude, Name: "premium", Text: premiumText},
		},
		Route: fmt.Sprintf(`
		provider lean http://127.0.0.1:%d
		provider tooly http://127.0.0.1:%d
		provider premium http://127.0.0.1:%d
		model lean lean {
			price 0.1 0.2
			context 60
			capabilities json
		}
		model tooly tooly {
			price 1 2
			context 100000
			capabilities tools json
		}
		model premium premium {
			price 5 15
			quality 0.95
		}
		route lean-first {
			models lean tooly
		}
		route uncapped {
			models premium tooly
		}
		route capped {
			models premium tooly
			max_price 2 4
		}
		route too-tight {
			models premium tooly
			max_price 0.5 1
		}
		route backed {
			models lean premium
			fallback tooly lean
		}
		route lean-backed {
			models lean
			fallback tooly
		}
		route capped-backed {
			models premium
			max_price 2 4
			fallback tooly
		}
`, portAlpha, portBeta, portClaude),
	}
}

// longPrompt is about 140 tokens: more than lean's context window.
var longPrompt = strings.Repeat("Tell me about the climate of coastal regions in spring. ", 12)

func TestCandidateFiltering(t *testing.T) {
	start(t, filterSetup())
	c := oaClient(t)
	const q = "What is the weather like?"
	withTools := func(p openai.ChatCompletionNewParams) openai.ChatCompletionNewParams {
		p.Tools = []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
			Name:        "get_weather",
			Description: openai.String("Current weather of a city"),
			Parameters: openai.FunctionParameters{
				"type":       "object",
				"properties": map[string]any{"city": map[string]any{"type": "string"}},
				"required":   []string{"city"},
			},
		})}
		return p
	}

	t.Run("tools skip a model without the capability", func(t *testing.T) {
		a := ask(t, c, chatParams("lean-first", q))
		expectPick(t, a, "lean", "lean", "lean-first", "fallback", 1)
		// one attempt: lean was not tried
		a = ask(t, c, withTools(chatParams("lean-first", q)))
		expectPick(t, a, "tooly", "tooly", "lean-first", "fallback", 1)
		// JSON mode is a capability lean has
		p := chatParams("lean-first", q)
		p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &openai.ResponseFormatJSONObjectParam{}}
		a = ask(t, c, p)
		expectPick(t, a, "lean", "lean", "lean-first", "fallback", 1)
		// a model without a capabilities list is not checked
		a = ask(t, c, withTools(chatParams("uncapped", q)))
		expectPick(t, a, "premium", "premium", "uncapped", "fallback", 1)
	})

	t.Run("the context window", func(t *testing.T) {
		a := ask(t, c, chatParams("lean-first", longPrompt))
		expectPick(t, a, "tooly", "tooly", "lean-first", "fallback", 1)
		// the output cap counts too
		p := chatParams("lean-first", q)
		p.MaxTokens = openai.Int(100)
		a = ask(t, c, p)
		expectPick(t, a, "tooly", "tooly", "lean-first", "fallback", 1)
		p.MaxTokens = openai.Int(10)
		a = ask(t, c, p)
		expectPick(t, a, "lean", "lean", "lean-first", "fallback", 1)
	})

	t.Run("max_price", func(t *testing.T) {
		a := ask(t, c, chatParams("uncapped", q))
		expectPick(t, a, "premium", "premium", "uncapped", "fallback", 1)
		a = ask(t, c, chatParams("capped", q))
		expectPick(t, a, "tooly", "tooly", "capped", "fallback", 1)
	})

	t.Run("aliases filter too", func(t *testing.T) {
		a := ask(t, c, chatParams("cheapest", q))
		expectPick(t, a, "lean", "lean", "cheapest", "cheapest", 1)
		a = ask(t, c, withTools(chatParams("cheapest", q)))
		expectPick(t, a, "tooly", "tooly", "cheapest", "cheapest", 1)
	})

	t.Run("route fallback", func(t *testing.T) {
		// tried after the strategy's order
		a := ask(t, c, chatParams("backed", q), faultHeader("lean:status,code=503; premium:status,code=503"))
		expectPick(t, a, "tooly", "tooly", "backed", "fallback", 3)
		// a fallback model already among the candidates is not tried twice
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("backed", q), faultHeader("status,code=503"))
		var oerr *openai.Error
		if !asError(err, &oerr) || oerr.StatusCode != 503 {
			t.Fatalf("got %v, want a 503", err)
		}
		if r := routeOf(oerr.Response.Header); r.Attempts != 3 || r.Provider != "tooly" {
			t.Errorf("every target failing: %s, want 3 attempts ending at tooly", r)
		}
		// fallbacks are filtered like the candidates: lean cannot take tools
		_, err = c.Chat.Completions.New(ctxT(t), withTools(chatParams("backed", q)), faultHeader("status,code=503"))
		if !asError(err, &oerr) || oerr.StatusCode != 503 {
			t.Fatalf("got %v, want a 503", err)
		}
		if r := routeOf(oerr.Response.Header); r.Attempts != 2 || r.Provider != "tooly" {
			t.Errorf("tools, every target failing: %s, want premium then tooly", r)
		}
	})

	// The route's fallback models are its last resort: they are tried
	// even when the strategy has no candidate left, e.g. a prompt too
	// long for every routed model but not for the fallback.
	t.Run("fallback when no candidate fits", func(t *testing.T) {
		var hr *http.Response
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("lean-backed", longPrompt), oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Errorf("lean-backed with a long prompt: %v; want tooly, the fallback, to answer", err)
		} else {
			expectRoute(t, hr, "tooly", "tooly", "lean-backed", 1)
		}
		_, err = c.Chat.Completions.New(ctxT(t), chatParams("capped-backed", q), oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Errorf("capped-backed: %v; want tooly, the fallback, to answer", err)
		} else {
			expectRoute(t, hr, "tooly", "tooly", "capped-backed", 1)
		}
	})

	t.Run("nothing fits", func(t *testing.T) {
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("too-tight", q))
		expectRefused(t, err, "too-tight")
		_, err = c.Chat.Completions.New(ctxT(t), withTools(chatParams("lean", q)))
		expectRefused(t, err, "lean with tools")
		p := chatParams("lean", longPrompt)
		_, err = c.Chat.Completions.New(ctxT(t), p)
		expectRefused(t, err, "lean with a long prompt")
		// streams are refused the same way
		s := chatStream(t, c, chatParams("too-tight", q))
		if s.Events != 0 {
			t.Errorf("stream: %d events", s.Events)
		}
		expectRefused(t, s.Err, "too-tight stream")
	})
}

// A 429 with retry-after-ms cools the preferred model of an alias down:
// the alias goes straight to the next candidate, keeps the cooling pair
// as a last resort, and returns to it once the cooldown ends.
func TestCooldownInAlias(t *testing.T) {
	start(t, trioSetup("", "", "", ""))
	c := oaClient(t)
	const q = "Hello, cheapest please."

	a := ask(t, c, chatParams("cheapest", q))
	expectPick(t, a, "cheap", "cheap", "cheapest", "cheapest", 1)

	before := time.Now()
	a = ask(t, c, chatParams("cheapest", q), faultHeader("cheap:status,code=429,retry_after_ms=500"))
	expectPick(t, a, "mid", "mid", "cheapest", "cheapest", 2)
	until := cooldownUntil(t, "cheap", "cheap")
	if d := until.Sub(before); d < 500*time.Millisecond || d > 500*time.Millisecond+time.Since(before) {
		t.Fatalf("cheap cools down for %v, want the 500ms of retry-after-ms", d)
	}

	// no fault now: cheap would answer, but it is cooling down
	a = ask(t, c, chatParams("cheapest", q))
	expectPick(t, a, "mid", "mid", "cheapest", "cheapest", 1)
	if time.Now().After(until) {
		t.Fatalf("the machine is too slow: the cooldown ended during the test")
	}

	// the order resumes after the cooldown
	time.Sleep(time.Until(until) + 50*time.Millisecond)
	a = ask(t, c, chatParams("cheapest", q))
	expectPick(t, a, "cheap", "cheap", "cheapest", "cheapest", 1)

	// cooling again: the cooling pair is still tried, last
	a = ask(t, c, chatParams("cheapest", q), faultHeader("cheap:status,code=429,retry_after_ms=500"))
	expectPick(t, a, "mid", "mid", "cheapest", "cheapest", 2)
	a = ask(t, c, chatParams("cheapest", q), faultHeader("mid:status,code=503; premium:status,code=503"))
	expectPick(t, a, "cheap", "cheap", "cheapest", "cheapest", 3)
}

// duoSetup serves the model duo from alpha and beta, with a round_robin
// route and weighted ones.
func duoSetup() setup {
	return withDefaults(`
		model duo alpha beta {
			upstream_name duo-up
		}
		route rr {
			models duo
			strategy round_robin
		}
		route heavy {
			target duo alpha {
				weight 3
			}
			target duo beta {
				weight 1
			}
			strategy weighted
		}
		route drained {
			target duo alpha
			target duo beta {
				weight 0
			}
			strategy weighted
		}
`)
}

func TestWeightedAndRoundRobin(t *testing.T) {
	start(t, duoSetup())
	c := oaClient(t)
	const q = "Spread the load."

	t.Run("round_robin alternates", func(t *testing.T) {
		var seq []string
		for range 10 {
			a := ask(t, c, chatParams("rr", q))
			if r := a.route(); r.Attempts != 1 || r.Model != "duo" || r.Route != "rr" || a.reason() != "round_robin" {
				t.Errorf("%s reason %q", r, a.reason())
			}
			seq = append(seq, a.provider())
		}
		for i := 1; i < len(seq); i++ {
			if seq[i] == seq[i-1] || (seq[i] != "alpha" && seq[i] != "beta") {
				t.Fatalf("providers do not alternate: %s", strings.Join(seq, " "))
			}
		}
	})

	t.Run("round_robin still falls back", func(t *testing.T) {
		// whichever comes first, alpha fails: beta answers, after one or
		// two attempts
		for range 4 {
			a := ask(t, c, chatParams("rr", q), faultHeader("alpha:status,code=503"))
			if r := a.route(); r.Provider != "beta" || r.Attempts < 1 || r.Attempts > 2 {
				t.Errorf("%s", r)
			}
		}
	})

	t.Run("weighted 3:1", func(t *testing.T) {
		const n = 60
		count := map[string]int{}
		for range n {
			a := ask(t, c, chatParams("heavy", q))
			if r := a.route(); r.Attempts != 1 || r.Route != "heavy" || a.reason() != "weighted" {
				t.Errorf("%s reason %q", r, a.reason())
			}
			count[a.provider()]++
		}
		t.Logf("weighted 3:1 over %d requests: %v", n, count)
		// expected 45 alpha; binomial sd 3.4
		if count["alpha"] < 32 || count["alpha"] > 57 || count["alpha"]+count["beta"] != n {
			t.Errorf("alpha got %d of %d requests (%v), want about 45", count["alpha"], n, count)
		}
	})

	// The Caddyfile accepts `weight 0`, and the weighted strategy never
	// puts a candidate of weight 0 first (unless all are): a drained
	// target.
	t.Run("weight 0 is never first", func(t *testing.T) {
		count := map[string]int{}
		for range 20 {
			a := ask(t, c, chatParams("drained", q))
			count[a.provider()]++
		}
		if count["beta"] != 0 {
			t.Errorf("the target of weight 0 answered %d of 20 requests (%v)", count["beta"], count)
		}
	})
}

// hintSetup: x (alpha, cheap), y (beta, premium) and recorder (the test's
// own upstream), the route pair over x and y in configured order, and
// the client hints when on.
func hintSetup(recURL string, hints bool) setup {
	s := withDefaults(fmt.Sprintf(`
		provider recorder %s
		model x alpha {
			price 0.1 0.2
			quality 0.5
		}
		model y beta {
			price 5 15
			quality 0.95
		}
		model recorder recorder
		route pair {
			models x y
		}
`, recURL))
	if hints {
		s.Route += `
		client_models
		strategy_header X-LLM-Strategy
`
	}
	return s
}

// hasKey reports whether a JSON object has a top-level key.
func hasKey(t *testing.T, body []byte, key string) bool {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("upstream body %s: %v", body, err)
	}
	_, ok := m[key]
	return ok
}

func TestClientHints(t *testing.T) {
	srv, rec := newRecorder(t, false)
	const q = "Hello with hints."

	t.Run("on", func(t *testing.T) {
		start(t, hintSetup(srv.URL, true))
		c := oaClient(t)

		// the models array gives fallbacks after the requested model
		a := ask(t, c, chatParams("x", q), oaoption.WithJSONSet("models", []string{"y"}), faultHeader("alpha:status,code=503"))
		expectRoute(t, a.hr, "y", "beta", "x", 2)
		if a.text() != betaText || a.resp.Model != "y" {
			t.Errorf("content %q from model %q", a.text(), a.resp.Model)
		}
		// the first healthy one answers
		a = ask(t, c, chatParams("x", q), oaoption.WithJSONSet("models", []string{"x", "y"}))
		expectRoute(t, a.hr, "x", "alpha", "x", 1)
		// the array is removed before forwarding, on the first attempt
		// and on fallbacks
		before := rec.count()
		a = ask(t, c, chatParams("recorder", q), oaoption.WithJSONSet("models", []string{"x"}))
		expectRoute(t, a.hr, "recorder", "recorder", "recorder", 1)
		a = ask(t, c, chatParams("x", q), oaoption.WithJSONSet("models", []string{"recorder"}), faultHeader("alpha:status,code=503"))
		expectRoute(t, a.hr, "recorder", "recorder", "x", 2)
		rec.mu.Lock()
		got := append([]recorded(nil), rec.reqs[before:]...)
		rec.mu.Unlock()
		if len(got) != 2 {
			t.Fatalf("the recorder got %d requests, want 2", len(got))
		}
		for _, r := range got {
			if hasKey(t, r.Body, "models") || jsonPath(r.Body, "model") != "recorder" {
				t.Errorf("upstream body %s: want model recorder and no models array", r.Body)
			}
		}

		// the strategy header borrows another route's strategy
		a = ask(t, c, chatParams("pair", q))
		expectPick(t, a, "x", "alpha", "pair", "fallback", 1)
		a = ask(t, c, chatParams("pair", q), oaoption.WithHeader("X-LLM-Strategy", "best_quality"))
		expectPick(t, a, "y", "beta", "pair", "best_quality", 1)
		a = ask(t, c, chatParams("pair", q), oaoption.WithHeader("X-LLM-Strategy", "no-such-route"))
		expectPick(t, a, "x", "alpha", "pair", "fallback", 1)
		// the borrowed strategy orders the requested route's own
		// candidates only
		a = ask(t, c, chatParams("x", q), oaoption.WithHeader("X-LLM-Strategy", "best_quality"))
		expectRoute(t, a.hr, "x", "alpha", "x", 1)

		// OpenRouter-style clients repeat the requested model first in
		// the array; a failing pair is not tried a second time (as the
		// route fallback skips models already among the candidates).
		t.Run("a repeated model is tried once", func(t *testing.T) {
			a := ask(t, c, chatParams("x", q), oaoption.WithJSONSet("models", []string{"x", "y"}), faultHeader("alpha:status,code=503"))
			expectRoute(t, a.hr, "y", "beta", "x", 2)
		})
	})

	t.Run("off", func(t *testing.T) {
		start(t, hintSetup(srv.URL, false))
		c := oaClient(t)

		// the array is ignored: no fallback
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("x", q), oaoption.WithJSONSet("models", []string{"y"}), faultHeader("alpha:status,code=503"))
		var oerr *openai.Error
		if !asError(err, &oerr) || oerr.StatusCode != 503 {
			t.Fatalf("got %v, want the 503 of x's only provider", err)
		}
		if r := routeOf(oerr.Response.Header); r.Provider != "alpha" || r.Attempts != 1 {
			t.Errorf("%s", r)
		}
		// ... and passed through untouched, unknown names included
		before := rec.count()
		a := ask(t, c, chatParams("recorder", q), oaoption.WithJSONSet("models", []string{"x", "no-such-model"}))
		expectRoute(t, a.hr, "recorder", "recorder", "recorder", 1)
		if rec.count() != before+1 {
			t.Fatalf("the recorder got %d requests, want 1", rec.count()-before)
		}
		if got := jsonPath(rec.last(t).Body, "models"); got != `["x","no-such-model"]` {
			t.Errorf("upstream models %s, want the client's array", got)
		}
		// the strategy header is ignored
		a = ask(t, c, chatParams("pair", q), oaoption.WithHeader("X-LLM-Strategy", "best_quality"))
		expectPick(t, a, "x", "alpha", "pair", "fallback", 1)
	})
}
