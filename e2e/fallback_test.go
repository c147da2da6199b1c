package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	antoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
)

// fallbackSetup is the default configuration plus providers that cannot
// be reached and one that fails with a plain-text body. Broken streams
// are not rescued (see rescue_test.go): the mocks' answers differ.
func fallbackSetup(route string) setup {
	s := withDefaults(fmt.Sprintf(`
		rescue off
		provider dead1 http://127.0.0.1:%d
		provider dead2 http://127.0.0.1:%d
		provider text500 http://127.0.0.1:%d
		provider deadclaude http://127.0.0.1:%d {
			format anthropic
		}
		model dead dead1 dead2
		model plain-fail text500
		model dead-claude deadclaude
%s`, portDead1, portDead2, portExtra1, portDead1, route))
	s.Extra = fmt.Sprintf(`
http://:%d {
	bind 127.0.0.1
	respond "plain text failure" 500
}`, portExtra1)
	return s
}

// Faults that strike before the first byte: they must move on to the
// next provider, whatever the stream flag.
var beforeFirstByte = []struct{ name, fault string }{
	{"status_500", "status,code=500"},
	{"status_502", "status,code=502"},
	{"status_503", "status,code=503"},
	{"status_429_retry_after", "status,code=429,retry_after=1"},
	{"status_429_retry_after_ms", "status,code=429,retry_after_ms=200"},
	{"status_429_retry_after_date", "status,code=429,retry_after_date=2"},
	{"reset", "reset"},
	{"no_answer", "no_answer"},
	{"slow_first_token", "slow_first_token,delay=2s"},
}

func TestFallbackBeforeFirstByte(t *testing.T) {
	start(t, fallbackSetup(""))
	c := oaClient(t)
	ac := antClient(t)
	for _, f := range beforeFirstByte {
		t.Run(f.name+"/chat", func(t *testing.T) {
			restart(t)
			var hr *http.Response
			resp, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("alpha:"+f.fault), oaoption.WithResponseInto(&hr))
			if err != nil {
				t.Fatalf("request failed instead of falling back: %v", err)
			}
			expectRoute(t, hr, "chat", "beta", "chat", 2)
			if got := resp.Choices[0].Message.Content; got != betaText {
				t.Errorf("content %q, want %q", got, betaText)
			}
		})
		t.Run(f.name+"/chat_stream", func(t *testing.T) {
			restart(t)
			s := chatStream(t, c, chatParams("chat", prompt), faultHeader("alpha:"+f.fault))
			if s.Err != nil {
				t.Fatalf("stream failed instead of falling back: %v", s.Err)
			}
			expectRoute(t, s.Resp, "chat", "beta", "chat", 2)
			if s.Text != betaText || s.Finish != "stop" {
				t.Errorf("streamed %q (%s), want %q", s.Text, s.Finish, betaText)
			}
		})
	}
	// The Anthropic side, with Anthropic's own overload status.
	for _, f := range []struct{ name, fault string }{
		{"status_529", "status,code=529"},
		{"status_429_retry_after", "status,code=429,retry_after=1"},
		{"reset", "reset"},
		{"no_answer", "no_answer"},
		{"slow_first_token", "slow_first_token,delay=2s"},
	} {
		t.Run(f.name+"/messages", func(t *testing.T) {
			restart(t)
			var hr *http.Response
			msg, err := ac.Messages.New(ctxT(t), messageParams("claude-chat", prompt), antFaultHeader("claude:"+f.fault), antoption.WithResponseInto(&hr))
			if err != nil {
				t.Fatalf("request failed instead of falling back: %v", err)
			}
			expectRoute(t, hr, "claude-chat", "claude2", "claude-chat", 2)
			if msg.Content[0].Text != claude2Text {
				t.Errorf("content %q", msg.Content[0].Text)
			}
		})
		t.Run(f.name+"/messages_stream", func(t *testing.T) {
			restart(t)
			s := messageStream(t, ac, messageParams("claude-chat", prompt), antFaultHeader("claude:"+f.fault))
			if s.Err != nil {
				t.Fatalf("stream failed instead of falling back: %v", s.Err)
			}
			expectRoute(t, s.Resp, "claude-chat", "claude2", "claude-chat", 2)
			if s.Text != claude2Text || s.Finish != "end_turn" {
				t.Errorf("streamed %q (%s), want %q", s.Text, s.Finish, claude2Text)
			}
		})
	}
}

