package e2e

import (
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// The cascade and consensus tests run four mocks whose answers are
// scripted by the prompt: cheap, mid and premium (the models of the
// same names, in that order of price and quality) and a judge that
// scores answers by what they say.
const (
	voteQ     = "VOTEQ What is 6 times 7?"
	cheapVote = "The answer is 41."
	midVote   = "I think it is 42."
	premVote  = "After careful thought: 42"
)

func multiSetup() setup {
	q := func(s string) string { return "`" + s + "`" }
	return setup{
		Mocks: []mockSite{
			{Port: portAlpha, Name: "cheap", Text: cheapText, Lines: []string{
				`reply EMPTYQ ""`,
				`refuse REFUSEQ I will not share that.`,
				`reply SORRYQ I'm sorry, but I can't help with that.`,
				`reply LENQ one two three four five six`,
				`reply SHORTQ Yes.`,
				`reply JSONQ sure, here it is`,
				`reply SCHEMAQ ` + q(`{"answer": 42}`),
				`reply VOTEQ ` + cheapVote,
			}},
			{Port: portBeta, Name: "mid", Text: midText, Lines: []string{
				`reply LENQ Short mid.`,
				`reply JSONQ ` + q(`{"answer": "forty-two"}`),
				`reply SCHEMAQ ` + q(`{"answer": "42"}`),
				`reply VOTEQ ` + midVote,
			}},
			{Port: portClaude, Name: "premium", Text: premiumText, Lines: []string{
				`reply VOTEQ ` + premVote,
			}},
			{Port: portClaude2, Name: "judge", Text: "5", Lines: []string{
				`reply "Cheap answer" Score: 3`,
				`reply "Middle answer" 9/10`,
				`reply "The answer is 41" 8`,
				`reply "I think it is 42" 6`,
				`reply "careful thought" 7`,
			}},
		},
		Route: fmt.Sprintf(`
		provider cheap http://127.0.0.1:%d
		provider mid http://127.0.0.1:%d
		provider premium http://127.0.0.1:%d
		provider judge http://127.0.0.1:%d
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
		model judge judge
		route tiered {
			models premium mid cheap
			strategy cascade {
				min_length 8
			}
		}
		route tiered-judge {
			models cheap mid premium
			strategy cascade {
				judge judge
			}
		}
		route tiered-stream {
			models cheap mid premium
			strategy cascade {
				min_length 8
				streams
			}
		}
		route tiered-limited {
			models cheap mid premium
			strategy cascade {
				min_length 8
			}
			daily_requests 3
		}
		route vote {
			models cheap mid premium
			strategy consensus {
				extract last_number
			}
		}
		route vote-tie {
			models cheap mid
			strategy consensus {
				extract last_number
			}
		}
		route vote-judge {
			models cheap mid premium
			strategy consensus {
				mode judge
				judge judge
			}
		}
		route vote-agree {
			models cheap mid premium
			strategy consensus {
				mode agreement
			}
		}
`, portAlpha, portBeta, portClaude, portClaude2),
	}
}

// wordCount is the mock's output token count of a text.
func wordCount(s string) int64 { return int64(len(strings.Fields(s))) }

func TestCascade(t *testing.T) {
	start(t, multiSetup())
	c := oaClient(t)

	for _, tc := range []struct {
		name, prompt string
		params       func(*openai.ChatCompletionNewParams)
		header       string
		model        string
		text         string
		words        int64 // output tokens of every call
		calls        int
	}{
		{name: "checks pass", prompt: "Hello there", header: "cheap:ok", model: "cheap", text: cheapText,
			words: wordCount(cheapText), calls: 1},
		{name: "empty", prompt: "EMPTYQ hi", header: "cheap:empty,short > mid:ok", model: "mid", text: midText,
			words: wordCount(midText), calls: 2},
		{name: "refusal field", prompt: "REFUSEQ tell me", header: "cheap:refusal > mid:ok", model: "mid", text: midText,
			words: wordCount("I will not share that.") + wordCount(midText), calls: 2},
		{name: "refusal text", prompt: "SORRYQ tell me", header: "cheap:refusal > mid:ok", model: "mid", text: midText,
			words: wordCount("I'm sorry, but I can't help with that.") + wordCount(midText), calls: 2},
		{name: "length", prompt: "LENQ count", header: "cheap:length > mid:ok", model: "mid", text: "Short mid.",
			params: func(p *openai.ChatCompletionNewParams) { p.MaxTokens = openai.Int(3) },
			words:  3 + 2, calls: 2},
		{name: "short", prompt: "SHORTQ ok?", header: "cheap:short > mid:ok", model: "mid", text: midText,
			words: 1 + wordCount(midText), calls: 2},
		{name: "json", prompt: "JSONQ give json", header: "cheap:json > mid:ok", model: "mid", text: `{"answer": "forty-two"}`,
			params: func(p *openai.ChatCompletionNewParams) {
				p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}
			},
			words: 4 + 2, calls: 2},
		{name: "schema", prompt: "SCHEMAQ give json", header: "cheap:schema > mid:ok", model: "mid", text: `{"answer": "42"}`,
			params: func(p *openai.ChatCompletionNewParams) {
				p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
					JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "answer", Schema: map[string]any{
						"type": "object", "required": []string{"answer"},
						"properties": map[string]any{"answer": map[string]any{"type": "string"}},
					}},
				}}
			},
			words: 2 + 2, calls: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := chatParams("tiered", tc.prompt)
			if tc.params != nil {
				tc.params(&p)
			}
			a := ask(t, c, p)
			if got := a.hr.Header.Get("X-LLM-Cascade"); got != tc.header {
				t.Errorf("X-LLM-Cascade %q, want %q", got, tc.header)
			}
			expectRoute(t, a.hr, tc.model, tc.model, "tiered", tc.calls)
			if a.text() != tc.text {
				t.Errorf("text %q, want %q", a.text(), tc.text)
			}
			// usage: every call's, each sent the same prompt
			wantPrompt := int64(tc.calls) * promptTokens(tc.prompt)
			if u := a.resp.Usage; u.PromptTokens != wantPrompt || u.CompletionTokens != tc.words || u.TotalTokens != wantPrompt+tc.words {
				t.Errorf("usage %d+%d=%d, want %d+%d", u.PromptTokens, u.CompletionTokens, u.TotalTokens, wantPrompt, tc.words)
			}
		})
	}

	t.Run("judge", func(t *testing.T) {
		const q = "Hello there"
		a := ask(t, c, chatParams("tiered-judge", q))
		if got, want := a.hr.Header.Get("X-LLM-Cascade"), "cheap:judge=0.30 > mid:judge=0.90:ok"; got != want {
			t.Errorf("X-LLM-Cascade %q, want %q", got, want)
		}
		expectRoute(t, a.hr, "mid", "mid", "tiered-judge", 4)
		if a.text() != midText {
			t.Errorf("text %q", a.text())
		}
		j := strategies.Judge{Model: "judge"}
		wantPrompt := 2*promptTokens(q) + promptTokens(j.PromptFor(q, cheapText)) + promptTokens(j.PromptFor(q, midText))
		wantWords := wordCount(cheapText) + 2 + wordCount(midText) + 1
		if u := a.resp.Usage; u.PromptTokens != wantPrompt || u.CompletionTokens != wantWords {
			t.Errorf("usage %d+%d, want %d+%d (the judge's calls included)", u.PromptTokens, u.CompletionTokens, wantPrompt, wantWords)
		}
	})

	t.Run("responses API", func(t *testing.T) {
		const q = "EMPTYQ responses"
		var hr *http.Response
		resp, err := c.Responses.New(ctxT(t), responses.ResponseNewParams{Model: "tiered",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(q)}}, oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := hr.Header.Get("X-LLM-Cascade"), "cheap:empty,short > mid:ok"; got != want {
			t.Errorf("X-LLM-Cascade %q, want %q", got, want)
		}
		if resp.OutputText() != midText {
			t.Errorf("text %q", resp.OutputText())
		}
		if u := resp.Usage; u.InputTokens != 2*promptTokens(q) || u.OutputTokens != wordCount(midText) {
			t.Errorf("usage %d+%d, want %d+%d", u.InputTokens, u.OutputTokens, 2*promptTokens(q), wordCount(midText))
		}
	})

	t.Run("stream opted in, anthropic client", func(t *testing.T) {
		const q = "EMPTYQ stream please"
		res := messageStream(t, antClient(t), messageParams("tiered-stream", q))
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if got, want := res.Resp.Header.Get("X-LLM-Cascade"), "cheap:empty,short > mid:ok"; got != want {
			t.Errorf("X-LLM-Cascade %q, want %q", got, want)
		}
		if res.Text != midText || res.Finish != string(anthropic.StopReasonEndTurn) {
			t.Errorf("text %q finish %q", res.Text, res.Finish)
		}
		if want := [2]int64{2 * promptTokens(q), wordCount(midText)}; res.Usage != want {
			t.Errorf("usage %v, want %v", res.Usage, want)
		}
	})

	t.Run("stream not opted in goes to the cheapest", func(t *testing.T) {
		res := chatStream(t, c, chatParams("tiered", "EMPTYQ stream please"))
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if h := res.Resp.Header.Get("X-LLM-Cascade"); h != "" || res.Text != "" {
			t.Errorf("X-LLM-Cascade %q text %q: want the cheap model's empty stream, unchecked", h, res.Text)
		}
		expectRoute(t, res.Resp, "cheap", "cheap", "tiered", 1)
	})

	t.Run("every call counts toward limits", func(t *testing.T) {
		// daily_requests 3: a cascaded request takes two, a passing one one.
		for i, q := range []string{"EMPTYQ one", "Hello two"} {
			a := ask(t, c, chatParams("tiered-limited", q))
			if a.route().Attempts != 2-i {
				t.Errorf("request %d: %s", i, a.route())
			}
		}
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("tiered-limited", "Hello three"))
		var oerr *openai.Error
		if !asError(err, &oerr) || oerr.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("third request: got %v, want a 429", err)
		}
	})
}

