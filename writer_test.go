package llmroute

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/translate"
)

// newRecorder returns a recorder whose Code stays 0 until WriteHeader
// is called, so a test can tell that nothing was written.
func newRecorder() *httptest.ResponseRecorder {
	return &httptest.ResponseRecorder{HeaderMap: make(http.Header), Body: new(bytes.Buffer)}
}

// newTestWriter returns an attemptWriter over rec for an attempt that is
// still running.
func newTestWriter(rec http.ResponseWriter) *attemptWriter {
	return newAttemptWriter(context.Background(), rec)
}

// untouched fails the test if anything reached rec.
func untouched(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != 0 {
		t.Errorf("status %d reached the client", rec.Code)
	}
	if len(rec.HeaderMap) != 0 {
		t.Errorf("headers reached the client: %v", rec.HeaderMap)
	}
	if rec.Body.Len() != 0 {
		t.Errorf("body reached the client: %q", rec.Body)
	}
	if rec.Flushed {
		t.Error("the client response was flushed")
	}
}

// hookFuncs are an attempt writer's hooks, as functions (nil: nothing).
type hookFuncs struct{ start, commit func(*attemptWriter) }

func (f hookFuncs) started(aw *attemptWriter) {
	if f.start != nil {
		f.start(aw)
	}
}

func (f hookFuncs) committing(aw *attemptWriter) {
	if f.commit != nil {
		f.commit(aw)
	}
}

func (hookFuncs) wrote() {}

func TestAttemptWriterErrorStatus(t *testing.T) {
	for _, status := range []int{400, 401, 404, 429, 500, 502, 503, 529} {
		rec := newRecorder()
		aw := newTestWriter(rec)
		committed := false
		aw.hooks = hookFuncs{commit: func(*attemptWriter) { committed = true }}
		aw.Header().Set("Content-Type", "application/json")
		aw.Header().Set("Retry-After", "7")
		aw.Header().Set("Set-Cookie", "upstream=secret")
		aw.WriteHeader(status)
		aw.Flush()
		body := []byte(`{"error":{"message":"nope"}}`)
		if n, err := aw.Write(body[:5]); n != 5 || err != nil {
			t.Errorf("%d: Write = %d, %v", status, n, err)
		}
		_, _ = aw.Write(body[5:])
		aw.Flush()
		untouched(t, rec)
		if committed {
			t.Errorf("%d: onCommit ran", status)
		}
		if !aw.failed() || aw.committed {
			t.Errorf("%d: failed() = %v, committed = %v", status, aw.failed(), aw.committed)
		}
		if !bytes.Equal(aw.errBody, body) {
			t.Errorf("%d: errBody = %q", status, aw.errBody)
		}
		if aw.Header().Get("Retry-After") != "7" {
			t.Errorf("%d: the attempt's own headers were lost", status)
		}
	}
}

