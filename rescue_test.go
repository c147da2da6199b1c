package llmroute

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// streamRecorder is a client's response whose headers are an event
// stream's, as the attempt writer sets them before the first event.
func streamRecorder() *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	rec.Header().Set("Content-Type", "text/event-stream")
	return rec
}

// The continuation's request: the text sent so far as a trailing
// assistant turn (trimmed), and the provider's method on top.
func TestContinuationBody(t *testing.T) {
	req := &strategies.Request{Endpoint: "/chat/completions", Stream: true,
		Body: []byte(`{"model":"m","stream":true,"messages":[{"role":"user","content":"Count."}]}`)}
	sp := newSplice(streamRecorder(), req, true)
	if _, err := sp.Write([]byte("data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"One \"}}]}\n\n")); err != nil {
		t.Fatal(err)
	}
	if !sp.broken() {
		t.Fatal("a text stream cannot be rescued")
	}
	sp.carry(nil)
	body, err := sp.continuationBody(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	if last := gjson.GetBytes(body, "messages.1"); last.Get("role").Str != "assistant" || last.Get("content").Str != "One" {
		t.Fatalf("continuation body %s", body)
	}
	for _, tc := range []struct {
		method, check string
	}{
		{upstreams.ContinuePrefill, `messages.#`},
		{upstreams.ContinueFinalMessage, `continue_final_message`},
		{upstreams.ContinueInstruction, `messages.2.role`},
	} {
		p := &upstreams.Provider{Name: "p", Continuation: tc.method}
		out, err := continueUpstream(body, p, sp)
		if err != nil {
			t.Fatal(err)
		}
		got := gjson.GetBytes(out, tc.check).String()
		switch tc.method {
		case upstreams.ContinuePrefill:
			if got != "2" {
				t.Errorf("prefill: %s", out)
			}
		case upstreams.ContinueFinalMessage:
			if got != "true" || gjson.GetBytes(out, "add_generation_prompt").String() != "false" {
				t.Errorf("continue_final_message: %s", out)
			}
		case upstreams.ContinueInstruction:
			if got != "user" {
				t.Errorf("instruction: %s", out)
			}
		}
	}
}

// A continuation that repeats the text already sent is a restart; one
// that goes on from it passes, with its first whitespace (trimmed off
// the prefill) dropped once.
func TestSpliceRestart(t *testing.T) {
	req := &strategies.Request{Endpoint: "/chat/completions", Stream: true, Body: []byte(`{"messages":[]}`)}
	chunk := func(text string) []byte {
		return []byte(`data: {"id":"x","choices":[{"index":0,"delta":{"content":"` + text + `"}}]}` + "\n\n")
	}
	for _, tc := range []struct {
		cont    []string
		restart bool
	}{
		{[]string{"Alpha ", "beta ", "gamma"}, true},
		{[]string{" gamma ", "delta ", "epsilon ", "zeta."}, false},
	} {
		rec := streamRecorder()
		sp := newSplice(rec, req, true)
		_, _ = sp.Write(chunk("Alpha "))
		_, _ = sp.Write(chunk("beta "))
		sp.broken()
		sp.carry(nil)
		var err error
		for _, c := range tc.cont {
			if _, err = sp.Write(chunk(c)); err != nil {
				break
			}
		}
		if restart := err == errRestarted; restart != tc.restart {
			t.Errorf("continuation %q: restart %v (err %v)", tc.cont, restart, err)
		}
		if !tc.restart && sp.sent.String() != "Alpha beta gamma delta epsilon zeta." {
			t.Errorf("sent %q", sp.sent.String())
		}
	}
}

// TestNewSpliceReadsRequest: a stream's splice knows, once the stream
// breaks, whether the request ends with an assistant turn (a prefill:
// not continued) and asks for several choices, read in place as gjson
// reads them.
func TestNewSpliceReadsRequest(t *testing.T) {
	for _, tc := range []struct {
		body            string
		prefilled, many bool
	}{
		{`{"messages":[{"role":"user","content":"a"}]}`, false, false},
		{`{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}`, true, false},
		{`{"messages":[{"role":"assistant","content":"b"},{"role":"user","content":"a"}]}`, false, false},
		{`{"messages":[{"content":"b","role":"assist\u0061nt"}], "n": 1}`, true, false},
		{`{"messages":[{"role":"user"}],"n":2}`, false, true},
		{`{"messages":[{"role":"user"}],"n":null}`, false, true},
		{`{"messages":{"role":"assistant"}}`, true, false},
		{`{"messages":[]}`, false, false},
		{`{"messages":"x"}`, false, false},
		{`{"messages":[{"role":["assistant"]}]}`, false, false},
	} {
		req := &strategies.Request{Endpoint: "/chat/completions", Stream: true, Body: []byte(tc.body)}
		sp := newSplice(streamRecorder(), req, true)
		if _, err := sp.Write([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"One \"}}]}\n\n")); err != nil {
			t.Fatal(err)
		}
		// The stream breaks: it can be continued unless the request
		// forbids it.
		if got, want := sp.broken(), !tc.prefilled && !tc.many; got != want {
			t.Errorf("%s: can be continued %v, want %v", tc.body, got, want)
		}
		if sp.prefilled != tc.prefilled || sp.tools != tc.many {
			t.Errorf("%s: prefilled %v, several choices %v; want %v, %v", tc.body, sp.prefilled, sp.tools, tc.prefilled, tc.many)
		}
		// as gjson reads it
		msgs := gjson.Get(tc.body, "messages").Array()
		prefilled := len(msgs) > 0 && msgs[len(msgs)-1].Get("role").Str == "assistant"
		n := gjson.Get(tc.body, "n")
		if prefilled != tc.prefilled || (n.Exists() && n.Int() != 1) != tc.many {
			t.Errorf("%s: the case disagrees with gjson", tc.body)
		}
	}
}

// TestSpliceWriteSplits: what the client gets of a stream and of its
// continuation does not depend on how the events are split into writes:
// each split in two gives what writing one event at a time gives.
func TestSpliceWriteSplits(t *testing.T) {
	ev := func(name, data string) string {
		if name != "" {
			return "event: " + name + "\ndata: " + data + "\n\n"
		}
		return "data: " + data + "\n\n"
	}
	chat := func(id, delta, finish string) string {
		return ev("", `{"id":"`+id+`","object":"chat.completion.chunk","created":7,"model":"m-`+id+`","choices":[{"index":0,"delta":`+delta+`,"finish_reason":`+finish+`}]}`)
	}
	msg := func(typ, rest string) string { return ev(typ, `{"type":"`+typ+`"`+rest+`}`) }
	for _, tc := range []struct {
		endpoint    string
		first, cont []string
		want        []string // in what the client gets of the continuation
		opening     string   // in the first call's opening, not to be sent again
	}{
		{"/chat/completions",
			[]string{chat("a", `{"role":"assistant","content":""}`, "null"), ": keep-alive\n\n", chat("a", `{"content":"One "}`, "null"), chat("a", `{"content":"two "}`, "null")},
			[]string{chat("b", `{"role":"assistant","content":""}`, "null"), chat("b", `{"content":"three "}`, "null"), chat("b", `{"content":"four."}`, "null"),
				chat("b", `{}`, `"stop"`), ev("", `{"id":"b","object":"chat.completion.chunk","created":9,"model":"m-b","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":2,"total_tokens":22}}`), ev("", "[DONE]")},
			[]string{`"id":"a"`, `"model":"m-a"`, "three", "four.", `"prompt_tokens":`, "[DONE]"}, `"role"`},
		{"/messages",
			[]string{msg("message_start", `,"message":{"id":"msg_a","model":"c-a","usage":{"input_tokens":9,"output_tokens":1}}`),
				msg("content_block_start", `,"index":0,"content_block":{"type":"text","text":""}`),
				msg("content_block_delta", `,"index":0,"delta":{"type":"text_delta","text":"One "}`),
				msg("content_block_delta", `,"index":0,"delta":{"type":"text_delta","text":"two "}`)},
			[]string{msg("message_start", `,"message":{"id":"msg_b","model":"c-b","usage":{"input_tokens":12,"output_tokens":1}}`),
				msg("content_block_start", `,"index":0,"content_block":{"type":"text","text":""}`),
				msg("content_block_delta", `,"index":0,"delta":{"type":"text_delta","text":"three "}`),
				msg("content_block_delta", `,"index":0,"delta":{"type":"text_delta","text":"four."}`),
				msg("content_block_stop", `,"index":0`),
				msg("message_delta", `,"delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}`),
				msg("message_stop", ``)},
			[]string{"three", "four.", "event: message_stop"}, "event: message_start"},
	} {
		t.Run(tc.endpoint, func(t *testing.T) {
			req := &strategies.Request{Endpoint: tc.endpoint, Stream: true, Body: []byte(`{"messages":[{"role":"user","content":"Count."}]}`)}
			first, cont := strings.Join(tc.first, ""), strings.Join(tc.cont, "")
			// run writes the first call's stream and, after it breaks, the
			// continuation's, each in the writes given; it returns what the
			// client got of each.
			run := func(firstWrites, contWrites []string) (string, string, string) {
				rec := streamRecorder()
				sp := newSplice(rec, req, true)
				for _, w := range firstWrites {
					if _, err := sp.Write([]byte(w)); err != nil {
						t.Fatalf("first call: %v", err)
					}
				}
				got1 := rec.Body.String()
				if !sp.broken() {
					t.Fatal("the stream cannot be continued")
				}
				sp.carry(nil)
				for _, w := range contWrites {
					if _, err := sp.Write([]byte(w)); err != nil {
						t.Fatalf("continuation: %v", err)
					}
				}
				return got1, rec.Body.String()[len(got1):], sp.sent.String()
			}
			got1, want2, wantSent := run(tc.first, tc.cont)
			if got1 != first {
				t.Fatalf("the first call's events changed:\n%q\nwant\n%q", got1, first)
			}
			for _, s := range tc.want {
				if !strings.Contains(want2, s) {
					t.Errorf("the continuation as the client got it lacks %q:\n%s", s, want2)
				}
			}
			if strings.Count(got1+want2, tc.opening) != 1 {
				t.Errorf("a second opening reached the client:\n%s", got1+want2)
			}
			if wantSent != "One two three four." {
				t.Errorf("sent %q", wantSent)
			}
			for i := 0; i <= len(first); i++ {
				if g1, _, _ := run([]string{first[:i], first[i:]}, tc.cont); g1 != first {
					t.Fatalf("first call split at %d:\n%q", i, g1)
				}
			}
			for i := 0; i <= len(cont); i++ {
				if _, g2, sent := run(tc.first, []string{cont[:i], cont[i:]}); g2 != want2 || sent != wantSent {
					t.Fatalf("continuation split at %d:\n%q\nwant\n%q", i, g2, want2)
				}
			}
		})
	}
}

// A stream that breaks with no candidate left to continue it is counted
// once in {llm.usage.*}: its prompt's estimate and a token per delta the
// client got, as in its record.
func TestBrokenStreamCountedOnce(t *testing.T) {
	chunk := "data: {\"choices\":[{\"delta\":{\"content\":\"word \"}}]}\n\n"
	a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for range 3 {
			_, _ = io.WriteString(w, chunk)
		}
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-stream
	})
	b := newUpstream(t, answer(200, okChat))
	c := newUpstream(t, answer(500, ``))
	// No candidate left (a provider pinned), or one left that cannot
	// continue (continuation off).
	pinned := gateway(t, a, b, c, `"rescue": true,`)
	unfit := mustLoadHandler(t, `{
		"providers": [
			{"name": "a", "proxy": `+gatewayProxy(a.addr())+`},
			{"name": "b", "continuation": "off", "proxy": `+gatewayProxy(b.addr())+`}
		],
		"models": [{"name": "m", "providers": ["a", "b"]}]
	}`)
	for name, tc := range map[string]struct {
		h     *Handler
		model string
	}{"pinned": {pinned, "a/m"}, "next cannot continue": {unfit, "m"}} {
		body := `{"model":"` + tc.model + `","stream":true,"messages":[{"role":"user","content":"Tell me a story about a lighthouse."}]}`
		_, repl, _, aborted := serveGateway(t, tc.h, "POST", "/v1/chat/completions", body)
		if !aborted {
			t.Fatalf("%s: the broken stream did not abort the response", name)
		}
		want := strategies.BuildRequest("/chat/completions", []byte(body)).PromptTokens
		if got := repl.ReplaceAll("{llm.usage.prompt_tokens} {llm.usage.completion_tokens}", ""); got != fmt.Sprintf("%d 3", want) {
			t.Errorf("%s: usage %q, want %d 3 (the prompt's estimate, a token per delta)", name, got, want)
		}
	}
}