func TestNoFallbackOnClientErrors(t *testing.T) {
	start(t, fallbackSetup(""))
	c := oaClient(t)
	for _, code := range []int{400, 404, 422} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/stream=%v", code, stream), func(t *testing.T) {
				fault := faultHeader(fmt.Sprintf("alpha:status,code=%d", code))
				var err error
				if stream {
					s := chatStream(t, c, chatParams("chat", prompt), fault)
					if s.Events > 0 {
						t.Errorf("got %d events", s.Events)
					}
					err = s.Err
				} else {
					_, err = c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), fault)
				}
				var oerr *openai.Error
				if !asError(err, &oerr) {
					t.Fatalf("got %v, want an *openai.Error", err)
				}
				if oerr.StatusCode != code {
					t.Errorf("status %d, want %d", oerr.StatusCode, code)
				}
				// the mock's own error body reaches the client
				if !strings.Contains(oerr.Message, fmt.Sprintf("injected %d fault", code)) {
					t.Errorf("message %q", oerr.Message)
				}
				got := routeOf(oerr.Response.Header)
				if got.Attempts != 1 || got.Provider != "alpha" || got.Model != "chat" || got.Route != "chat" {
					t.Errorf("routing headers %s, want alpha after 1 attempt", got)
				}
			})
		}
	}
	t.Run("anthropic 400", func(t *testing.T) {
		ac := antClient(t)
		_, err := ac.Messages.New(ctxT(t), messageParams("claude-chat", prompt), antFaultHeader("claude:status,code=400"))
		var aerr *anthropic.Error
		if !asError(err, &aerr) || aerr.StatusCode != 400 {
			t.Fatalf("got %v, want a 400 *anthropic.Error", err)
		}
		if got := routeOf(aerr.Response.Header); got.Attempts != 1 || got.Provider != "claude" {
			t.Errorf("routing headers %s", got)
		}
		if !strings.Contains(aerr.RawJSON(), `"type":"error"`) || !strings.Contains(aerr.RawJSON(), "invalid_request_error") {
			t.Errorf("error body %s", aerr.RawJSON())
		}
	})
}

// Faults after the first byte reached the client: no fallback is
// possible any more, and the client must see an error, never a clean end.
var afterFirstByte = []struct{ name, fault string }{
	{"cut", "cut,after=2"},
	{"stall", "stall,after=2"},
	{"malformed", "malformed,after=2"},
}

func TestStreamBreaksAfterFirstByte(t *testing.T) {
	start(t, fallbackSetup(""))
	c := oaClient(t)
	ac := antClient(t)
	for _, f := range afterFirstByte {
		t.Run(f.name+"/chat_stream", func(t *testing.T) {
			restart(t)
			s := chatStream(t, c, chatParams("chat", prompt), faultHeader("alpha:"+f.fault))
			if s.Err == nil {
				t.Fatalf("the stream ended cleanly after %q (%d events, finish %q)", s.Text, s.Events, s.Finish)
			}
			t.Logf("SDK error: %v", s.Err)
			expectRoute(t, s.Resp, "chat", "alpha", "chat", 1)
			if !strings.HasPrefix(alphaText, s.Text) || s.Text == "" {
				t.Errorf("received %q, want a non-empty prefix of alpha's answer", s.Text)
			}
			if s.Text == alphaText {
				t.Errorf("received the whole answer despite the fault")
			}
		})
		t.Run(f.name+"/messages_stream", func(t *testing.T) {
			restart(t)
			s := messageStream(t, ac, messageParams("claude-chat", prompt), antFaultHeader("claude:"+f.fault))
			if s.Err == nil {
				t.Fatalf("the stream ended cleanly after %q (%d events, stop %q)", s.Text, s.Events, s.Finish)
			}
			t.Logf("SDK error: %v", s.Err)
			expectRoute(t, s.Resp, "claude-chat", "claude", "claude-chat", 1)
			if !strings.HasPrefix(claudeText, s.Text) || s.Text == "" {
				t.Errorf("received %q, want a non-empty prefix of claude's answer", s.Text)
			}
		})
	}
	// Non-streamed bodies broken half way must not look complete either:
	// a JSON answer is held until it is whole, so the next target answers
	// (see TestJSONAnswerCutShort for one too long to hold).
	for _, f := range []struct{ name, fault string }{{"cut", "cut"}, {"stall", "stall"}} {
		t.Run(f.name+"/chat", func(t *testing.T) {
			restart(t)
			var hr *http.Response
			resp, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("alpha:"+f.fault), oaoption.WithResponseInto(&hr))
			if err != nil {
				t.Fatalf("no fallback after a half body: %v", err)
			}
			expectRoute(t, hr, "chat", "beta", "chat", 2)
			if resp.Choices[0].Message.Content != betaText {
				t.Errorf("content %q", resp.Choices[0].Message.Content)
			}
		})
	}
}