func TestAttemptWriterErrorBodyCap(t *testing.T) {
	rec := newRecorder()
	aw := newTestWriter(rec)
	aw.WriteHeader(http.StatusBadGateway)
	chunk := bytes.Repeat([]byte("x"), 10_000)
	for range 10 {
		if n, err := aw.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if len(aw.errBody) != maxErrorBody {
		t.Errorf("kept %d bytes of the error body, want %d", len(aw.errBody), maxErrorBody)
	}
	untouched(t, rec)
}

func TestAttemptWriterHoldsStatusUntilFirstByte(t *testing.T) {
	rec := newRecorder()
	aw := newTestWriter(rec)
	commits := 0
	aw.hooks = hookFuncs{commit: func(aw *attemptWriter) {
		commits++
		rec.Header().Set("X-From-Commit", "1")
	}}
	aw.Header().Set("Content-Type", "text/plain") // (JSON is held until whole)
	aw.Header().Set("X-Upstream", "a")
	aw.WriteHeader(http.StatusContinue) // 1xx is dropped
	aw.WriteHeader(http.StatusCreated)
	aw.WriteHeader(http.StatusOK) // second status is ignored
	aw.Flush()
	if err := aw.FlushError(); err != nil {
		t.Errorf("FlushError before commit: %v", err)
	}
	if n, err := aw.Write(nil); n != 0 || err != nil {
		t.Errorf("empty Write = %d, %v", n, err)
	}
	untouched(t, rec)
	if commits != 0 {
		t.Fatal("committed before the first body byte")
	}

	if _, err := aw.Write([]byte(`{"ok":`)); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusCreated {
		t.Errorf("status = %d, want 201", rec.Code)
	}
	if rec.Header().Get("X-Upstream") != "a" || rec.Header().Get("X-From-Commit") != "1" {
		t.Errorf("headers = %v", rec.Header())
	}
	_, _ = aw.Write([]byte(`true}`))
	aw.Flush()
	if !rec.Flushed {
		t.Error("Flush after commit did not flush")
	}
	aw.finish()
	if commits != 1 {
		t.Errorf("onCommit ran %d times", commits)
	}
	if rec.Body.String() != `{"ok":true}` {
		t.Errorf("body = %q", rec.Body)
	}
	if aw.size != int64(len(`{"ok":true}`)) {
		t.Errorf("size = %d", aw.size)
	}
}

func TestAttemptWriterHeadersAfterCommit(t *testing.T) {
	rec := newRecorder()
	aw := newTestWriter(rec)
	aw.Header().Set("Content-Type", "text/plain")
	_, _ = aw.Write([]byte("x"))
	aw.Header().Set("X-Late", "1") // the attempt's own map only
	if rec.Header().Get("X-Late") != "" {
		t.Error("a header set after commit reached the client")
	}
	if rec.Code != http.StatusOK {
		t.Errorf("implicit status = %d, want 200", rec.Code)
	}
}

func TestAttemptWriterFinishWithoutBody(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		want   int
	}{
		{"no WriteHeader", 0, http.StatusOK},
		{"204", http.StatusNoContent, http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			aw := newTestWriter(rec)
			aw.Header().Set("X-A", "1")
			if tc.status != 0 {
				aw.WriteHeader(tc.status)
			}
			aw.finish()
			if rec.Code != tc.want || rec.Header().Get("X-A") != "1" {
				t.Errorf("got %d %v, want %d with X-A", rec.Code, rec.Header(), tc.want)
			}
		})
	}
}

// TestAttemptWriterAbandoned: once the attempt's context is done (its
// first_byte_timeout fired), a late first byte must not commit.
func TestAttemptWriterAbandoned(t *testing.T) {
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	aw := newAttemptWriter(ctx, rec)
	aw.WriteHeader(http.StatusOK)
	cancel()
	if _, err := aw.Write([]byte("late")); err == nil {
		t.Error("Write after the attempt was abandoned succeeded")
	}
	untouched(t, rec)
}

// Sample event streams, as the providers send them.
const (
	openAIStream = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n" +
		"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\\nlo \\\"there\\\"\"},\"finish_reason\":null}],\"usage\":null}\n\n" +
		": keep-alive comment\n\n" +
		"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n" +
		"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,\"total_tokens\":17,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n" +
		"data: [DONE]\n\n"

	anthropicStream = "event: message_start\n" +
		"data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":3,\"cache_read_input_tokens\":10,\"output_tokens\":1}}}\n\n" +
		"event: content_block_start\n" +
		"data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
		"event: ping\n" +
		"data: {\"type\": \"ping\"}\n\n" +
		"event: content_block_delta\n" +
		"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n" +
		"event: content_block_stop\n" +
		"data: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
		"event: message_delta\n" +
		"data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n" +
		"event: message_stop\n" +
		"data: {\"type\":\"message_stop\"}\n\n"

	responsesStream = "event: response.created\n" +
		"data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"error\":null,\"usage\":null}}\n\n" +
		"event: response.output_text.delta\n" +
		"data: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}\n\n" +
		"event: response.completed\n" +
		"data: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"error\":null,\"usage\":{\"input_tokens\":30,\"input_tokens_details\":{\"cached_tokens\":8},\"output_tokens\":12,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":42}}}\n\n"
)

// streamThrough writes chunks through a fresh attemptWriter as an event
// stream, then finishes it. It returns the writer, the recorder and the
// first write error.
func streamThrough(chunks ...string) (*attemptWriter, *httptest.ResponseRecorder, error) {
	rec := newRecorder()
	aw := newTestWriter(rec)
	aw.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	aw.Header().Set("Content-Length", "999")
	aw.WriteHeader(http.StatusOK)
	for _, c := range chunks {
		if _, err := aw.Write([]byte(c)); err != nil {
			return aw, rec, err
		}
	}
	aw.finish()
	return aw, rec, nil
}