func TestConsensus(t *testing.T) {
	start(t, multiSetup())
	c := oaClient(t)
	wantPrompt := 3 * promptTokens(voteQ)
	wantWords := wordCount(cheapVote) + wordCount(midVote) + wordCount(premVote)

	t.Run("majority with a dissent", func(t *testing.T) {
		a := ask(t, c, chatParams("vote", voteQ))
		if got, want := a.hr.Header.Get("X-LLM-Consensus"), "mode=majority votes=2/3 agreement=0.67 winner=premium"; got != want {
			t.Errorf("X-LLM-Consensus %q, want %q", got, want)
		}
		// 42 wins; of its voters, premium has the higher quality
		expectRoute(t, a.hr, "premium", "premium", "vote", 3)
		if a.text() != premVote {
			t.Errorf("text %q", a.text())
		}
		if u := a.resp.Usage; u.PromptTokens != wantPrompt || u.CompletionTokens != wantWords {
			t.Errorf("usage %d+%d, want %d+%d", u.PromptTokens, u.CompletionTokens, wantPrompt, wantWords)
		}
	})

	t.Run("tie to the higher quality", func(t *testing.T) {
		a := ask(t, c, chatParams("vote-tie", voteQ))
		if got, want := a.hr.Header.Get("X-LLM-Consensus"), "mode=majority votes=1/2 agreement=0.50 winner=mid"; got != want {
			t.Errorf("X-LLM-Consensus %q, want %q", got, want)
		}
		if a.text() != midVote {
			t.Errorf("text %q", a.text())
		}
	})

	t.Run("judge", func(t *testing.T) {
		// The judge prefers the dissenting answer (8 over 7 and 6).
		a := ask(t, c, chatParams("vote-judge", voteQ))
		if got, want := a.hr.Header.Get("X-LLM-Consensus"), "mode=judge votes=1/3 agreement=0.33 winner=cheap score=0.80"; got != want {
			t.Errorf("X-LLM-Consensus %q, want %q", got, want)
		}
		expectRoute(t, a.hr, "cheap", "cheap", "vote-judge", 6)
		if a.text() != cheapVote {
			t.Errorf("text %q", a.text())
		}
		if u := a.resp.Usage; u.CompletionTokens != wantWords+3 || u.PromptTokens <= wantPrompt {
			t.Errorf("usage %d+%d, want more than %d prompt tokens and %d output tokens (the judge's included)", u.PromptTokens, u.CompletionTokens, wantPrompt, wantWords+3)
		}
	})

	t.Run("agreement", func(t *testing.T) {
		// The two answers ending in 42 share only "42" with each other,
		// "is" with the dissent: mid's words overlap most with both.
		a := ask(t, c, chatParams("vote-agree", voteQ))
		if got := a.hr.Header.Get("X-LLM-Consensus"); !strings.HasPrefix(got, "mode=agreement ") || !strings.HasSuffix(got, "winner=mid") {
			t.Errorf("X-LLM-Consensus %q", got)
		}
		if a.text() != midVote {
			t.Errorf("text %q", a.text())
		}
	})

	t.Run("openai stream after the vote", func(t *testing.T) {
		p := chatParams("vote", voteQ)
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		var hr *http.Response
		stream := c.Chat.Completions.NewStreaming(ctxT(t), p, oaoption.WithResponseInto(&hr))
		defer stream.Close()
		var acc openai.ChatCompletionAccumulator
		chunks := 0
		for stream.Next() {
			chunks++
			if !acc.AddChunk(stream.Current()) {
				t.Fatalf("chunk %d does not accumulate: %s", chunks, stream.Current().RawJSON())
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if got := hr.Header.Get("X-LLM-Consensus"); !strings.Contains(got, "votes=2/3") {
			t.Errorf("X-LLM-Consensus %q", got)
		}
		if ct := hr.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Errorf("Content-Type %q", ct)
		}
		if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != premVote || acc.Choices[0].FinishReason != "stop" {
			t.Fatalf("accumulated %s", acc.RawJSON())
		}
		if u := acc.Usage; u.PromptTokens != wantPrompt || u.CompletionTokens != wantWords {
			t.Errorf("usage %d+%d, want %d+%d", u.PromptTokens, u.CompletionTokens, wantPrompt, wantWords)
		}
	})

	t.Run("anthropic stream after the vote", func(t *testing.T) {
		res := messageStream(t, antClient(t), messageParams("vote", voteQ))
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if res.Text != premVote || res.Finish != string(anthropic.StopReasonEndTurn) {
			t.Errorf("text %q finish %q", res.Text, res.Finish)
		}
		if want := [2]int64{wantPrompt, wantWords}; res.Usage != want {
			t.Errorf("usage %v, want %v", res.Usage, want)
		}
		if got := res.Resp.Header.Get("X-LLM-Consensus"); !strings.Contains(got, "votes=2/3") {
			t.Errorf("X-LLM-Consensus %q", got)
		}
	})

	t.Run("responses stream after the vote", func(t *testing.T) {
		var hr *http.Response
		stream := c.Responses.NewStreaming(ctxT(t), responses.ResponseNewParams{Model: "vote",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(voteQ)}}, oaoption.WithResponseInto(&hr))
		defer stream.Close()
		var types []string
		var deltas strings.Builder
		var final responses.Response
		for stream.Next() {
			ev := stream.Current()
			types = append(types, ev.Type)
			switch ev.Type {
			case "response.output_text.delta":
				deltas.WriteString(ev.Delta)
			case "response.completed":
				final = ev.Response
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if got := hr.Header.Get("X-LLM-Consensus"); !strings.Contains(got, "votes=2/3") || !strings.HasSuffix(got, "winner=premium") {
			t.Errorf("X-LLM-Consensus %q", got)
		}
		if len(types) < 2 || types[0] != "response.created" || types[len(types)-1] != "response.completed" {
			t.Errorf("event sequence %v", types)
		}
		if deltas.String() != premVote || final.OutputText() != premVote {
			t.Errorf("streamed %q, final %q, want %q", deltas.String(), final.OutputText(), premVote)
		}
		if u := final.Usage; u.InputTokens != wantPrompt || u.OutputTokens != wantWords {
			t.Errorf("usage %d+%d, want %d+%d", u.InputTokens, u.OutputTokens, wantPrompt, wantWords)
		}
	})

	t.Run("a voter that fails does not vote", func(t *testing.T) {
		a := ask(t, c, chatParams("vote", voteQ), faultHeader("premium:status,code=500"))
		if got, want := a.hr.Header.Get("X-LLM-Consensus"), "mode=majority votes=1/2 agreement=0.50 winner=mid"; got != want {
			t.Errorf("X-LLM-Consensus %q, want %q", got, want)
		}
		if a.text() != midVote {
			t.Errorf("text %q", a.text())
		}
	})
}

// The access log and the {llm.usage.*} placeholders count every call
// of a cascade or a consensus, as the answer's usage does.
func TestMulticallAccessLog(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	s := multiSetup()
	s.Site = fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t\tformat json\n\t}", logFile)
	start(t, s)
	c := oaClient(t)
	id := func(s string) oaoption.RequestOption { return oaoption.WithHeader("X-Test-Id", s) }

	a := ask(t, c, chatParams("vote", voteQ), id("vote"))
	b := ask(t, c, chatParams("tiered", "EMPTYQ log"), id("cascade"))
	unload(t) // flushes and closes the log
	log := readAccessLog(t, logFile)
	for name, got := range map[string]answer{"vote": a, "cascade": b} {
		e := log[name]
		u := got.resp.Usage
		if e.PromptTokens != u.PromptTokens || e.CompletionTokens != u.CompletionTokens || e.Attempts != got.route().Attempts || e.Model != got.route().Model {
			t.Errorf("%s: logged %+v, answered %d+%d %s", name, e, u.PromptTokens, u.CompletionTokens, got.route())
		}
	}
	if e := log["vote"]; e.Attempts != 3 || e.CompletionTokens != wordCount(cheapVote)+wordCount(midVote)+wordCount(premVote) {
		t.Errorf("vote: logged %+v", e)
	}
}

// The decision log (and the metrics, which read the same record) of a
// cascade or a consensus counts every call, the judge's too, each at its
// own model's prices, and names the model whose answer went out, not the
// last one called.
func TestMulticallDecisionRecord(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "decisions.log")
	s := multiSetup()
	s.Global = fmt.Sprintf("\tlog decisions {\n\t\toutput file %s\n\t\tformat json\n\t\tinclude http.handlers.llm_route.decisions\n\t}", logFile)
	s.Route = "\n\t\tdecision_log\n" + strings.Replace(s.Route, "model judge judge\n", "model judge judge {\n\t\t\tprice 3 7\n\t\t}\n", 1)
	start(t, s)
	before := metricsNow(t)
	c := oaClient(t)
	check := func(t *testing.T, a answer, model string, calls int) {
		t.Helper()
		_, rec := decisionLog(t, logFile, "decision", a.hr.Header.Get("X-LLM-Request-Id"))
		if rec["model"] != model || rec["calls"] != float64(calls) {
			t.Errorf("record names model %v after %v calls, want %s after %d", rec["model"], rec["calls"], model, calls)
		}
		u := a.resp.Usage
		if rec["input_tokens"] != float64(u.PromptTokens) || rec["output_tokens"] != float64(u.CompletionTokens) {
			t.Errorf("record's tokens %v+%v, the answer's usage %d+%d", rec["input_tokens"], rec["output_tokens"], u.PromptTokens, u.CompletionTokens)
		}
		if got, _ := rec["cost_usd"].(float64); got <= 0 {
			t.Errorf("cost_usd %v", rec["cost_usd"])
		}
	}

	t.Run("cascade with a judge", func(t *testing.T) {
		const q = "Hello there"
		a := ask(t, c, chatParams("tiered-judge", q))
		check(t, a, "mid", 4)
		j := strategies.Judge{Model: "judge"}
		judgeIn := promptTokens(j.PromptFor(q, cheapText)) + promptTokens(j.PromptFor(q, midText))
		want := (float64(promptTokens(q))*(0.1+1) + float64(wordCount(cheapText))*0.2 + float64(wordCount(midText))*2 +
			float64(judgeIn)*3 + (2+1)*7) / 1e6 // the judge: "Score: 3", "9/10"
		_, rec := decisionLog(t, logFile, "decision", a.hr.Header.Get("X-LLM-Request-Id"))
		if got, _ := rec["cost_usd"].(float64); math.Abs(got-want) > 1e-12 {
			t.Errorf("cost_usd %v, want %v (the judge's calls at the judge's prices)", got, want)
		}
	})

	t.Run("cascade whose last tier fails", func(t *testing.T) {
		p := chatParams("tiered", "Hello again")
		p.MaxTokens = openai.Int(1)
		a := ask(t, c, p, faultHeader("premium:status,code=500"))
		if got := a.hr.Header.Get("X-LLM-Model"); got != "mid" {
			t.Fatalf("X-LLM-Model %q (X-LLM-Cascade %q), want mid's cut answer", got, a.hr.Header.Get("X-LLM-Cascade"))
		}
		check(t, a, "mid", 3)
	})

	t.Run("consensus", func(t *testing.T) {
		a := ask(t, c, chatParams("vote-judge", voteQ))
		check(t, a, "cheap", 6)
	})

	// The metrics name the same models, and the calls that answered are
	// no fallbacks: a voter, a judge or a tier whose answer failed a
	// check was not passed over for a failure.
	after := metricsNow(t)
	for k, v := range after {
		if strings.HasPrefix(k, "llm_route_fallbacks_total{") && strings.Contains(k, `cause="ok"`) && v > before[k] {
			t.Errorf("%s rose by %v", k, v-before[k])
		}
	}
	for _, k := range []string{
		series("llm_route_requests_total", "route", "tiered-judge", "model", "mid", "provider", "mid", "status", "200"),
		series("llm_route_requests_total", "route", "tiered", "model", "mid", "provider", "mid", "status", "200"),
		series("llm_route_requests_total", "route", "vote-judge", "model", "cheap", "provider", "cheap", "status", "200"),
	} {
		if d := after[k] - before[k]; d != 1 {
			t.Errorf("%s rose by %v, want 1", k, d)
		}
	}
}