func TestCooldown(t *testing.T) {
	t.Run("burst reaches fail_threshold", func(t *testing.T) {
		s := fallbackSetup(`
		fail_threshold 2
		cooldown 30s`)
		s.Mocks[0].Lines = []string{"fault status,code=503,count=2"}
		start(t, s)
		c := oaClient(t)
		for i, want := range []struct {
			provider string
			attempts int
		}{{"beta", 2}, {"beta", 2}, {"beta", 1}, {"beta", 1}} {
			var hr *http.Response
			resp, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), oaoption.WithResponseInto(&hr))
			if err != nil {
				t.Fatalf("request %d: %v", i+1, err)
			}
			// alpha answers again after its two failures, so beta with
			// one attempt means alpha was skipped
			expectRoute(t, hr, "chat", want.provider, "chat", want.attempts)
			if resp.Choices[0].Message.Content != betaText {
				t.Errorf("request %d: content %q", i+1, resp.Choices[0].Message.Content)
			}
		}
		if until := cooldownUntil(t, "alpha", "mock-chat"); time.Until(until) < 25*time.Second {
			t.Errorf("alpha cools down until %v, want about 30s from now", until)
		}
		// other models of alpha are not affected
		var hr *http.Response
		if _, err := c.Chat.Completions.New(ctxT(t), chatParams("only-alpha", prompt), oaoption.WithResponseInto(&hr)); err != nil {
			t.Fatal(err)
		}
		expectRoute(t, hr, "only-alpha", "alpha", "only-alpha", 1)
	})

	t.Run("429 retry_after cools the pair down", func(t *testing.T) {
		start(t, fallbackSetup(`
		fail_threshold 5
		cooldown 30s`))
		c := oaClient(t)
		var hr *http.Response
		before := time.Now()
		if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("alpha:status,code=429,retry_after=2"), oaoption.WithResponseInto(&hr)); err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		expectRoute(t, hr, "chat", "beta", "chat", 2)
		if until := cooldownUntil(t, "alpha", "mock-chat"); until.Before(before.Add(2*time.Second)) || until.After(after.Add(2*time.Second)) {
			t.Errorf("cooldown ends %v after the request, want the 2s of Retry-After", until.Sub(before))
		}
		// no fault now: alpha would answer, but it cools down for 2s
		if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), oaoption.WithResponseInto(&hr)); err != nil {
			t.Fatal(err)
		}
		expectRoute(t, hr, "chat", "beta", "chat", 1)
		// streams are routed the same way
		s := chatStream(t, c, chatParams("chat", prompt))
		if s.Err != nil {
			t.Fatal(s.Err)
		}
		expectRoute(t, s.Resp, "chat", "beta", "chat", 1)
	})

	t.Run("429 retry_after_date cools the pair down", func(t *testing.T) {
		start(t, fallbackSetup(`
		fail_threshold 5`))
		c := oaClient(t)
		var hr *http.Response
		if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("alpha:status,code=429,retry_after_date=3"), oaoption.WithResponseInto(&hr)); err != nil {
			t.Fatal(err)
		}
		expectRoute(t, hr, "chat", "beta", "chat", 2)
		if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), oaoption.WithResponseInto(&hr)); err != nil {
			t.Fatal(err)
		}
		expectRoute(t, hr, "chat", "beta", "chat", 1)
	})

	t.Run("after retry_after_ms the pair is used again", func(t *testing.T) {
		var hr *http.Response
		c, until := whileCooling(t, func() (openai.Client, time.Time) {
			start(t, fallbackSetup(`
		fail_threshold 5`))
			c := oaClient(t)
			if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("alpha:status,code=429,retry_after_ms=300"), oaoption.WithResponseInto(&hr)); err != nil {
				t.Fatal(err)
			}
			expectRoute(t, hr, "chat", "beta", "chat", 2)
			return c, cooldownUntil(t, "alpha", "mock-chat")
		})
		time.Sleep(time.Until(until) + 50*time.Millisecond)
		resp, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatal(err)
		}
		expectRoute(t, hr, "chat", "alpha", "chat", 1)
		if resp.Choices[0].Message.Content != alphaText {
			t.Errorf("content %q", resp.Choices[0].Message.Content)
		}
		// the success closed the circuit (recorded just after the answer)
		for deadline := time.Now().Add(time.Second); !cooldownUntil(t, "alpha", "mock-chat").IsZero(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("alpha still has a cooldown until %v", cooldownUntil(t, "alpha", "mock-chat"))
			}
		}
	})

	t.Run("threshold cooldown ends and a failed probe doubles it", func(t *testing.T) {
		var hr *http.Response
		c, until := whileCooling(t, func() (openai.Client, time.Time) {
			start(t, fallbackSetup(`
		fail_threshold 1
		cooldown 300ms`))
			c := oaClient(t)
			if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("alpha:status,code=500"), oaoption.WithResponseInto(&hr)); err != nil {
				t.Fatal(err)
			}
			expectRoute(t, hr, "chat", "beta", "chat", 2)
			return c, cooldownUntil(t, "alpha", "mock-chat")
		})
		time.Sleep(time.Until(until) + 50*time.Millisecond)
		// the half-open probe fails again: the next cooldown is 600ms
		probe := time.Now()
		if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("alpha:status,code=500"), oaoption.WithResponseInto(&hr)); err != nil {
			t.Fatal(err)
		}
		done := time.Now()
		expectRoute(t, hr, "chat", "beta", "chat", 2)
		if until := cooldownUntil(t, "alpha", "mock-chat"); until.Before(probe.Add(600*time.Millisecond)) || until.After(done.Add(600*time.Millisecond)) {
			t.Errorf("cooldown after a failed probe ends %v after it, want 600ms", until.Sub(probe))
		}
	})

	t.Run("a broken stream counts as a failure", func(t *testing.T) {
		start(t, fallbackSetup(`
		fail_threshold 1
		cooldown 30s`))
		c := oaClient(t)
		if s := chatStream(t, c, chatParams("chat", prompt), faultHeader("alpha:cut")); s.Err == nil {
			t.Fatal("clean end of a cut stream")
		}
		// the client sees the error event a moment before the gateway
		// records the failure
		for deadline := time.Now().Add(time.Second); cooldownUntil(t, "alpha", "mock-chat").IsZero(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the broken stream was not recorded as a failure of alpha")
			}
		}
		var hr *http.Response
		if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), oaoption.WithResponseInto(&hr)); err != nil {
			t.Fatal(err)
		}
		expectRoute(t, hr, "chat", "beta", "chat", 1)
	})

	t.Run("cooling pairs remain a last resort", func(t *testing.T) {
		start(t, fallbackSetup(`
		fail_threshold 5`))
		c := oaClient(t)
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("only-alpha", prompt), faultHeader("alpha:status,code=429,retry_after=5"))
		var oerr *openai.Error
		if !asError(err, &oerr) || oerr.StatusCode != 429 {
			t.Fatalf("got %v, want 429", err)
		}
		// alpha is the only provider: it is tried despite its cooldown
		var hr *http.Response
		if _, err := c.Chat.Completions.New(ctxT(t), chatParams("only-alpha", prompt), oaoption.WithResponseInto(&hr)); err != nil {
			t.Fatalf("only provider cooling down: %v", err)
		}
		expectRoute(t, hr, "only-alpha", "alpha", "only-alpha", 1)
	})
}