func TestAttemptWriterStreams(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream string
		usage  Usage
	}{
		{"openai chat", openAIStream, Usage{PromptTokens: 12, CompletionTokens: 5, CacheReadTokens: 4}},
		{"openai chat with CRLF", strings.ReplaceAll(openAIStream, "\n", "\r\n"), Usage{PromptTokens: 12, CompletionTokens: 5, CacheReadTokens: 4}},
		// Anthropic's input_tokens (25) leaves out the cached tokens.
		{"anthropic messages", anthropicStream, Usage{PromptTokens: 38, CompletionTokens: 15, CacheReadTokens: 10, CacheWriteTokens: 3}},
		{"responses", responsesStream, Usage{PromptTokens: 30, CompletionTokens: 12, CacheReadTokens: 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(t *testing.T, aw *attemptWriter, rec *httptest.ResponseRecorder, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("Write: %v", err)
				}
				if rec.Body.String() != tc.stream {
					t.Fatalf("output differs from the input:\n got %q\nwant %q", rec.Body, tc.stream)
				}
				if !aw.stream || !aw.terminated {
					t.Errorf("stream = %v, terminated = %v", aw.stream, aw.terminated)
				}
				if aw.usage != tc.usage {
					t.Errorf("usage = %+v, want %+v", aw.usage, tc.usage)
				}
			}

			aw, rec, err := streamThrough(tc.stream)
			check(t, aw, rec, err)
			if rec.Header().Get("Content-Length") != "" {
				t.Error("Content-Length of a stream reached the client")
			}
			if rec.Code != http.StatusOK {
				t.Errorf("status = %d", rec.Code)
			}

			// Every split point.
			for i := 0; i <= len(tc.stream); i++ {
				aw, rec, err := streamThrough(tc.stream[:i], tc.stream[i:])
				if err != nil || rec.Body.String() != tc.stream || !aw.terminated || aw.usage != tc.usage {
					check(t, aw, rec, err)
					t.Fatalf("split at %d", i)
				}
			}

			// One byte at a time.
			chunks := make([]string, len(tc.stream))
			for i := range tc.stream {
				chunks[i] = tc.stream[i : i+1]
			}
			aw, rec, err = streamThrough(chunks...)
			check(t, aw, rec, err)

			// Random chunk sizes.
			rng := rand.New(rand.NewPCG(1, 2))
			for range 50 {
				var chunks []string
				for s := tc.stream; len(s) > 0; {
					n := min(len(s), 1+rng.IntN(80))
					chunks = append(chunks, s[:n])
					s = s[n:]
				}
				aw, rec, err := streamThrough(chunks...)
				check(t, aw, rec, err)
			}
		})
	}
}

// TestAttemptWriterDropsUsageChunk: an OpenAI stream whose usage chunk
// the gateway asked for (dropUsage) reaches the client without it,
// wherever the chunk is and however the stream is split into writes, and
// its usage is counted.
func TestAttemptWriterDropsUsageChunk(t *testing.T) {
	usageChunk := "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,\"total_tokens\":17,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n"
	rest := strings.Replace(openAIStream, usageChunk, "", 1)
	if rest == openAIStream {
		t.Fatal("openAIStream has no usage chunk")
	}
	first := strings.Index(rest, "\n\n") + 2
	for _, tc := range []struct{ name, stream string }{
		{"last", openAIStream},
		{"mid-stream", rest[:first] + usageChunk + rest[first:]},
		{"first", usageChunk + rest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			through := func(chunks ...string) (*attemptWriter, *httptest.ResponseRecorder, error) {
				rec := newRecorder()
				aw := newTestWriter(rec)
				aw.dropUsage = true
				aw.Header().Set("Content-Type", "text/event-stream")
				aw.WriteHeader(http.StatusOK)
				for _, c := range chunks {
					if _, err := aw.Write([]byte(c)); err != nil {
						return aw, rec, err
					}
				}
				return aw, rec, aw.finish()
			}
			want := Usage{PromptTokens: 12, CompletionTokens: 5, CacheReadTokens: 4}
			for i := 0; i <= len(tc.stream); i++ {
				aw, rec, err := through(tc.stream[:i], tc.stream[i:])
				if err != nil || rec.Body.String() != rest || !aw.terminated || aw.usage != want {
					t.Fatalf("split at %d: error %v, terminated %v, usage %+v, client got\n%q\nwant\n%q", i, err, aw.terminated, aw.usage, rec.Body, rest)
				}
			}
		})
	}
}

