package mock

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/openai/openai-go/v3"
	"github.com/tidwall/gjson"

	"github.com/caddyserver/caddy/v2"
)

func TestParseFault(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		want    fault // checked fields: kind, code, delay, after, count, retry*
		wantErr string
	}{
		{spec: "status", want: fault{kind: "status", code: 503, retryAfter: -1, retryAfterMS: -1, retryAfterDate: -1}},
		{spec: "status,code=429,retry_after=1,count=3", want: fault{kind: "status", code: 429, retryAfter: 1, retryAfterMS: -1, retryAfterDate: -1, count: 3}},
		{spec: " status , code=500 , retry_after_ms=250 ", want: fault{kind: "status", code: 500, retryAfter: -1, retryAfterMS: 250, retryAfterDate: -1}},
		{spec: "status,retry_after_date=30", want: fault{kind: "status", code: 503, retryAfter: -1, retryAfterMS: -1, retryAfterDate: 30}},
		{spec: "reset", want: fault{kind: "reset"}},
		{spec: "no_answer,count=1", want: fault{kind: "no_answer", count: 1}},
		{spec: "slow_first_token", want: fault{kind: "slow_first_token", delay: 5 * time.Second}},
		{spec: "slow_first_token,delay=1m30s", want: fault{kind: "slow_first_token", delay: 90 * time.Second}},
		{spec: "slow_first_token,delay=1d", want: fault{kind: "slow_first_token", delay: 24 * time.Hour}},
		{spec: "cut", want: fault{kind: "cut", after: 2}},
		{spec: "cut,after=0", want: fault{kind: "cut"}},
		{spec: "stall,after=5", want: fault{kind: "stall", after: 5}},
		{spec: "malformed,after=1,count=2", want: fault{kind: "malformed", after: 1, count: 2}},
		{spec: "no_done", want: fault{kind: "no_done"}},

		{spec: "", wantErr: "empty fault spec"},
		{spec: "explode", wantErr: `unknown fault kind "explode"`},
		{spec: "status,delay=1s", wantErr: `unknown key "delay"`},
		{spec: "reset,after=1", wantErr: `unknown key "after"`},
		{spec: "status,code", wantErr: "expected key=value"},
		{spec: "status,code=", wantErr: "expected key=value"},
		{spec: "status,", wantErr: "expected key=value"},
		{spec: "status,code=abc", wantErr: "bad code value"},
		{spec: "status,code=200", wantErr: "between 400 and 599"},
		{spec: "status,code=600", wantErr: "between 400 and 599"},
		{spec: "status,retry_after=-1", wantErr: "at least 0"},
		{spec: "status,retry_after=1,retry_after_date=2", wantErr: "use only one"},
		{spec: "cut,after=-2", wantErr: "at least 0"},
		{spec: "cut,count=x", wantErr: "bad count value"},
		{spec: "slow_first_token,delay=soon", wantErr: "bad delay value"},
		{spec: "slow_first_token,delay=-1s", wantErr: "must not be negative"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := parseFault(tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.kind != tc.want.kind || got.count != tc.want.count {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			switch got.kind {
			case faultStatus:
				if got.code != tc.want.code || got.retryAfter != tc.want.retryAfter ||
					got.retryAfterMS != tc.want.retryAfterMS || got.retryAfterDate != tc.want.retryAfterDate {
					t.Errorf("got %+v, want %+v", got, tc.want)
				}
			case faultSlowFirstToken:
				if got.delay != tc.want.delay {
					t.Errorf("delay = %v, want %v", got.delay, tc.want.delay)
				}
			case faultCut, faultStall, faultMalformed:
				if got.after != tc.want.after {
					t.Errorf("after = %d, want %d", got.after, tc.want.after)
				}
			}
		})
	}
}

