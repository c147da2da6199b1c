package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
)

// rescueText is the answer of every mock of rescueSetup, so that any of
// them can continue what another began.
const rescueText = "One two three four five six seven eight nine ten eleven twelve."

// rescueSetup: four mocks with the same answer (two OpenAI-format, two
// Anthropic-format), one that refuses a prefill and one that restarts
// the answer instead of continuing it.
//   - twin: alpha, then beta (OpenAI to OpenAI)
//   - ctwin: claude, then claude2 (Anthropic to Anthropic)
//   - oa-to-ant: alpha, then claude2 (the continuation translated)
//   - ant-to-oa: claude, then beta
//   - refused: alpha, then the refusing mock
//   - restarted: alpha, then the restarting mock
//   - restarted-then-beta: alpha, the restarting mock, then beta
//   - no-rescue: a route over alpha and beta with rescue off
func rescueSetup() setup {
	mocks := []mockSite{
		{Port: portAlpha, Name: "alpha", Text: rescueText},
		{Port: portBeta, Name: "beta", Text: rescueText},
		{Port: portClaude, Name: "claude", Text: rescueText},
		{Port: portClaude2, Name: "claude2", Text: rescueText},
		{Port: portExtra1, Name: "refuser", Text: rescueText, Lines: []string{"prefill refuse"}},
		{Port: portExtra2, Name: "restarter", Text: rescueText, Lines: []string{"prefill ignore"}},
	}
	return setup{Mocks: mocks, Route: fmt.Sprintf(`
		provider alpha http://127.0.0.1:%d
		provider beta http://127.0.0.1:%d
		provider claude http://127.0.0.1:%d {
			format anthropic
		}
		provider claude2 http://127.0.0.1:%d {
			format anthropic
		}
		provider refuser http://127.0.0.1:%d
		provider restarter http://127.0.0.1:%d
		model twin alpha beta
		model ctwin claude claude2
		model oa-to-ant alpha claude2
		model ant-to-oa claude beta
		model refused alpha refuser
		model restarted alpha restarter
		model restarted-then-beta alpha restarter beta
		route no-rescue {
			models twin
			rescue off
		}
`, portAlpha, portBeta, portClaude, portClaude2, portExtra1, portExtra2)}
}

// Faults that break a stream after two content chunks reached the
// client.
var brokenStreams = []struct{ name, fault string }{
	{"cut", "cut,after=2"},
	{"stall", "stall,after=2"},
	{"malformed", "malformed,after=2"},
	{"error_event", "error_event,after=2"},
}

// rescueWords is the number of output tokens of rescueText: every call
// of a rescue together produces them once.
var rescueWords = int64(len(strings.Fields(rescueText)))

func TestRescueBrokenStream(t *testing.T) {
	start(t, rescueSetup())
	oc, ac := oaClient(t), antClient(t)
	for _, f := range brokenStreams {
		for _, tc := range []struct{ model, first, second string }{
			{"twin", "alpha", "beta"},
			{"oa-to-ant", "alpha", "claude2"},
		} {
			t.Run(f.name+"/chat/"+tc.model, func(t *testing.T) {
				restart(t)
				p := chatParams(tc.model, prompt)
				p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
				s := oaAccumulate(t, oc, p, faultHeader(tc.first+":"+f.fault))
				if s.Err != nil {
					t.Fatalf("the stream was not rescued: %v", s.Err)
				}
				expectRoute(t, s.Resp, tc.model, tc.first, tc.model, 1)
				if len(s.Acc.Choices) != 1 {
					t.Fatalf("%d choices", len(s.Acc.Choices))
				}
				ch := s.Acc.Choices[0]
				if ch.Message.Content != rescueText || ch.FinishReason != "stop" || ch.Message.Role != "assistant" {
					t.Errorf("accumulated %q (%s, role %q), want %q", ch.Message.Content, ch.FinishReason, ch.Message.Role, rescueText)
				}
				if s.Usage == nil {
					t.Fatal("no usage chunk")
				}
				// The continuation alone reports its prompt (the original
				// one plus the prefill) and the ten words it wrote; the
				// first call's two words and its prompt come on top.
				if s.Usage.CompletionTokens != rescueWords {
					t.Errorf("completion tokens %d, want %d (both calls)", s.Usage.CompletionTokens, rescueWords)
				}
				if alone := promptTokens(prompt, "One two"); s.Usage.PromptTokens <= alone {
					t.Errorf("prompt tokens %d, want more than the continuation's own %d", s.Usage.PromptTokens, alone)
				}
				if s.Usage.TotalTokens != s.Usage.PromptTokens+s.Usage.CompletionTokens {
					t.Errorf("usage %+v does not add up", *s.Usage)
				}
			})
		}
		for _, tc := range []struct{ model, first string }{
			{"ctwin", "claude"},
			{"ant-to-oa", "claude"},
		} {
			t.Run(f.name+"/messages/"+tc.model, func(t *testing.T) {
				restart(t)
				s := antAccumulate(t, ac, messageParams(tc.model, prompt), antFaultHeader(tc.first+":"+f.fault))
				if s.Err != nil {
					t.Fatalf("the stream was not rescued: %v (events %v)", s.Err, s.Types)
				}
				expectRoute(t, s.Resp, tc.model, tc.first, tc.model, 1)
				if got := antText(s.Msg); got != rescueText || s.Msg.StopReason != "end_turn" {
					t.Errorf("accumulated %q (%s), want %q", got, s.Msg.StopReason, rescueText)
				}
				if len(s.Msg.Content) != 1 {
					t.Errorf("%d content blocks, want the one text block continued", len(s.Msg.Content))
				}
				var starts, stops, deltas int
				for _, typ := range s.Types {
					switch typ {
					case "message_start":
						starts++
					case "message_stop":
						stops++
					case "message_delta":
						deltas++
					}
				}
				if starts != 1 || stops != 1 || deltas != 1 || s.Types[len(s.Types)-1] != "message_stop" {
					t.Errorf("events %v, want one message_start, one message_delta and one message_stop, last", s.Types)
				}
				if s.DeltaUsage.OutputTokens != rescueWords {
					t.Errorf("output tokens %d, want %d (both calls)", s.DeltaUsage.OutputTokens, rescueWords)
				}
			})
		}
	}
}