// TestAttemptWriterStreamTermination checks that a stream is only marked
// terminated by its final event.
func TestAttemptWriterStreamTermination(t *testing.T) {
	cut := func(s, before string) string { return s[:strings.Index(s, before)] }
	for _, tc := range []struct {
		name       string
		stream     string
		terminated bool
	}{
		{"openai without [DONE]", cut(openAIStream, "data: [DONE]"), false},
		{"anthropic without message_stop", cut(anthropicStream, "event: message_stop"), false},
		{"responses without response.completed", cut(responsesStream, "event: response.completed"), false},
		{"[DONE] without a trailing newline", "data: {\"choices\":[]}\n\ndata: [DONE]", true},
		{"[DONE] without a space", "data:[DONE]\n\n", true},
		{"anthropic error event", "event: ping\ndata: {\"type\":\"ping\"}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n", true},
		{"openai error chunk", "data: {\"choices\":[]}\n\ndata: {\"error\":{\"message\":\"boom\"}}\n\n", true},
		{"a null error", "data: {\"type\":\"response.created\",\"response\":{\"error\":null},\"error\":null}\n\n", false},
		{"responses incomplete", "data: {\"type\":\"response.incomplete\",\"response\":{\"usage\":{\"input_tokens\":1,\"output_tokens\":2}}}\n\n", true},
		{"responses failed", "data: {\"type\":\"response.failed\",\"response\":{\"usage\":null}}\n\n", true},
		{"[DONE] inside a string", "data: {\"text\":\"data: [DONE]\"}\n\n", false},
		{"message_stop inside a string", "data: {\"text\":\"{\\\"type\\\":\\\"message_stop\\\"}\"}\n\n", false},
		{"event name without data", "data: {}\n\nevent: message_stop\n\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			aw, rec, err := streamThrough(tc.stream)
			if err != nil {
				t.Fatal(err)
			}
			if aw.terminated != tc.terminated {
				t.Errorf("terminated = %v, want %v", aw.terminated, tc.terminated)
			}
			if rec.Body.String() != tc.stream {
				t.Errorf("output %q differs from the input", rec.Body)
			}
		})
	}
}

// TestAttemptWriterHoldsStreamUntilFirstEvent: a stream is held until
// its first event with data. An error event there leaves nothing on the
// response and makes the attempt fail like an error status, with the
// event's data as its error answer; any other commits the stream, with
// what came before it.
func TestAttemptWriterHoldsStreamUntilFirstEvent(t *testing.T) {
	const overloaded = `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`
	for _, tc := range []struct {
		name   string
		chunks []string
		status int    // the attempt's error status, 0 if it is a good stream
		err    error  // what finish or Write reports
		held   string // what the first chunk leaves held (not passed on)
	}{
		{name: "comments, then an event", chunks: []string{": keep-alive\n\n", ": again\n\nevent: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n", "data: [DONE]\n\n"}},
		{name: "an event cut in two", chunks: []string{"data: {\"cho", "ices\":[]}\n", "\n", "data: [DONE]\n\n"}},
		{name: "anthropic error event", chunks: []string{"event: error\ndata: " + overloaded + "\n\n"}, status: 529, err: errErrorEvent},
		{name: "error event after comments", chunks: []string{": hi\n\n", "event: error\n", "data: " + overloaded + "\n\n"}, status: 529, err: errErrorEvent},
		{name: "openai error chunk", chunks: []string{"data: {\"error\":{\"message\":\"slow down\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n"}, status: 429, err: errErrorEvent},
		{name: "error with a status code", chunks: []string{"data: {\"error\":{\"message\":\"x\",\"code\":503}}\n\n"}, status: 503, err: errErrorEvent},
		{name: "error event name, other data", chunks: []string{"event: error\ndata: {\"message\":\"x\"}\n\n"}, status: 502, err: errErrorEvent},
		{name: "error event without its blank line", chunks: []string{"event: error\ndata: " + overloaded}, status: 529, err: errErrorEvent},
		{name: "comments only", chunks: []string{": keep-alive\n\n"}, err: errNoEvent},
		{name: "nothing", err: errNoEvent},
		{name: "a last event without its blank line", chunks: []string{"data: {\"choices\":[]}"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			aw := newTestWriter(rec)
			started := 0
			aw.hooks = hookFuncs{start: func(*attemptWriter) { started++ }}
			aw.Header().Set("Content-Type", "text/event-stream")
			aw.WriteHeader(http.StatusOK)
			var err error
			for i, c := range tc.chunks {
				if _, err = aw.Write([]byte(c)); err != nil {
					break
				}
				if i == 0 && (!strings.Contains(c, "data:") || !strings.Contains(c, "\n\n")) {
					untouched(t, rec) // no whole event with data yet
				}
			}
			if err == nil {
				err = aw.finish()
			}
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if tc.err != nil {
				untouched(t, rec)
				if started != 0 {
					t.Error("onStart ran for a stream that was not passed on")
				}
				if aw.failed() != (tc.status != 0) || aw.failed() && aw.status != tc.status {
					t.Errorf("failed() = %v, status %d, want %d", aw.failed(), aw.status, tc.status)
				}
				if tc.status != 0 && !gjson.ValidBytes(aw.errBody) {
					t.Errorf("error answer %q", aw.errBody)
				}
				return
			}
			if started != 1 || rec.Code != http.StatusOK {
				t.Errorf("onStart ran %d times, status %d", started, rec.Code)
			}
			if want := strings.Join(tc.chunks, ""); rec.Body.String() != want {
				t.Errorf("output %q, want %q", rec.Body, want)
			}
		})
	}
}

