package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
)

const slowText = "one two three four five six"

// A stream that takes longer than first_byte_timeout in total but never
// pauses for stream_idle_timeout is not cut; one that pauses longer is
// (not rescued here: beta's answer is another).
func TestSlowStreams(t *testing.T) {
	s := withDefaults(fmt.Sprintf(`
		provider steady http://127.0.0.1:%d
		provider halting http://127.0.0.1:%d
		model steady steady
		model halting halting beta
		rescue off
`, portExtra1, portExtra2))
	s.Mocks = append(s.Mocks,
		mockSite{Port: portExtra1, Name: "steady", Text: slowText, Lines: []string{"ttft 300ms", "tokens_per_second 5"}},
		mockSite{Port: portExtra2, Name: "halting", Text: slowText, Lines: []string{"ttft 100ms", "tokens_per_second 1.4"}},
	)
	start(t, s)
	c := oaClient(t)

	t.Run("steady", func(t *testing.T) {
		begin := time.Now()
		var hr *http.Response
		stream := c.Chat.Completions.NewStreaming(ctxT(t), chatParams("steady", prompt), oaoption.WithResponseInto(&hr))
		var text strings.Builder
		var first, last time.Time
		for stream.Next() {
			for _, ch := range stream.Current().Choices {
				if ch.Delta.Content == "" {
					continue
				}
				if first.IsZero() {
					first = time.Now()
				}
				last = time.Now()
				text.WriteString(ch.Delta.Content)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("a steady stream was cut after %v: %v", time.Since(begin), err)
		}
		stream.Close()
		if text.String() != slowText {
			t.Errorf("text %q", text.String())
		}
		// five gaps of 200ms: the chunks must reach the client as they come
		if d := last.Sub(first); d < 600*time.Millisecond {
			t.Errorf("the chunks arrived within %v: the stream was buffered", d)
		}
		expectRoute(t, hr, "steady", "steady", "steady", 1)
	})

	t.Run("halting", func(t *testing.T) {
		st := chatStream(t, c, chatParams("halting", prompt))
		if st.Err == nil || !strings.Contains(st.Err.Error(), "stream_idle_timeout") {
			t.Errorf("a stream silent for 700ms ended with %v, want the idle timeout error", st.Err)
		}
		if st.Text != "one " {
			t.Errorf("text %q, want the first chunk only", st.Text)
		}
		// the first chunk committed the answer: no fallback to beta
		expectRoute(t, st.Resp, "halting", "halting", "halting", 1)
	})
}

// A client that gives up is not a provider failure.
func TestClientGoesAway(t *testing.T) {
	start(t, withDefaults(`
		fail_threshold 1
		cooldown 30s`))
	c := oaClient(t)
	for _, stream := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		var err error
		if stream {
			st := c.Chat.Completions.NewStreaming(ctx, chatParams("chat", prompt), faultHeader("alpha:no_answer"))
			for st.Next() {
			}
			err = st.Err()
			st.Close()
		} else {
			_, err = c.Chat.Completions.New(ctx, chatParams("chat", prompt), faultHeader("alpha:no_answer"))
		}
		cancel()
		if err == nil {
			t.Fatalf("stream=%v: the request succeeded", stream)
		}
	}
	time.Sleep(600 * time.Millisecond) // past first_byte_timeout, had the attempt gone on
	if until := cooldownUntil(t, "alpha", "mock-chat"); !until.IsZero() {
		t.Errorf("a client going away cooled alpha down until %v", until)
	}
	var hr *http.Response
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), oaoption.WithResponseInto(&hr)); err != nil {
		t.Fatal(err)
	}
	expectRoute(t, hr, "chat", "alpha", "chat", 1)
}

func TestMaxAttempts(t *testing.T) {
	start(t, withDefaults(`
		max_attempts 1`))
	c := oaClient(t)
	_, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("alpha:status,code=503"))
	var oerr *openai.Error
	if !asError(err, &oerr) || oerr.StatusCode != 503 {
		t.Fatalf("got %v, want alpha's 503", err)
	}
	if got := routeOf(oerr.Response.Header); got.Attempts != 1 || got.Provider != "alpha" {
		t.Errorf("routing headers %s", got)
	}
}

// Many clients at once, streams and not, two thirds of them falling
// back; in rounds, to give the race detector its chances. The timeouts
// are long: this test is about concurrency, not about a busy machine.
func TestConcurrentRequests(t *testing.T) {
	start(t, withDefaults(`
		first_byte_timeout 10s
		stream_idle_timeout 10s`))
	c := oaClient(t)
	ac := antClient(t)
	const rounds, workers, each = 3, 24, 6
	errs := make(chan error, rounds*workers*each)
	for range rounds {
		concurrentRound(t, c, ac, workers, each, errs)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func concurrentRound(t *testing.T, c openai.Client, ac anthropic.Client, workers, each int, errs chan<- error) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				fault, provider, want := "", "alpha", alphaText
				switch (w + i) % 3 {
				case 1:
					fault, provider, want = "alpha:status,code=503", "beta", betaText
				case 2:
					fault, provider, want = "alpha:reset", "beta", betaText
				}
				var text string
				var h http.Header
				var err error
				switch {
				case w%4 == 3:
					fault = strings.ReplaceAll(fault, "alpha", "claude")
					provider, want = "claude", claudeText
					if fault != "" {
						provider, want = "claude2", claude2Text
					}
					st := messageStream(t, ac, messageParams("claude-chat", prompt), antFaultHeader(fault))
					text, err = st.Text, st.Err
					if st.Resp != nil {
						h = st.Resp.Header
					}
				case i%2 == 1:
					st := chatStream(t, c, chatParams("chat", prompt), faultHeader(fault))
					text, err = st.Text, st.Err
					if st.Resp != nil {
						h = st.Resp.Header
					}
				default:
					var hr *http.Response
					resp, e := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader(fault), oaoption.WithResponseInto(&hr))
					err = e
					if e == nil {
						text, h = resp.Choices[0].Message.Content, hr.Header
					}
				}
				switch {
				case err != nil:
					errs <- fmt.Errorf("worker %d request %d: %v", w, i, err)
				case text != want:
					errs <- fmt.Errorf("worker %d request %d: %q, want %q", w, i, text, want)
				case routeOf(h).Provider != provider || len(h.Values("X-Mock-Name")) != 1:
					errs <- fmt.Errorf("worker %d request %d: %s, want %s", w, i, routeOf(h), provider)
				}
			}
		}()
	}
	wg.Wait()
}