// cooling reports whether a request for chat sent now goes straight to
// beta because alpha cools down until the time given. The request asks
// alpha for a 500, so a call that reached alpha shows (two attempts): on
// a machine too busy to send the request before the cooldown ended, the
// gateway rightly tries alpha again, and the check cannot be made (false).
// A request answered by beta alone before the cooldown ended is the pass;
// one that alpha served, or that reached alpha while the cooldown was on
// by the answer's time, fails the test.
func cooling(t *testing.T, c openai.Client, until time.Time) bool {
	t.Helper()
	var hr *http.Response
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("alpha:status,code=500"), oaoption.WithResponseInto(&hr)); err != nil {
		t.Fatal(err)
	}
	got := routeOf(hr.Header)
	switch {
	case got.Provider == "beta" && got.Attempts == 1:
		return true
	case got.Provider == "beta" && got.Attempts == 2 && time.Now().After(until):
		t.Logf("the cooldown ended before the gateway saw the request; trying again")
		return false
	}
	t.Fatalf("while alpha cools down until %v: routed %s", until, got)
	return false
}

// whileCooling runs scenario (which starts a configuration and makes
// alpha cool down) and checks that alpha is skipped until the cooldown
// ends; a try the machine was too busy to check is run again. It returns
// the client and the cooldown's end of the try that was checked.
func whileCooling(t *testing.T, scenario func() (openai.Client, time.Time)) (openai.Client, time.Time) {
	t.Helper()
	for try := 1; ; try++ {
		c, until := scenario()
		if cooling(t, c, until) {
			return c, until
		}
		if try == 5 {
			t.Fatalf("the machine was too busy to send a request within the cooldown, %d times", try)
		}
	}
}

