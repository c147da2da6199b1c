package llmroute

import (
	"net/http/httptest"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// The continuation's request: the text sent so far as a trailing
// assistant turn (trimmed), and the provider's method on top.
func TestContinuationBody(t *testing.T) {
	req := &strategies.Request{Endpoint: "/chat/completions", Stream: true,
		Body: []byte(`{"model":"m","stream":true,"messages":[{"role":"user","content":"Count."}]}`)}
	sp := newSplice(httptest.NewRecorder(), req, true)
	if _, err := sp.Write([]byte("data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"One \"}}]}\n\n")); err != nil {
		t.Fatal(err)
	}
	if !sp.broken() {
		t.Fatal("a text stream cannot be rescued")
	}
	sp.carry(nil, req)
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
		rec := httptest.NewRecorder()
		sp := newSplice(rec, req, true)
		_, _ = sp.Write(chunk("Alpha "))
		_, _ = sp.Write(chunk("beta "))
		sp.broken()
		sp.carry(nil, req)
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

// TestNewSpliceReadsRequest: a stream's splice knows whether the request
// ends with an assistant turn (a prefill: not continued) and asks for
// several choices, read in place as gjson reads them.
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
		sp := newSplice(httptest.NewRecorder(), req, true)
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