func TestAttemptWriterMalformedEvent(t *testing.T) {
	good := "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
	for _, tc := range []struct {
		name string
		bad  string
	}{
		{"truncated JSON", "data: {\"choices\":[{\"delta\":\n\n"},
		{"HTML", "data: <html>502 Bad Gateway</html>\n\n"},
		{"bare word", "data: hello\n\n"},
		{"CRLF", "data: {]\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunks := range [][]string{
				{good + tc.bad + good},
				{good, tc.bad, good},
				{good + tc.bad[:3], tc.bad[3:] + good},
			} {
				aw, rec, err := streamThrough(chunks...)
				if !errors.Is(err, errMalformedEvent) {
					t.Fatalf("%q: err = %v, want errMalformedEvent", chunks, err)
				}
				if rec.Body.String() != good {
					t.Errorf("%q: forwarded %q, want only the good event", chunks, rec.Body)
				}
				if aw.terminated {
					t.Errorf("%q: terminated", chunks)
				}
				if !errors.Is(aw.streamErr, errMalformedEvent) {
					t.Errorf("%q: streamErr = %v", chunks, aw.streamErr)
				}
			}
		})
	}
}

// TestAttemptWriterFinishMalformedPartialLine: a stream that ends in an
// incomplete, malformed data line must not pass it on either; a client
// would fail to parse it.
func TestAttemptWriterFinishMalformedPartialLine(t *testing.T) {
	good := "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
	_, rec, err := streamThrough(good, "data: {\"choices\":[{\"delta\":{\"cont")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Body.String() != good {
		t.Errorf("forwarded %q, want only the complete event", rec.Body)
	}
}

// TestAttemptWriterLongLine sends one 4 MiB event line (a streamed image,
// say) in 1 KiB chunks. The cost must stay linear in the size: the writer
// inspects each byte of a pending line once and remembers where it got
// to, rather than rescanning the whole pending line on every write (which
// is quadratic: minutes under the race detector).
func TestAttemptWriterLongLine(t *testing.T) {
	line := []byte("data: {\"b64_json\":\"" + strings.Repeat("A", 4<<20) + "\"}\n\n")
	rec := newRecorder()
	aw := newTestWriter(rec)
	aw.Header().Set("Content-Type", "text/event-stream")
	aw.WriteHeader(http.StatusOK)
	end := len(line) - 2 // the line's own newline, then the blank line
	for off := 0; off < end; off += 1024 {
		chunk := line[off:min(off+1024, end)]
		if _, err := aw.Write(chunk); err != nil {
			t.Fatal(err)
		}
		// Everything pending has been searched for the line's end, and
		// the next write searches from where this one stopped.
		if aw.searched != len(aw.pending) || len(aw.pending) != off+len(chunk) {
			t.Fatalf("after %d bytes: %d pending, %d searched", off+len(chunk), len(aw.pending), aw.searched)
		}
	}
	if _, err := aw.Write(line[end:]); err != nil {
		t.Fatal(err)
	}
	aw.finish()
	if rec.Body.Len() != len(line) {
		t.Errorf("forwarded %d bytes, want %d", rec.Body.Len(), len(line))
	}
}

