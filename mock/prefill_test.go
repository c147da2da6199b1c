package mock

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestPrefill(t *testing.T) {
	const text = "One two three four."
	chat := func(last string) string {
		return `{"messages":[{"role":"user","content":"Count."},{"role":"assistant","content":` + last + `}]}`
	}
	for _, tc := range []struct {
		policy, path, body string
		status             int
		want               string
	}{
		{"", "/v1/chat/completions", chat(`"One two"`), 200, " three four."},
		{"continue", "/v1/messages", `{"max_tokens":9,"messages":[{"role":"user","content":"Count."},{"role":"assistant","content":[{"type":"text","text":"One two"}]}]}`, 200, " three four."},
		{"", "/v1/chat/completions", chat(`"Something else"`), 200, text},
		{"ignore", "/v1/chat/completions", chat(`"One two"`), 200, text},
		{"refuse", "/v1/chat/completions", chat(`"One two"`), 400, ""},
		{"refuse", "/v1/chat/completions", `{"messages":[{"role":"user","content":"Count."}]}`, 200, text},
	} {
		h := provision(t, &Handler{Text: text, Prefill: tc.policy})
		r := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(tc.body))
		r.Header.Set("anthropic-version", "2023-06-01")
		w := serve(t, h, r)
		if w.Code != tc.status {
			t.Errorf("%s %s: status %d, want %d: %s", tc.policy, tc.body, w.Code, tc.status, w.Body)
			continue
		}
		if tc.status != 200 {
			continue
		}
		got := gjson.Get(w.Body.String(), "choices.0.message.content").String()
		if strings.HasSuffix(tc.path, "/messages") {
			got = gjson.Get(w.Body.String(), "content.0.text").String()
		}
		if got != tc.want {
			t.Errorf("%s %s: answered %q, want %q", tc.policy, tc.body, got, tc.want)
		}
	}
	if err := (&Handler{Prefill: "maybe"}).Validate(); err == nil {
		t.Error("prefill maybe is valid")
	}
}

func TestErrorKinds(t *testing.T) {
	for _, tc := range []struct{ spec, path, want string }{
		{"status,code=400,error=context_length", "/v1/chat/completions", "context_length_exceeded"},
		{"status,code=400,error=context_length", "/v1/messages", "prompt is too long"},
		{"status,code=400,error=content_filter", "/v1/chat/completions", `"code":"content_filter"`},
		{"error_event,after=1", "/v1/chat/completions", `data: {"error":`},
		{"error_event,after=1", "/v1/messages", "event: error\ndata: "},
	} {
		h := provision(t, &Handler{Text: "a b c", Faults: []string{tc.spec}})
		body := `{"max_tokens":9,"messages":[{"role":"user","content":"hi"}]`
		if strings.HasPrefix(tc.spec, "error_event") {
			body += `,"stream":true`
		}
		r := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(body+"}"))
		r.Header.Set("anthropic-version", "2023-06-01")
		w := serve(t, h, r)
		if !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("%s on %s: %d %s, want %q in it", tc.spec, tc.path, w.Code, w.Body, tc.want)
		}
		if strings.HasPrefix(tc.spec, "error_event") && (strings.Contains(w.Body.String(), "[DONE]") || strings.Contains(w.Body.String(), "message_stop")) {
			t.Errorf("%s on %s: the stream went on after the error event: %s", tc.spec, tc.path, w.Body)
		}
	}
	if _, err := parseFault("status,error=tired"); err == nil {
		t.Error("error=tired parses")
	}
}

// A scripted reply is continued as the mock's text is: a prefill that
// begins it gets the rest.
func TestPrefillOfScriptedReply(t *testing.T) {
	h := provision(t, &Handler{Text: "Default answer.", Replies: []Reply{{Match: "list", Text: "1. Item one 2. Item two"}}})
	body := `{"messages":[{"role":"user","content":"A list, please."},{"role":"assistant","content":"1. Item one"}]}`
	w := serve(t, h, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body)))
	if got := gjson.Get(w.Body.String(), "choices.0.message.content").String(); got != " 2. Item two" {
		t.Errorf("continued reply %q, want %q", got, " 2. Item two")
	}
}