func TestAllTargetsFail(t *testing.T) {
	start(t, fallbackSetup(""))
	c := oaClient(t)

	t.Run("both 503", func(t *testing.T) {
		restart(t)
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("status,code=503"))
		var oerr *openai.Error
		if !asError(err, &oerr) {
			t.Fatalf("got %v", err)
		}
		if oerr.StatusCode != 503 || oerr.Code == "" || oerr.Message == "" {
			t.Errorf("status %d code %q message %q", oerr.StatusCode, oerr.Code, oerr.Message)
		}
		if got := routeOf(oerr.Response.Header); got.Attempts != 2 || got.Provider != "beta" {
			t.Errorf("routing headers %s, want beta after 2 attempts", got)
		}
		if ct := oerr.Response.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
	})

	t.Run("both 503 streamed", func(t *testing.T) {
		restart(t)
		s := chatStream(t, c, chatParams("chat", prompt), faultHeader("status,code=503"))
		var oerr *openai.Error
		if !asError(s.Err, &oerr) || oerr.StatusCode != 503 || routeOf(oerr.Response.Header).Attempts != 2 {
			t.Errorf("got %v", s.Err)
		}
	})

	t.Run("connect refused", func(t *testing.T) {
		restart(t)
		for _, stream := range []bool{false, true} {
			var err error
			if stream {
				err = chatStream(t, c, chatParams("dead", prompt)).Err
			} else {
				_, err = c.Chat.Completions.New(ctxT(t), chatParams("dead", prompt))
			}
			var oerr *openai.Error
			if !asError(err, &oerr) {
				t.Fatalf("got %v", err)
			}
			if oerr.StatusCode != 502 || oerr.Code != "upstream_unavailable" || oerr.Type != "api_error" {
				t.Errorf("stream=%v: status %d code %q type %q", stream, oerr.StatusCode, oerr.Code, oerr.Type)
			}
			if got := routeOf(oerr.Response.Header); got.Attempts != 2 || got.Route != "dead" {
				t.Errorf("stream=%v: routing headers %s", stream, got)
			}
		}
	})

	t.Run("timeouts", func(t *testing.T) {
		restart(t)
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("no_answer"))
		var oerr *openai.Error
		if !asError(err, &oerr) {
			t.Fatalf("got %v", err)
		}
		if oerr.StatusCode != 504 || oerr.Code != "upstream_timeout" {
			t.Errorf("status %d code %q", oerr.StatusCode, oerr.Code)
		}
		if got := routeOf(oerr.Response.Header); got.Attempts != 2 {
			t.Errorf("routing headers %s", got)
		}
	})

	t.Run("429 last passes Retry-After", func(t *testing.T) {
		restart(t)
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt),
			faultHeader("alpha:status,code=503; beta:status,code=429,retry_after=7,retry_after_ms=7000"))
		var oerr *openai.Error
		if !asError(err, &oerr) {
			t.Fatalf("got %v", err)
		}
		h := oerr.Response.Header
		if oerr.StatusCode != 429 || h.Get("Retry-After") != "7" || h.Get("Retry-After-Ms") != "7000" {
			t.Errorf("status %d Retry-After %q retry-after-ms %q", oerr.StatusCode, h.Get("Retry-After"), h.Get("Retry-After-Ms"))
		}
		if oerr.Type != "rate_limit_error" {
			t.Errorf("type %q", oerr.Type)
		}
		if got := routeOf(h); got.Attempts != 2 || got.Provider != "beta" {
			t.Errorf("routing headers %s", got)
		}
	})

	t.Run("an earlier 429 leaves no Retry-After on a later error", func(t *testing.T) {
		restart(t)
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt),
			faultHeader("alpha:status,code=429,retry_after=9; beta:status,code=503"))
		var oerr *openai.Error
		if !asError(err, &oerr) || oerr.StatusCode != 503 {
			t.Fatalf("got %v, want 503", err)
		}
		if v := oerr.Response.Header.Get("Retry-After"); v != "" {
			t.Errorf("Retry-After %q of the first attempt leaked into the final error", v)
		}
	})

	t.Run("plain text upstream error is wrapped", func(t *testing.T) {
		restart(t)
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("plain-fail", prompt))
		var oerr *openai.Error
		if !asError(err, &oerr) {
			t.Fatalf("got %v", err)
		}
		if oerr.StatusCode != 500 || oerr.Code != "upstream_error" || !strings.Contains(oerr.Message, "plain text failure") {
			t.Errorf("status %d code %q message %q", oerr.StatusCode, oerr.Code, oerr.Message)
		}
	})

	t.Run("anthropic shape", func(t *testing.T) {
		restart(t)
		ac := antClient(t)
		_, err := ac.Messages.New(ctxT(t), messageParams("dead-claude", prompt))
		var aerr *anthropic.Error
		if !asError(err, &aerr) || aerr.StatusCode != 502 {
			t.Fatalf("got %v, want a 502 *anthropic.Error", err)
		}
		raw := aerr.RawJSON()
		if !strings.Contains(raw, `"type":"error"`) || !strings.Contains(raw, "upstream_unavailable") || !strings.Contains(raw, "api_error") {
			t.Errorf("error body %s", raw)
		}
		_, err = ac.Messages.New(ctxT(t), messageParams("claude-chat", prompt), antFaultHeader("status,code=529"))
		if !asError(err, &aerr) || aerr.StatusCode != 529 || !strings.Contains(aerr.RawJSON(), "overloaded_error") {
			t.Errorf("both 529: %v", err)
		}
	})
}