func TestAttemptWriterHoldsPartialEvent(t *testing.T) {
	// The event line is complete but its data line is not yet: nothing
	// of the event may reach the client.
	_, rec, err := streamThrough("data: {\"type\":\"ping\"}\n\n", "event: content_block_delta\n", "data: {\"type\":")
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.Body.String(); got != "data: {\"type\":\"ping\"}\n\n" {
		t.Errorf("forwarded %q, want only the first, complete event", got)
	}
}

func TestAttemptWriterNonStreamUsage(t *testing.T) {
	big := strings.Repeat("lorem ipsum \\\"usage\\\" ", 2000) // > 16 KiB, with "usage" inside the string
	for _, tc := range []struct {
		name  string
		ct    string
		body  string
		usage Usage
	}{
		{
			name:  "openai chat",
			body:  `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":2}}}`,
			usage: Usage{PromptTokens: 9, CompletionTokens: 12, CacheReadTokens: 2},
		},
		{
			name:  "openai embeddings",
			body:  `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":5,"total_tokens":5}}`,
			usage: Usage{PromptTokens: 5},
		},
		{
			name:  "anthropic",
			body:  `{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","usage":{"input_tokens":10,"cache_creation_input_tokens":7,"cache_read_input_tokens":5,"output_tokens":20}}`,
			usage: Usage{PromptTokens: 22, CompletionTokens: 20, CacheReadTokens: 5, CacheWriteTokens: 7}, // 10 + cached
		},
		{
			name:  "responses",
			body:  `{"id":"resp_1","object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"Hi"}]}],"usage":{"input_tokens":30,"input_tokens_details":{"cached_tokens":8},"output_tokens":12,"output_tokens_details":{"reasoning_tokens":4},"total_tokens":42},"user":null}`,
			usage: Usage{PromptTokens: 30, CompletionTokens: 12, CacheReadTokens: 8},
		},
		{
			name:  "large openai chat",
			body:  `{"id":"chatcmpl-1","choices":[{"message":{"content":"` + big + `"}}],"usage":{"prompt_tokens":1000,"completion_tokens":4000,"total_tokens":5000}}`,
			usage: Usage{PromptTokens: 1000, CompletionTokens: 4000},
		},
		{
			name:  "large anthropic",
			body:  `{"id":"msg_1","type":"message","content":[{"type":"text","text":"` + big + `"}],"usage":{"input_tokens":11,"output_tokens":4001,"cache_read_input_tokens":3}}`,
			usage: Usage{PromptTokens: 14, CompletionTokens: 4001, CacheReadTokens: 3},
		},
		{
			name:  "large responses",
			body:  `{"id":"resp_1","object":"response","output":[{"content":[{"text":"` + big + `"}]}],"usage":{"input_tokens":31,"output_tokens":4002,"total_tokens":4033},"metadata":{}}`,
			usage: Usage{PromptTokens: 31, CompletionTokens: 4002},
		},
		{
			name: "no usage",
			body: `{"id":"x","choices":[]}`,
		},
		{
			name: "not JSON",
			ct:   "text/html",
			body: `<html>ok</html>`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.HasPrefix(tc.body, "<") && !json.Valid([]byte(tc.body)) {
				t.Fatalf("test body is not valid JSON")
			}
			for _, size := range []int{len(tc.body), 1000, 7, 16 << 10} {
				rec := newRecorder()
				aw := newTestWriter(rec)
				ct := tc.ct
				if ct == "" {
					ct = "application/json"
				}
				aw.Header().Set("Content-Type", ct)
				aw.WriteHeader(http.StatusOK)
				for s := tc.body; len(s) > 0; {
					n := min(size, len(s))
					if _, err := aw.Write([]byte(s[:n])); err != nil {
						t.Fatal(err)
					}
					s = s[n:]
				}
				aw.finish()
				if aw.stream {
					t.Fatal("a JSON answer was taken for a stream")
				}
				if rec.Body.String() != tc.body {
					t.Fatalf("chunks of %d: output differs from the input", size)
				}
				if aw.usage != tc.usage {
					t.Errorf("chunks of %d: usage = %+v, want %+v", size, aw.usage, tc.usage)
				}
			}
		})
	}
}