func TestParseFaultHeader(t *testing.T) {
	for _, tc := range []struct {
		value   string
		want    []string // target/kind pairs
		wantErr string
	}{
		{value: "reset", want: []string{"/reset"}},
		{value: "alpha:status,code=429,retry_after=1; beta:slow_first_token,delay=2s", want: []string{"alpha/status", "beta/slow_first_token"}},
		{value: " cut ; ; gamma : no_done ;", want: []string{"/cut", "gamma/no_done"}},
		{value: "", want: nil},
		{value: "alpha:status;explode", wantErr: `unknown fault kind "explode"`},
		{value: ":reset", wantErr: "empty mock name"},
		{value: "a:b:reset", wantErr: "unknown fault kind"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			faults, err := parseFaultHeader(tc.value)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range faults {
				got = append(got, f.target+"/"+f.kind)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestProvisionRejectsBadFaults(t *testing.T) {
	for _, spec := range []string{"explode", "status,code=42", "alpha:status", "cut,after=x"} {
		h := &Handler{Faults: []string{"reset", spec}}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := h.Provision(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), spec) {
			t.Errorf("%q: error = %v, want one naming the spec", spec, err)
		}
	}
}

// faultRequest builds a request for path with a matching body.
func faultRequest(path string, stream bool, headers ...string) *http.Request {
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}],"input":"hi","prompt":"hi","max_tokens":100`
	if stream {
		body += `,"stream":true`
	}
	body += "}"
	method := "POST"
	if strings.HasSuffix(path, "/models") {
		method, body = "GET", ""
	}
	return newRequest(method, path, body, append([]string{"anthropic-version", "2023-06-01"}, headers...)...)
}

func TestStatusFault(t *testing.T) {
	for _, tc := range []struct {
		name, spec, path string
		wantCode         int
		wantHeaders      map[string]string
		anthropic        bool
	}{
		{"default", "status", "/v1/chat/completions", 503, nil, false},
		{"rate limit", "status,code=429,retry_after=1", "/v1/chat/completions", 429, map[string]string{"Retry-After": "1"}, false},
		{"retry ms", "status,code=429,retry_after_ms=250", "/v1/responses", 429, map[string]string{"retry-after-ms": "250"}, false},
		{"anthropic overloaded", "status,code=529", "/v1/messages", 529, nil, true},
		{"stream request", "status,code=500", "/v1/messages", 500, nil, true},
		{"embeddings", "status,code=400", "/v1/embeddings", 400, nil, false},
		{"models", "status", "/v1/models", 503, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := provision(t, &Handler{Faults: []string{tc.spec}})
			w := serve(t, h, faultRequest(tc.path, tc.name == "stream request"))
			if w.Code != tc.wantCode {
				t.Fatalf("status %d, want %d", w.Code, tc.wantCode)
			}
			for k, v := range tc.wantHeaders {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			checkErrorShape(t, w.Body.String(), tc.anthropic)
		})
	}

	t.Run("retry_after_date", func(t *testing.T) {
		h := provision(t, &Handler{Faults: []string{"status,code=429,retry_after_date=60"}})
		w := serve(t, h, faultRequest("/v1/chat/completions", false))
		at, err := http.ParseTime(w.Header().Get("Retry-After"))
		if err != nil {
			t.Fatalf("Retry-After %q is not an HTTP date: %v", w.Header().Get("Retry-After"), err)
		}
		if wait := time.Until(at); wait < 55*time.Second || wait > 61*time.Second {
			t.Errorf("Retry-After is %v ahead, want about 60s", wait)
		}
	})

	t.Run("SDK sees the status", func(t *testing.T) {
		h := provision(t, &Handler{Faults: []string{"status,code=429"}})
		srv := startServer(t, h)
		oa, an := openAIClient(srv), anthropicClient(srv)
		_, err := oa.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "m"})
		var oaErr *openai.Error
		if !errors.As(err, &oaErr) || oaErr.StatusCode != 429 || oaErr.Type != "rate_limit_error" {
			t.Errorf("openai error: %v", err)
		}
		_, err = an.Messages.New(context.Background(), anthropic.MessageNewParams{Model: "m", MaxTokens: 5})
		var anErr *anthropic.Error
		if !errors.As(err, &anErr) || anErr.StatusCode != 429 {
			t.Errorf("anthropic error: %v", err)
		}
	})
}

func TestResetFault(t *testing.T) {
	h := provision(t, &Handler{Faults: []string{"reset"}})
	srv := startServer(t, h)
	for _, stream := range []bool{false, true} {
		req := faultRequest("/v1/chat/completions", stream)
		resp, err := srv.Client().Post(srv.URL+req.URL.Path, "application/json", req.Body)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("stream=%v: got a response (%s), want the connection aborted", stream, resp.Status)
		}
	}

	// a reset mock writes nothing at all
	w := httptest.NewRecorder()
	func() {
		defer func() {
			if rec := recover(); rec != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler", rec)
			}
		}()
		_ = h.ServeHTTP(w, withReplacer(faultRequest("/v1/chat/completions", false)), nil)
	}()
	if w.Body.Len() != 0 || w.Flushed {
		t.Errorf("wrote %q before the reset", w.Body)
	}
}

func TestNoAnswerFault(t *testing.T) {
	h := provision(t, &Handler{Faults: []string{"no_answer"}})

	// the handler returns as soon as the request is cancelled
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, withReplacer(faultRequest("/v1/chat/completions", false).WithContext(ctx)), nil); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 50*time.Millisecond || el > 5*time.Second {
		t.Errorf("returned after %v", el)
	}
	if w.Body.Len() != 0 || w.Flushed {
		t.Errorf("wrote %q", w.Body)
	}

	// over a real connection the client times out
	srv := startServer(t, h)
	client := srv.Client()
	client.Timeout = 100 * time.Millisecond
	resp, err := client.Get(srv.URL + "/v1/models")
	if err == nil {
		resp.Body.Close()
		t.Fatal("got a response, want a timeout")
	}
}

func TestSlowFirstTokenFault(t *testing.T) {
	const delay = 100 * time.Millisecond
	spec := "slow_first_token,delay=100ms"

	t.Run("stream", func(t *testing.T) {
		h := provision(t, &Handler{Faults: []string{spec}})
		srv := startServer(t, h)
		headers, first := streamTimes(t, srv, "/v1/chat/completions", `{"stream":true,"messages":[]}`)
		if headers >= delay {
			t.Errorf("headers after %v, want them right away", headers)
		}
		if first < delay {
			t.Errorf("first event after %v, want at least %v", first, delay)
		}
	})

	t.Run("non-stream", func(t *testing.T) {
		h := provision(t, &Handler{Faults: []string{spec}})
		start := time.Now()
		w := serve(t, h, faultRequest("/v1/messages", false))
		if el := time.Since(start); el < delay {
			t.Errorf("answered after %v, want at least %v", el, delay)
		}
		if w.Code != 200 || gjson.Get(w.Body.String(), "content.0.text").String() != DefaultText {
			t.Errorf("bad answer after the delay: %d %s", w.Code, w.Body)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		h := provision(t, &Handler{Faults: []string{"slow_first_token,delay=1h"}})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		w := httptest.NewRecorder()
		_ = h.ServeHTTP(w, withReplacer(faultRequest("/v1/chat/completions", true).WithContext(ctx)), nil)
		if len(sseData(t, w.Body.String())) != 0 {
			t.Errorf("sent events: %s", w.Body)
		}
	})
}

// contentChunks counts the content chunks in an event stream body,
// whatever its format.
func contentChunks(body string) int {
	n := 0
	for line := range strings.Lines(body) {
		data, ok := strings.CutPrefix(strings.TrimSpace(line), "data: ")
		if !ok || !gjson.Valid(data) {
			continue
		}
		ev := gjson.Parse(data)
		switch {
		case ev.Get("choices.0.delta.content").String() != "",
			ev.Get("object").String() == "text_completion" && ev.Get("choices.0.text").String() != "",
			ev.Get("type").String() == "content_block_delta",
			ev.Get("type").String() == "response.output_text.delta":
			n++
		}
	}
	return n
}

// serveAborting runs a request that is expected to abort, and returns
// what was written before the abort.
func serveAborting(t *testing.T, h *Handler, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	func() {
		defer func() {
			if rec := recover(); rec != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler", rec)
			}
		}()
		_ = h.ServeHTTP(w, withReplacer(r), nil)
	}()
	return w
}

func TestCutFault(t *testing.T) {
	for _, tc := range []struct {
		spec, path string
		want       int
	}{
		{"cut", "/v1/chat/completions", 2},
		{"cut,after=0", "/v1/chat/completions", 0},
		{"cut,after=4", "/v1/messages", 4},
		{"cut,after=3", "/v1/responses", 3},
		{"cut,after=100", "/v1/chat/completions", defaultWords},
	} {
		t.Run(tc.spec+" "+tc.path, func(t *testing.T) {
			h := provision(t, &Handler{Faults: []string{tc.spec}})
			w := serveAborting(t, h, faultRequest(tc.path, true))
			body := w.Body.String()
			if got := contentChunks(body); got != tc.want {
				t.Errorf("%d content chunks before the cut, want %d:\n%s", got, tc.want, body)
			}
			if !w.Flushed {
				t.Error("chunks were not flushed before the cut")
			}
			for _, end := range []string{"[DONE]", "message_stop", "response.completed", "finish_reason\":\"stop"} {
				if strings.Contains(body, end) {
					t.Errorf("stream was finished (%s) despite the cut", end)
				}
			}
		})
	}

	t.Run("non-stream", func(t *testing.T) {
		h := provision(t, &Handler{Faults: []string{"cut"}})
		w := serveAborting(t, h, faultRequest("/v1/chat/completions", false))
		if w.Body.Len() == 0 || gjson.Valid(w.Body.String()) {
			t.Errorf("want half a JSON body, got %q", w.Body)
		}
	})

	t.Run("SDK", func(t *testing.T) {
		h := provision(t, &Handler{Faults: []string{"cut,after=3"}})
		client := openAIClient(startServer(t, h))
		stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "m"})
		defer stream.Close()
		var text strings.Builder
		for stream.Next() {
			if c := stream.Current(); len(c.Choices) > 0 {
				text.WriteString(c.Choices[0].Delta.Content)
			}
		}
		if text.String() != "This is a " {
			t.Errorf("got %q before the cut", text.String())
		}
		if err := stream.Err(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("stream error = %v, want unexpected EOF", err)
		}
	})

	t.Run("over HTTP", func(t *testing.T) {
		h := provision(t, &Handler{Faults: []string{"cut"}})
		srv := startServer(t, h)
		for _, stream := range []bool{false, true} {
			req := faultRequest("/v1/chat/completions", stream)
			resp, err := srv.Client().Post(srv.URL+req.URL.Path, "application/json", req.Body)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("stream=%v: reading the body: %v, want unexpected EOF", stream, err)
			}
		}
	})
}

func TestStallFault(t *testing.T) {
	for _, tc := range []struct {
		spec, path string
		stream     bool
		want       int
	}{
		{"stall", "/v1/chat/completions", true, 2},
		{"stall,after=5", "/v1/messages", true, 5},
		{"stall,after=1", "/v1/completions", true, 1},
		{"stall", "/v1/chat/completions", false, 0},
	} {
		t.Run(tc.spec+" "+tc.path, func(t *testing.T) {
			h := provision(t, &Handler{Faults: []string{tc.spec}})
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, withReplacer(faultRequest(tc.path, tc.stream).WithContext(ctx)), nil); err != nil {
				t.Fatal(err)
			}
			if el := time.Since(start); el < 50*time.Millisecond {
				t.Errorf("returned after %v, before the request was cancelled", el)
			}
			body := w.Body.String()
			if tc.stream {
				if got := contentChunks(body); got != tc.want {
					t.Errorf("%d content chunks before the stall, want %d:\n%s", got, tc.want, body)
				}
				if strings.Contains(body, "[DONE]") || strings.Contains(body, "message_stop") {
					t.Error("stream finished despite the stall")
				}
			} else if body == "" || gjson.Valid(body) {
				t.Errorf("want half a JSON body, got %q", body)
			}
			if !w.Flushed {
				t.Error("nothing was flushed before the stall")
			}
		})
	}
}

func TestMalformedFault(t *testing.T) {
	for _, tc := range []struct {
		spec, path, wantEvent, terminator string
	}{
		{"malformed", "/v1/chat/completions", "data: " + malformedData + "\n\n", "data: [DONE]"},
		{"malformed,after=0", "/v1/completions", "data: " + malformedData + "\n\n", "data: [DONE]"},
		{"malformed,after=1", "/v1/messages", "event: content_block_delta\ndata: " + malformedData + "\n\n", "event: message_stop"},
		{"malformed", "/v1/responses", "event: response.output_text.delta\ndata: " + malformedData + "\n\n", "event: response.completed"},
	} {
		t.Run(tc.spec+" "+tc.path, func(t *testing.T) {
			h := provision(t, &Handler{Faults: []string{tc.spec}})
			body := serve(t, h, faultRequest(tc.path, true)).Body.String()
			i := strings.Index(body, tc.wantEvent)
			if i < 0 {
				t.Fatalf("no malformed event in:\n%s", body)
			}
			after, _ := parseFault(tc.spec)
			if got := contentChunks(body[:i]); got != after.after {
				t.Errorf("malformed event after %d content chunks, want %d", got, after.after)
			}
			if !strings.Contains(body[i:], tc.terminator) {
				t.Errorf("stream did not continue normally after the malformed event:\n%s", body)
			}
		})
	}

	t.Run("SDKs reject it", func(t *testing.T) {
		h := provision(t, &Handler{Faults: []string{"malformed"}})
		srv := startServer(t, h)
		ctx := context.Background()

		oaClient, anClient := openAIClient(srv), anthropicClient(srv)

		oa := oaClient.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "m"})
		for oa.Next() {
		}
		if oa.Err() == nil {
			t.Error("openai stream accepted the malformed event")
		}
		oa.Close()

		an := anClient.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "m", MaxTokens: 10})
		for an.Next() {
		}
		if an.Err() == nil {
			t.Error("anthropic stream accepted the malformed event")
		}
		an.Close()
	})

	t.Run("non-stream", func(t *testing.T) {
		h := provision(t, &Handler{Faults: []string{"malformed"}})
		w := serve(t, h, faultRequest("/v1/embeddings", false))
		if w.Code != 200 || w.Body.Len() == 0 || gjson.Valid(w.Body.String()) {
			t.Errorf("want a 200 with invalid JSON, got %d %q", w.Code, w.Body)
		}
	})
}

func TestNoDoneFault(t *testing.T) {
	for _, tc := range []struct {
		path, lastEvent, terminator string
	}{
		{"/v1/chat/completions", `"finish_reason":"stop"`, "[DONE]"},
		{"/v1/completions", `"finish_reason":"stop"`, "[DONE]"},
		{"/v1/messages", "event: message_delta", "message_stop"},
		{"/v1/responses", "event: response.output_item.done", "response.completed"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			h := provision(t, &Handler{Faults: []string{"no_done"}})
			body := serve(t, h, faultRequest(tc.path, true)).Body.String()
			if strings.Contains(body, tc.terminator) {
				t.Errorf("stream has the terminator %s:\n%s", tc.terminator, body)
			}
			if !strings.Contains(body, tc.lastEvent) {
				t.Errorf("stream lacks %s:\n%s", tc.lastEvent, body)
			}
			if contentChunks(body) != defaultWords {
				t.Errorf("stream lacks content:\n%s", body)
			}
		})
	}

	t.Run("non-stream unaffected", func(t *testing.T) {
		h := provision(t, &Handler{Faults: []string{"no_done"}})
		w := serve(t, h, faultRequest("/v1/chat/completions", false))
		if w.Code != 200 || !gjson.Valid(w.Body.String()) {
			t.Errorf("got %d %s", w.Code, w.Body)
		}
	})
}

func TestFaultCount(t *testing.T) {
	h := provision(t, &Handler{Faults: []string{"status,code=503,count=2", "no_done,count=3"}})
	var codes []string
	for range 5 {
		w := serve(t, h, faultRequest("/v1/chat/completions", true))
		code := strconv.Itoa(w.Code)
		if w.Code == 200 && !strings.Contains(w.Body.String(), "[DONE]") {
			code += "-no-done"
		}
		codes = append(codes, code)

		// health checks on the models endpoint neither use up
		// the burst nor see counted faults
		if w := serve(t, h, faultRequest("/v1/models", false)); w.Code != 200 {
			t.Errorf("models: status %d", w.Code)
		}
	}
	want := "503 503 200-no-done 200 200"
	if got := strings.Join(codes, " "); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestFaultCountConcurrent(t *testing.T) {
	h := provision(t, &Handler{Faults: []string{"status,code=429,count=10"}})
	srv := startServer(t, h)
	results := make(chan int, 30)
	for range 30 {
		go func() {
			req := faultRequest("/v1/chat/completions", false)
			resp, err := srv.Client().Post(srv.URL+req.URL.Path, "application/json", req.Body)
			if err != nil {
				results <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- resp.StatusCode
		}()
	}
	counts := map[int]int{}
	for range 30 {
		counts[<-results]++
	}
	if counts[429] != 10 || counts[200] != 20 {
		t.Errorf("got %v, want exactly 10 failures", counts)
	}
}

func TestHeaderFaults(t *testing.T) {
	alpha := provision(t, &Handler{Name: "alpha"})
	beta := provision(t, &Handler{Name: "beta"})
	custom := provision(t, &Handler{Name: "alpha", FaultHeader: "X-Chaos"})

	for _, tc := range []struct {
		name      string
		h         *Handler
		header    string
		value     string
		want      int
		anthropic bool
	}{
		{"targeted", alpha, "X-Mock-Fault", "alpha:status,code=429,retry_after=1; beta:status,code=500", 429, false},
		{"targeted other", beta, "X-Mock-Fault", "alpha:status,code=429,retry_after=1; beta:status,code=500", 500, false},
		{"not targeted", beta, "X-Mock-Fault", "alpha:status,code=429", 200, false},
		{"untargeted", beta, "X-Mock-Fault", "status,code=502", 502, false},
		{"count ignored", alpha, "X-Mock-Fault", "status,code=502,count=1", 502, false},
		{"invalid", alpha, "X-Mock-Fault", "status,code=99", 400, false},
		{"invalid for another mock", beta, "X-Mock-Fault", "alpha:explode", 400, false},
		{"invalid on messages", alpha, "X-Mock-Fault", "explode", 400, true},
		{"custom header", custom, "X-Chaos", "status,code=418", 418, false},
		{"default header ignored", custom, "X-Mock-Fault", "status,code=418", 200, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/v1/chat/completions"
			if tc.anthropic {
				path = "/v1/messages"
			}
			// repeat to show header faults ignore count
			for range 2 {
				w := serve(t, tc.h, faultRequest(path, false, tc.header, tc.value))
				if w.Code != tc.want {
					t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
				}
				if got := w.Header().Get("X-Mock-Name"); got != tc.h.Name {
					t.Errorf("X-Mock-Name = %q", got)
				}
				if tc.want >= 400 {
					checkErrorShape(t, w.Body.String(), tc.anthropic)
				}
				if tc.want == 400 && !strings.Contains(w.Body.String(), tc.h.FaultHeader) {
					t.Errorf("error does not name the header: %s", w.Body)
				}
			}
		})
	}

	t.Run("header overrides config", func(t *testing.T) {
		h := provision(t, &Handler{Faults: []string{"status,code=503"}})
		w := serve(t, h, faultRequest("/v1/chat/completions", false, "X-Mock-Fault", "status,code=429"))
		if w.Code != 429 {
			t.Errorf("status %d, want 429", w.Code)
		}
	})

	t.Run("several header fields", func(t *testing.T) {
		h := provision(t, &Handler{Name: "alpha"})
		w := serve(t, h, faultRequest("/v1/chat/completions", true,
			"X-Mock-Fault", "no_done", "X-Mock-Fault", "alpha:malformed,after=1"))
		body := w.Body.String()
		if strings.Contains(body, "[DONE]") || !strings.Contains(body, malformedData) {
			t.Errorf("both faults should apply:\n%s", body)
		}
	})
}

func TestCombinedStreamFaults(t *testing.T) {
	h := provision(t, &Handler{Faults: []string{"malformed,after=1", "cut,after=1"}})
	w := serveAborting(t, h, faultRequest("/v1/chat/completions", true))
	body := w.Body.String()
	if contentChunks(body) != 1 || !strings.HasSuffix(body, "data: "+malformedData+"\n\n") {
		t.Errorf("want one chunk, the malformed event, then the cut:\n%s", body)
	}
}

func TestErrorEventFault(t *testing.T) {
	for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"} {
		t.Run(path, func(t *testing.T) {
			// after=0: the error is the first event, before the role
			// chunk or message_start
			h := provision(t, &Handler{Faults: []string{"error_event,after=0"}})
			w := serve(t, h, faultRequest(path, true))
			data := sseData(t, w.Body.String())
			if len(data) != 1 || !gjson.Get(data[0], "error").Exists() {
				t.Errorf("after=0: want the error event alone, got:\n%s", w.Body)
			}
			if path == "/v1/messages" && !strings.HasPrefix(w.Body.String(), "event: error\n") {
				t.Errorf("after=0: the stream does not start with the error event:\n%s", w.Body)
			}

			// after=1: the stream starts, sends one content chunk, then the error
			h = provision(t, &Handler{Faults: []string{"error_event,after=1"}})
			w = serve(t, h, faultRequest(path, true))
			data = sseData(t, w.Body.String())
			if len(data) < 2 || gjson.Get(data[0], "error").Exists() || !gjson.Get(data[len(data)-1], "error").Exists() {
				t.Errorf("after=1: want the stream's start, then the error last, got:\n%s", w.Body)
			}
			if n := contentChunks(w.Body.String()); n != 1 {
				t.Errorf("after=1: %d content chunks before the error, want 1", n)
			}
		})
	}
}
