package e2e

import (
	"net/http"
	"testing"

	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
)

// A prompt too long for a model's context moves on only to a model with
// a larger context: never the same model at another provider, never a
// smaller one. With none, the provider's error reaches the client.
func TestContextLengthEscalation(t *testing.T) {
	start(t, withDefaults(`
		model small alpha beta {
			context 4000
		}
		model tiny beta {
			context 1000
		}
		model big claude2 {
			context 16000
		}
		model cshort claude {
			context 2000
		}
		model olong beta {
			context 9000
		}
		route ctx small tiny big
		route ctx-none small tiny
		route actx cshort olong
`))
	oc, ac := oaClient(t), antClient(t)
	const tooLong = "status,code=400,error=context_length"

	var hr *http.Response
	resp, err := oc.Chat.Completions.New(ctxT(t), chatParams("ctx", prompt), faultHeader("alpha:"+tooLong), oaoption.WithResponseInto(&hr))
	if err != nil {
		t.Fatalf("no escalation: %v", err)
	}
	// small at beta and tiny are skipped: the next call is big's
	expectRoute(t, hr, "big", "claude2", "ctx", 2)
	if got := resp.Choices[0].Message.Content; got != claude2Text {
		t.Errorf("content %q", got)
	}

	s := chatStream(t, oc, chatParams("ctx", prompt), faultHeader("alpha:"+tooLong))
	if s.Err != nil || s.Text != claude2Text {
		t.Fatalf("stream: %q %v", s.Text, s.Err)
	}
	expectRoute(t, s.Resp, "big", "claude2", "ctx", 2)

	// no larger context: the provider's own error
	_, err = oc.Chat.Completions.New(ctxT(t), chatParams("ctx-none", prompt), faultHeader("alpha:"+tooLong), oaoption.WithResponseInto(&hr))
	var oerr *openai.Error
	if !asError(err, &oerr) || oerr.StatusCode != 400 || oerr.Code != "context_length_exceeded" {
		t.Fatalf("got %v, want the provider's 400 context_length_exceeded", err)
	}
	expectAttempts(t, oerr.Response.Header, "alpha", 1)

	// Anthropic's "prompt is too long"
	msg, err := ac.Messages.New(ctxT(t), messageParams("actx", prompt), antFaultHeader("claude:"+tooLong))
	if err != nil {
		t.Fatalf("no escalation from claude: %v", err)
	}
	if got := msg.Content[0].Text; got != betaText {
		t.Errorf("content %q, want beta's", got)
	}
	// ... which reaches an OpenAI client with OpenAI's code
	_, err = oc.Chat.Completions.New(ctxT(t), chatParams("cshort", prompt), faultHeader("claude:"+tooLong))
	if !asError(err, &oerr) || oerr.StatusCode != 400 || oerr.Code != "context_length_exceeded" || oerr.Param != "messages" {
		t.Errorf("got %v, want Anthropic's context-length error as OpenAI's 400 context_length_exceeded", err)
	}

	// a context-length error says nothing of the pair's health
	if info := pairInfo(t, "alpha", "small"); info.Stats.ErrorRate != 0 {
		t.Errorf("alpha's error rate %v after context-length errors", info.Stats.ErrorRate)
	}
}

// A content-policy refusal does not fall back unless fallback_on
// content_filter says so, whatever its status.
func TestContentFilterFallback(t *testing.T) {
	oc := oaClient(t)
	for _, on := range []bool{false, true} {
		route := ""
		if on {
			route = "fallback_on content_filter"
		}
		start(t, withDefaults(route))
		for _, code := range []string{"400", "500"} {
			var hr *http.Response
			resp, err := oc.Chat.Completions.New(ctxT(t), chatParams("chat", prompt),
				faultHeader("alpha:status,code="+code+",error=content_filter"), oaoption.WithResponseInto(&hr))
			if !on {
				var oerr *openai.Error
				if !asError(err, &oerr) || oerr.Code != "content_filter" {
					t.Fatalf("status %s: got %v, want the provider's content_filter error", code, err)
				}
				expectAttempts(t, oerr.Response.Header, "alpha", 1)
				continue
			}
			if err != nil {
				t.Fatalf("status %s with fallback_on content_filter: %v", code, err)
			}
			expectRoute(t, hr, "chat", "beta", "chat", 2)
			if resp.Choices[0].Message.Content != betaText {
				t.Errorf("content %q", resp.Choices[0].Message.Content)
			}
		}
	}
}

// retries tries a target again on a transient failure; a 429 whose
// Retry-After fits in max_retry_wait is waited out on the same target.
func TestRetrySameTarget(t *testing.T) {
	oc := oaClient(t)
	for _, tc := range []struct {
		name, fault, route string
		provider           string
	}{
		{"503 without retries", "status,code=503,count=1", "", "beta"},
		{"503 with retries", "status,code=503,count=1", "retries 2", "alpha"},
		{"two 503s with one retry", "status,code=503,count=2", "retries 1", "beta"},
		{"429 without max_retry_wait", "status,code=429,retry_after=1,count=1", "retries 2", "beta"},
		{"429 within max_retry_wait", "status,code=429,retry_after=1,count=1", "max_retry_wait 3s", "alpha"},
		{"429 beyond max_retry_wait", "status,code=429,retry_after=5,count=1", "max_retry_wait 3s", "beta"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := withDefaults(tc.route)
			s.Mocks[0].Lines = []string{"fault " + tc.fault}
			start(t, s)
			var hr *http.Response
			if _, err := oc.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), oaoption.WithResponseInto(&hr)); err != nil {
				t.Fatal(err)
			}
			attempts := 2
			if tc.name == "two 503s with one retry" {
				attempts = 3
			}
			expectRoute(t, hr, "chat", tc.provider, "chat", attempts)
		})
	}
}