// translatedWriter returns an attemptWriter over rec that translates the
// answer to an OpenAI chat request served by an Anthropic provider.
// TestAttemptWriterCutShortJSON: a JSON answer that a clean close cuts
// short is a failure. One held whole (up to maxHeld) leaves nothing on
// the response, so the next target can be tried; a longer one was passed
// on as it came, and finish reports the failure.
func TestAttemptWriterCutShortJSON(t *testing.T) {
	long := `{"choices":[{"message":{"content":"` + strings.Repeat("x", maxHeld) + `"}}]}`
	for _, tc := range []struct {
		name, ct, body string
		whole, held    bool
	}{
		{"whole", "application/json", okChat, true, true},
		{"whole, with a charset", "application/json; charset=utf-8", okChat, true, true},
		{"whole, problem+json", "application/problem+json", `{"a":1}`, true, true},
		{"cut in an object", "application/json", okChat[:40], false, true},
		{"cut in a string", "application/json", `{"a":"b`, false, true},
		{"not JSON", "application/json", `<html>`, false, true},
		{"empty", "application/json", "", false, true},
		{"long and whole", "application/json", long, true, false},
		{"long and cut", "application/json", long[:len(long)-3], false, false},
		{"long and cut in a string", "application/json", long[:maxHeld], false, false},
		{"not JSON by its type", "text/plain", `{"a":`, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			aw := newTestWriter(rec)
			aw.Header().Set("Content-Type", tc.ct)
			aw.WriteHeader(http.StatusOK)
			for s := tc.body; len(s) > 0; {
				n := min(len(s), 4096)
				if _, err := aw.Write([]byte(s[:n])); err != nil {
					t.Fatal(err)
				}
				s = s[n:]
			}
			if tc.held && tc.body != "" {
				untouched(t, rec)
			}
			err := aw.finish()
			switch {
			case tc.whole && err != nil:
				t.Fatalf("finish: %v", err)
			case tc.whole && rec.Body.String() != tc.body:
				t.Fatalf("the answer was changed")
			case !tc.whole && !errors.Is(err, errCutShort):
				t.Fatalf("finish = %v, want errCutShort", err)
			case !tc.whole && tc.held:
				untouched(t, rec)
			}
		})
	}
}