// A failed attempt leaves nothing on the answer of the next one.
func TestNoHeaderLeak(t *testing.T) {
	start(t, fallbackSetup(""))
	c := oaClient(t)
	check := func(t *testing.T, h http.Header) {
		t.Helper()
		if v := h.Values("X-Mock-Name"); len(v) != 1 || v[0] != "beta" {
			t.Errorf("X-Mock-Name %q, want exactly [beta]", v)
		}
		for _, name := range []string{"Retry-After", "Retry-After-Ms"} {
			if v := h.Values(name); len(v) != 0 {
				t.Errorf("%s %q leaked from the failed attempt", name, v)
			}
		}
		for _, name := range []string{"Content-Type", "X-Llm-Provider", "X-Llm-Attempts"} {
			if v := h.Values(name); len(v) != 1 {
				t.Errorf("%s has %d values: %q", name, len(v), v)
			}
		}
		expectAttempts(t, h, "beta", 2)
	}
	for _, fault := range []string{
		"alpha:status,code=429,retry_after=5,retry_after_ms=5000",
		"alpha:status,code=503,retry_after_date=5",
		"alpha:slow_first_token,delay=2s", // a stream's headers were already sent
	} {
		t.Run(fault, func(t *testing.T) {
			restart(t)
			var hr *http.Response
			resp, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader(fault), oaoption.WithResponseInto(&hr))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Choices[0].Message.Content != betaText {
				t.Errorf("content %q", resp.Choices[0].Message.Content)
			}
			check(t, hr.Header)

			restart(t)
			s := chatStream(t, c, chatParams("chat", prompt), faultHeader(fault))
			if s.Err != nil {
				t.Fatal(s.Err)
			}
			check(t, s.Resp.Header)
			if v := s.Resp.Header.Values("Cache-Control"); len(v) != 1 {
				t.Errorf("Cache-Control %q", v)
			}
		})
	}
}