// The spliced stream on the wire: one id, one role, one finish, [DONE]
// last, and no event from the broken call's error.
func TestRescueWire(t *testing.T) {
	start(t, rescueSetup())
	hc := newHTTPClient(t)
	rawStream := func(t *testing.T, path string, body []byte, fault string) []string {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPost, gatewayURL+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("anthropic-version", "2023-06-01")
		req.Header.Set("X-Mock-Fault", fault)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("the rescued stream did not end cleanly: %v (%q)", err, b)
		}
		var data []string
		for _, ev := range sseEvents(string(b)) {
			for _, line := range ev {
				if d, ok := strings.CutPrefix(line, "data:"); ok {
					data = append(data, strings.TrimSpace(d))
				}
			}
		}
		return data
	}

	t.Run("chat", func(t *testing.T) {
		data := rawStream(t, "/v1/chat/completions", chatBody("twin", `"stream":true`, `"stream_options":{"include_usage":true}`), "alpha:cut,after=3")
		if len(data) == 0 || data[len(data)-1] != "[DONE]" {
			t.Fatalf("stream %q, want [DONE] last", data)
		}
		ids := map[string]bool{}
		var roles, finishes int
		var text strings.Builder
		for _, d := range data[:len(data)-1] {
			var ch struct {
				ID      string `json:"id"`
				Choices []struct {
					Delta struct {
						Role    string `json:"role"`
						Content string `json:"content"`
					} `json:"delta"`
					FinishReason *string `json:"finish_reason"`
				} `json:"choices"`
			}
			if err := json.Unmarshal([]byte(d), &ch); err != nil {
				t.Fatalf("chunk %q: %v", d, err)
			}
			ids[ch.ID] = true
			for _, c := range ch.Choices {
				if c.Delta.Role != "" {
					roles++
				}
				if c.FinishReason != nil {
					finishes++
				}
				text.WriteString(c.Delta.Content)
			}
		}
		if len(ids) != 1 || roles != 1 || finishes != 1 {
			t.Errorf("ids %v, %d roles, %d finishes; want one of each", ids, roles, finishes)
		}
		if text.String() != rescueText {
			t.Errorf("text %q", text.String())
		}
	})

	t.Run("messages", func(t *testing.T) {
		data := rawStream(t, "/v1/messages", []byte(`{"model":"ctwin","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}`), "claude:cut,after=3")
		var types []string
		var text strings.Builder
		var inputStart, inputDelta int64
		for _, d := range data {
			var ev struct {
				Type    string `json:"type"`
				Index   *int   `json:"index"`
				Message struct {
					Usage struct {
						InputTokens int64 `json:"input_tokens"`
					} `json:"usage"`
				} `json:"message"`
				Delta struct {
					Text string `json:"text"`
				} `json:"delta"`
				Usage struct {
					InputTokens int64 `json:"input_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal([]byte(d), &ev); err != nil {
				t.Fatalf("event %q: %v", d, err)
			}
			types = append(types, ev.Type)
			if ev.Index != nil && *ev.Index != 0 {
				t.Errorf("event %s has index %d; the text block is block 0", d, *ev.Index)
			}
			switch ev.Type {
			case "content_block_delta":
				text.WriteString(ev.Delta.Text)
			case "message_start":
				inputStart = ev.Message.Usage.InputTokens
			case "message_delta":
				inputDelta = ev.Usage.InputTokens
			}
		}
		want := "message_start content_block_start"
		if got := strings.Join(types, " "); !strings.HasPrefix(got, want) || !strings.HasSuffix(got, "content_block_stop message_delta message_stop") ||
			strings.Count(got, "content_block_start") != 1 || strings.Count(got, "message_start") != 1 {
			t.Errorf("events %s", got)
		}
		if text.String() != rescueText {
			t.Errorf("text %q", text.String())
		}
		// message_delta's input counts both calls: the first's (as its
		// message_start said) and the continuation's, which is longer.
		if inputDelta <= 2*inputStart {
			t.Errorf("input tokens %d in message_delta, want more than twice the first call's %d", inputDelta, inputStart)
		}
	})
}

// A stream whose finish came but whose terminator did not is complete:
// the gateway ends it, with no second call.
func TestStreamWithoutTerminator(t *testing.T) {
	start(t, rescueSetup())
	oc, ac := oaClient(t), antClient(t)
	for _, model := range []string{"twin", "no-rescue"} {
		s := oaAccumulate(t, oc, chatParams(model, prompt), faultHeader("alpha:no_done"))
		if s.Err != nil {
			t.Fatalf("%s: %v", model, s.Err)
		}
		expectRoute(t, s.Resp, "twin", "alpha", model, 1)
		if len(s.Acc.Choices) != 1 || s.Acc.Choices[0].Message.Content != rescueText || s.Acc.Choices[0].FinishReason != "stop" {
			t.Errorf("%s: accumulated %+v", model, s.Acc.Choices)
		}
	}
	m := antAccumulate(t, ac, messageParams("ctwin", prompt), antFaultHeader("claude:no_done"))
	if m.Err != nil {
		t.Fatal(m.Err)
	}
	expectRoute(t, m.Resp, "ctwin", "claude", "ctwin", 1)
	if antText(m.Msg) != rescueText || m.Types[len(m.Types)-1] != "message_stop" {
		t.Errorf("accumulated %q, events %v", antText(m.Msg), m.Types)
	}

	// An OpenAI client of the Anthropic provider that asked for usage
	// gets its usage chunk, as message_stop would have given it.
	p := chatParams("ctwin", prompt)
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	s := oaAccumulate(t, oc, p, faultHeader("claude:no_done"))
	if s.Err != nil {
		t.Fatal(s.Err)
	}
	expectRoute(t, s.Resp, "ctwin", "claude", "ctwin", 1)
	if len(s.Acc.Choices) != 1 || s.Acc.Choices[0].Message.Content != rescueText || s.Acc.Choices[0].FinishReason != "stop" {
		t.Errorf("translated: accumulated %+v", s.Acc.Choices)
	}
	if s.Usage == nil || s.Usage.PromptTokens == 0 || s.Usage.CompletionTokens == 0 {
		t.Errorf("translated: usage chunk %+v, want the call's usage", s.Usage)
	}
}

// When no candidate can continue (it refuses the prefill, restarts the
// answer, or rescue is off), the client gets the honest error event; a
// restart is a failed attempt (not the pair's failure), and the next
// candidate may continue.
func TestRescueRefused(t *testing.T) {
	start(t, rescueSetup())
	oc := oaClient(t)
	for _, model := range []string{"refused", "restarted", "no-rescue"} {
		t.Run(model, func(t *testing.T) {
			restart(t)
			s := chatStream(t, oc, chatParams(model, prompt), faultHeader("alpha:cut,after=2"))
			if s.Err == nil || !strings.Contains(s.Err.Error(), "stream_interrupted") {
				t.Fatalf("stream ended with %v after %q, want the stream_interrupted error", s.Err, s.Text)
			}
			if s.Text != "One two " || s.Finish != "" {
				t.Errorf("received %q (finish %q), want the first call's two words and no finish", s.Text, s.Finish)
			}
		})
	}
	t.Run("restarted-then-beta", func(t *testing.T) {
		restart(t)
		s := oaAccumulate(t, oc, chatParams("restarted-then-beta", prompt), faultHeader("alpha:cut,after=2"))
		if s.Err != nil {
			t.Fatalf("not rescued: %v", s.Err)
		}
		if got := s.Acc.Choices[0].Message.Content; got != rescueText {
			t.Errorf("accumulated %q, want %q (the restart left out)", got, rescueText)
		}
		// the restart fails the rescue, not the restarting mock: its
		// continuation method does not suit it, it is not down (as with
		// a refused prefill), so it neither cools down nor errs
		if info := pairInfo(t, "restarter", "restarted-then-beta"); info.Stats.ErrorRate != 0 || !info.CooldownUntil.IsZero() {
			t.Errorf("the restart counted against the restarting pair: %+v", info)
		}
	})
}

// A stream with a tool call in progress is not continued.
func TestRescueSkipsToolCalls(t *testing.T) {
	start(t, rescueSetup())
	oc := oaClient(t)
	p := chatParams("twin", prompt)
	p.Tools = []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name:       "lookup",
		Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string"}}},
	})}
	s := oaAccumulate(t, oc, p, faultHeader("alpha:cut,after=2"), oaoption.WithMaxRetries(0))
	if s.Err == nil || !strings.Contains(s.Err.Error(), "stream_interrupted") {
		t.Fatalf("a broken tool call stream ended with %v, want the stream_interrupted error", s.Err)
	}
	expectRoute(t, s.Resp, "twin", "alpha", "twin", 1)
}