func translatedWriter(t *testing.T, rec http.ResponseWriter, stream bool) *attemptWriter {
	t.Helper()
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}`
	_, x, err := translate.Lookup(translate.OpenAI, translate.Anthropic).Request([]byte(body), translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	aw := newTestWriter(rec)
	aw.tr = x
	if stream {
		aw.Header().Set("Content-Type", "text/event-stream")
	} else {
		aw.Header().Set("Content-Type", "application/json")
	}
	return aw
}

func TestAttemptWriterTranslatesWholeBody(t *testing.T) {
	const answer = `{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","usage":{"input_tokens":7,"output_tokens":2,"cache_read_input_tokens":3}}`
	rec := newRecorder()
	aw := translatedWriter(t, rec, false)
	aw.Header().Set("Content-Length", strconv.Itoa(len(answer)))
	aw.WriteHeader(http.StatusOK)
	for _, part := range []string{answer[:10], answer[10:]} {
		if _, err := aw.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing is committed before the whole body is translated.
	untouched(t, rec)
	if err := aw.finish(); err != nil {
		t.Fatal(err)
	}
	b := rec.Body.Bytes()
	if rec.Code != 200 || gjson.GetBytes(b, "object").Str != "chat.completion" ||
		gjson.GetBytes(b, "choices.0.message.content").Str != "Hello" {
		t.Fatalf("status %d body %s", rec.Code, b)
	}
	if got := rec.Header().Get("Content-Length"); got != strconv.Itoa(len(b)) {
		t.Errorf("Content-Length %s for %d bytes", got, len(b))
	}
	if want := (Usage{PromptTokens: 10, CompletionTokens: 2, CacheReadTokens: 3}); aw.usage != want { // 7 + cached
		t.Errorf("usage %+v, want %+v", aw.usage, want)
	}
}

func TestAttemptWriterUntranslatableBody(t *testing.T) {
	rec := newRecorder()
	aw := translatedWriter(t, rec, false)
	aw.WriteHeader(http.StatusOK)
	if _, err := aw.Write([]byte(`{"id":"msg_1","content":[{"type":"text","te`)); err != nil {
		t.Fatal(err)
	}
	err := aw.finish()
	if !errors.Is(err, translate.ErrMalformed) {
		t.Fatalf("finish = %v, want ErrMalformed", err)
	}
	// The attempt can still fall back: the client saw nothing.
	untouched(t, rec)
}

func TestAttemptWriterTranslatesStream(t *testing.T) {
	rec := newRecorder()
	aw := translatedWriter(t, rec, true)
	aw.WriteHeader(http.StatusOK)
	// Split mid-event: only whole upstream events are translated.
	for _, part := range []string{anthropicStream[:40], anthropicStream[40:301], anthropicStream[301:]} {
		if _, err := aw.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if err := aw.finish(); err != nil {
		t.Fatal(err)
	}
	out := rec.Body.String()
	if !aw.terminated || !strings.HasSuffix(out, "data: [DONE]\n\n") || strings.Contains(out, "event:") {
		t.Fatalf("translated stream:\n%s", out)
	}
	if !strings.Contains(out, `"object":"chat.completion.chunk"`) || !strings.Contains(out, `"usage":{"prompt_tokens":38,`) {
		t.Errorf("translated stream lacks chunks or usage:\n%s", out)
	}
	if want := (Usage{PromptTokens: 38, CompletionTokens: 15, CacheReadTokens: 10, CacheWriteTokens: 3}); aw.usage != want {
		t.Errorf("usage %+v, want %+v", aw.usage, want)
	}
}

// With refuses, a stream is held past the events that only open it, and
// only those: the answer has begun there (onStart runs, so the first
// byte timer stops) but nothing is committed until an event says
// something, reasoning included.
func TestAttemptWriterHoldsPreamble(t *testing.T) {
	role := "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"finish_reason\":null}]}\n\n"
	for _, tc := range []struct {
		name, next string
		refuses    bool
		committed  bool // after the role chunk
	}{
		{"reasoning", "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"Let me think.\"},\"finish_reason\":null}]}\n\n", true, false},
		{"content", "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n", true, false},
		{"without refuses", "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			aw := newTestWriter(rec)
			aw.refuses = tc.refuses
			starts := 0
			aw.hooks = hookFuncs{start: func(*attemptWriter) { starts++ }}
			aw.Header().Set("Content-Type", "text/event-stream")
			aw.WriteHeader(http.StatusOK)
			if _, err := aw.Write([]byte(role)); err != nil {
				t.Fatal(err)
			}
			if starts != 1 || aw.committed != tc.committed {
				t.Fatalf("after the role chunk: %d starts, committed %v; want 1 start, committed %v", starts, aw.committed, tc.committed)
			}
			if _, err := aw.Write([]byte(tc.next)); err != nil {
				t.Fatal(err)
			}
			if starts != 1 || !aw.committed || rec.Body.String() != role+tc.next {
				t.Errorf("after the next chunk: %d starts, committed %v, client got %q", starts, aw.committed, rec.Body)
			}
		})
	}
	for data, want := range map[string]bool{
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`:   true,
		`{"choices":[{"index":0,"delta":{"reasoning":"hmm"},"finish_reason":null}]}`:                 false,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]},"finish_reason":null}]}`:        false,
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}`: false,
		`{"type":"message_start","message":{"id":"m","usage":{"input_tokens":3}}}`:                   true,
		`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`:         true,
		`{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","name":"f"}}`:    false,
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}`:         false,
		`{"type": "ping"}`:                      true,
		`{"type":"response.created"}`:           true,
		`{"type":"response.output_text.delta"}`: false,
	} {
		if got := preamble([]byte(data)); got != want {
			t.Errorf("preamble(%s) = %v", data, got)
		}
	}
	if !keepAlive([]byte(`{"type": "ping"}`)) || keepAlive([]byte(`{"type":"message_stop"}`)) {
		t.Error("keepAlive tells Anthropic's ping from other events wrongly")
	}
}

// newAttemptWriter returns an attempt's writer to w.
func newAttemptWriter(ctx context.Context, w http.ResponseWriter) *attemptWriter {
	aw := new(attemptWriter)
	aw.init(ctx, w)
	return aw
}