// sseEvents splits an event stream into its events (blocks of lines
// separated by a blank line); a trailing partial block is returned too.
func sseEvents(body string) [][]string {
	var events [][]string
	var cur []string
	for _, line := range strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n") {
		if line == "" {
			if len(cur) > 0 {
				events = append(events, cur)
			}
			cur = nil
			continue
		}
		cur = append(cur, line)
	}
	if len(cur) > 0 {
		events = append(events, cur)
	}
	return events
}

// The error event a broken stream ends with must be well formed on the
// wire, and be what the SDKs report: no event without data before it,
// nothing after it.
func TestStreamErrorEvent(t *testing.T) {
	start(t, fallbackSetup(""))
	hc := newHTTPClient(t)
	c := oaClient(t)
	ac := antClient(t)
	for _, f := range afterFirstByte {
		for _, api := range []string{"chat", "messages"} {
			t.Run(f.name+"/"+api, func(t *testing.T) {
				restart(t)
				path, body, fault := "/v1/chat/completions", chatBody("chat", `"stream":true`), "alpha:"+f.fault
				if api == "messages" {
					path = "/v1/messages"
					body = []byte(`{"model":"claude-chat","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
					fault = "claude:" + f.fault
				}
				req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPost, gatewayURL+path, strings.NewReader(string(body)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("anthropic-version", "2023-06-01")
				req.Header.Set("X-Mock-Fault", fault)
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, readErr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if readErr == nil {
					t.Errorf("the response ended like a complete one; a broken stream should be aborted")
				}
				events := sseEvents(string(raw))
				if len(events) == 0 {
					t.Fatalf("no events: %q", raw)
				}
				for i, ev := range events {
					hasData := false
					for _, line := range ev {
						if d, ok := strings.CutPrefix(line, "data:"); ok {
							hasData = true
							d = strings.TrimSpace(d)
							if d != "[DONE]" && !json.Valid([]byte(d)) {
								t.Errorf("event %d: invalid data %q", i, d)
							}
						}
					}
					if !hasData {
						t.Errorf("event %d has no data line: %q (a partial event was passed on)", i, ev)
					}
				}
				last := strings.Join(events[len(events)-1], "\n")
				if !strings.Contains(last, `"stream_interrupted"`) {
					t.Errorf("last event is not the gateway's error: %q", last)
				}
				if api == "messages" && !strings.HasPrefix(last, "event: error\n") {
					t.Errorf("Anthropic error event without its event name: %q", last)
				}

				// what the SDKs report
				var serr error
				if api == "chat" {
					serr = chatStream(t, c, chatParams("chat", prompt), faultHeader(fault)).Err
				} else {
					serr = messageStream(t, ac, messageParams("claude-chat", prompt), antFaultHeader(fault)).Err
				}
				if serr == nil || !strings.Contains(serr.Error(), "stream_interrupted") {
					t.Errorf("SDK error %v, want the gateway's stream_interrupted error event", serr)
				}
			})
		}
	}
}