// hostileSetup adds to multiSetup a provider "evil" (the cheapest and
// the best rated model, so the first tier of a cascade and a voter of
// every consensus) whose answer the fault header chooses: code 461 a
// body that is not JSON, 462 a JSON array, 463 an object without
// choices, 464 an answer larger than a call may hold (17 MiB), else a
// good answer ending in 42.
func hostileSetup(t *testing.T) setup {
	dir := t.TempDir()
	big := `{"id":"big","object":"chat.completion","created":1,"model":"evil","choices":[{"index":0,"message":{"role":"assistant","content":"` +
		strings.Repeat("forty two ", 17<<20/10) + `42"},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":4,"total_tokens":6}}`
	if err := os.WriteFile(filepath.Join(dir, "big.json"), []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	q := func(s string) string { return "`" + s + "`" }
	s := multiSetup()
	s.Route += fmt.Sprintf(`
		provider evil http://127.0.0.1:%d
		model evil evil {
			price 0.01 0.01
			quality 0.99
		}
		route vote-evil {
			models cheap mid evil
			strategy consensus {
				extract last_number
			}
		}
		route tiered-evil {
			models evil mid premium
			strategy cascade {
				min_length 8
				streams
			}
		}
`, portExtra1)
	s.Extra = fmt.Sprintf(`
http://:%d {
	bind 127.0.0.1
	header Content-Type application/json
	@nojson header_regexp X-Mock-Fault evil:status,code=461
	respond @nojson "this is not json" 200
	@array header_regexp X-Mock-Fault evil:status,code=462
	respond @array "[1, 2, 3]" 200
	@nochoices header_regexp X-Mock-Fault evil:status,code=463
	respond @nochoices %s 200
	@big header_regexp X-Mock-Fault evil:status,code=464
	handle @big {
		root * %s
		rewrite * /big.json
		method GET
		file_server
	}
	respond %s 200
}
`, portExtra1, q(`{"id":"e","object":"chat.completion","created":1,"model":"evil","usage":{"prompt_tokens":2,"completion_tokens":4,"total_tokens":6}}`), dir,
		q(`{"id":"e","object":"chat.completion","created":1,"model":"evil","choices":[{"index":0,"message":{"role":"assistant","content":"Evil says 42"},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":4,"total_tokens":6}}`))
	return s
}

// A voter or a tier whose answer is not JSON, not an answer, or too
// large to hold does not vote or passes the request on; the client
// gets a well-formed answer in its own API, streamed or not.
func TestMulticallHostileUpstream(t *testing.T) {
	start(t, hostileSetup(t))
	c := oaClient(t)
	ant := antClient(t)
	wantPath := map[int]string{
		461: "evil:status=502 > mid:ok", 462: "evil:empty,short > mid:ok", 463: "evil:empty,short > mid:ok",
		464: "evil:status=502 > mid:ok", 0: "evil:ok",
	}
	for _, code := range []int{461, 462, 463, 464, 0} {
		fault := fmt.Sprintf("evil:status,code=%d", code)
		wantVote, wantTier := midVote, "mid"
		if code == 0 {
			fault, wantVote, wantTier = "", "Evil says 42", "evil"
		}
		t.Run(fmt.Sprintf("consensus %d", code), func(t *testing.T) {
			a := ask(t, c, chatParams("vote-evil", voteQ), faultHeader(fault))
			if a.text() != wantVote {
				t.Errorf("text %q, want %q (X-LLM-Consensus %q)", a.text(), wantVote, a.hr.Header.Get("X-LLM-Consensus"))
			}
			res := messageStream(t, ant, messageParams("vote-evil", voteQ), antFaultHeader(fault))
			if res.Err != nil || res.Text != wantVote {
				t.Errorf("anthropic stream: %v, text %q, want %q (X-LLM-Consensus %q)", res.Err, res.Text, wantVote, res.Resp.Header.Get("X-LLM-Consensus"))
			}
		})
		t.Run(fmt.Sprintf("cascade %d", code), func(t *testing.T) {
			a := ask(t, c, chatParams("tiered-evil", "Hello there"), faultHeader(fault))
			if got, want := a.hr.Header.Get("X-LLM-Cascade"), wantPath[code]; got != want {
				t.Errorf("X-LLM-Cascade %q, want %q", got, want)
			}
			if got := a.hr.Header.Get("X-LLM-Model"); got != wantTier {
				t.Errorf("answered by %q, want %q (X-LLM-Cascade %q)", got, wantTier, a.hr.Header.Get("X-LLM-Cascade"))
			}
			res := messageStream(t, ant, messageParams("tiered-evil", "Hello there"), antFaultHeader(fault))
			if res.Err != nil || res.Resp.Header.Get("X-LLM-Model") != wantTier {
				t.Errorf("anthropic stream: %v, answered by %q (X-LLM-Cascade %q)", res.Err, res.Resp.Header.Get("X-LLM-Model"), res.Resp.Header.Get("X-LLM-Cascade"))
			}
		})
	}
}

// When no call of a cascade or a consensus can answer, an Anthropic
// client gets the error in its own API's shape, streamed or not, with
// the strategy's header; so does an OpenAI client.
func TestMulticallAllFail(t *testing.T) {
	start(t, multiSetup())
	ant := antClient(t)
	oa := oaClient(t)
	for _, route := range []string{"tiered", "tiered-stream", "vote", "vote-judge"} {
		t.Run(route, func(t *testing.T) {
			header := "X-LLM-Cascade"
			if strings.HasPrefix(route, "vote") {
				header = "X-LLM-Consensus"
			}
			var aerr *anthropic.Error
			_, err := ant.Messages.New(ctxT(t), messageParams(route, "Hello there"), antFaultHeader("status,code=503"))
			if !asError(err, &aerr) || aerr.StatusCode != 503 || !strings.Contains(aerr.RawJSON(), `"type":"error"`) || aerr.Response.Header.Get(header) == "" {
				t.Errorf("anthropic: %v, want a 503 in Anthropic's shape with %s", err, header)
			}
			res := messageStream(t, ant, messageParams(route, "Hello there"), antFaultHeader("status,code=503"))
			if !asError(res.Err, &aerr) || aerr.StatusCode != 503 || !strings.Contains(aerr.RawJSON(), `"type":"error"`) {
				t.Errorf("anthropic stream: %v, want a 503 in Anthropic's shape", res.Err)
			}
			var oerr *openai.Error
			_, err = oa.Chat.Completions.New(ctxT(t), chatParams(route, "Hello there"), faultHeader("status,code=503"))
			if !asError(err, &oerr) || oerr.StatusCode != 503 || !strings.Contains(oerr.RawJSON(), `"message"`) {
				t.Errorf("openai: %v, want a 503 in OpenAI's shape", err)
			}
		})
	}
}
