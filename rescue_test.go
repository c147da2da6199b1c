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
