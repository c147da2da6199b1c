package mock

import (
	"bufio"
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	antoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/tidwall/gjson"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// defaultWords is the number of tokens in DefaultText.
const defaultWords = 7

// provision provisions and validates h like Caddy would.
func provision(t *testing.T, h *Handler) *Handler {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provisioning: %v", err)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("validating: %v", err)
	}
	h.logger = zap.NewNop()
	return h
}

// withReplacer adds a replacer to the request context, as Caddy's
// server does before calling handlers.
func withReplacer(r *http.Request) *http.Request {
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	return r.WithContext(ctx)
}

// newRequest builds a request; headers are given as name, value pairs.
func newRequest(method, target, body string, headers ...string) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

// serve runs one request through h and returns the recorded response.
func serve(t *testing.T, h *Handler, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, withReplacer(r), nil); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return w
}

// startServer serves h over a real HTTP connection.
func startServer(t *testing.T, h *Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = h.ServeHTTP(w, withReplacer(r), nil)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func openAIClient(srv *httptest.Server) openai.Client {
	return openai.NewClient(
		oaoption.WithBaseURL(srv.URL+"/v1/"),
		oaoption.WithAPIKey("test-key"),
		oaoption.WithHTTPClient(srv.Client()),
		oaoption.WithMaxRetries(0),
	)
}

func anthropicClient(srv *httptest.Server) anthropic.Client {
	return anthropic.NewClient(
		antoption.WithBaseURL(srv.URL),
		antoption.WithAPIKey("test-key"),
		antoption.WithHTTPClient(srv.Client()),
		antoption.WithMaxRetries(0),
	)
}

// sseData returns the data fields of the events in an event stream.
func sseData(t *testing.T, body string) []string {
	t.Helper()
	var data []string
	for line := range strings.Lines(body) {
		if d, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "data: "); ok {
			data = append(data, d)
		}
	}
	return data
}

func TestChatCompletions(t *testing.T) {
	h := provision(t, &Handler{Name: "alpha"})
	client := openAIClient(startServer(t, h))
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{
		Model:    "gpt-test",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello there")},
	}

	t.Run("non-stream", func(t *testing.T) {
		var raw *http.Response
		resp, err := client.Chat.Completions.New(ctx, params, oaoption.WithResponseInto(&raw))
		if err != nil {
			t.Fatal(err)
		}
		if got := raw.Header.Get("X-Mock-Name"); got != "alpha" {
			t.Errorf("X-Mock-Name = %q, want alpha", got)
		}
		if resp.Object != "chat.completion" || !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Created == 0 {
			t.Errorf("bad envelope: %s", resp.RawJSON())
		}
		if resp.Model != "gpt-test" {
			t.Errorf("model = %q, want the requested one", resp.Model)
		}
		choice := resp.Choices[0]
		if choice.Message.Content != DefaultText || choice.Message.Role != "assistant" || choice.FinishReason != "stop" {
			t.Errorf("bad choice: %s", choice.RawJSON())
		}
		// "Hello there" is 11 bytes: 3 tokens
		if u := resp.Usage; u.PromptTokens != 3 || u.CompletionTokens != defaultWords || u.TotalTokens != 3+defaultWords {
			t.Errorf("bad usage: %s", u.RawJSON())
		}
	})

	t.Run("stream", func(t *testing.T) {
		p := params
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := client.Chat.Completions.NewStreaming(ctx, p)
		defer stream.Close()
		var acc openai.ChatCompletionAccumulator
		var contentChunks int
		for stream.Next() {
			chunk := stream.Current()
			acc.AddChunk(chunk)
			if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
				contentChunks++
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if got := acc.Choices[0].Message.Content; got != DefaultText {
			t.Errorf("content = %q, want %q", got, DefaultText)
		}
		if acc.Choices[0].FinishReason != "stop" {
			t.Errorf("finish reason = %q", acc.Choices[0].FinishReason)
		}
		if contentChunks != defaultWords {
			t.Errorf("%d content chunks, want one per word (%d)", contentChunks, defaultWords)
		}
		if acc.Usage.PromptTokens != 3 || acc.Usage.CompletionTokens != defaultWords {
			t.Errorf("bad usage: %+v", acc.Usage)
		}
	})
}

func TestChatStreamWireFormat(t *testing.T) {
	h := provision(t, &Handler{Text: "one two"})
	for _, tc := range []struct {
		name      string
		body      string
		wantUsage bool
	}{
		{"without usage", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`, false},
		{"with usage", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(t, h, newRequest("POST", "/v1/chat/completions", tc.body))
			if ct := w.Header().Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("Content-Type = %q", ct)
			}
			if cc := w.Header().Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("Cache-Control = %q", cc)
			}
			data := sseData(t, w.Body.String())
			want := 1 + 2 + 1 + 1 // role, words, finish, [DONE]
			if tc.wantUsage {
				want++
			}
			if len(data) != want {
				t.Fatalf("got %d events, want %d:\n%s", len(data), want, w.Body.String())
			}
			if role := gjson.Get(data[0], "choices.0.delta.role").String(); role != "assistant" {
				t.Errorf("first chunk is not the role chunk: %s", data[0])
			}
			if c := gjson.Get(data[1], "choices.0.delta.content").String(); c != "one " {
				t.Errorf("first word chunk = %q, want trailing space", c)
			}
			if c := gjson.Get(data[2], "choices.0.delta.content").String(); c != "two" {
				t.Errorf("last word chunk = %q", c)
			}
			if fr := gjson.Get(data[3], "choices.0.finish_reason").String(); fr != "stop" {
				t.Errorf("finish chunk: %s", data[3])
			}
			if tc.wantUsage {
				if n := gjson.Get(data[4], "choices.#").Int(); n != 0 || gjson.Get(data[4], "usage.completion_tokens").Int() != 2 {
					t.Errorf("usage chunk: %s", data[4])
				}
			}
			if data[len(data)-1] != "[DONE]" {
				t.Errorf("last event = %q, want [DONE]", data[len(data)-1])
			}
		})
	}
}

func TestCompletions(t *testing.T) {
	h := provision(t, &Handler{})
	client := openAIClient(startServer(t, h))
	ctx := context.Background()
	params := openai.CompletionNewParams{
		Model:  "davinci-test",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Say something")},
	}

	resp, err := client.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Object != "text_completion" || resp.Choices[0].Text != DefaultText || resp.Choices[0].FinishReason != "stop" {
		t.Errorf("bad completion: %s", resp.RawJSON())
	}
	if resp.Usage.PromptTokens != 4 || resp.Usage.CompletionTokens != defaultWords {
		t.Errorf("bad usage: %s", resp.Usage.RawJSON())
	}

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Completions.NewStreaming(ctx, params)
	defer stream.Close()
	var text strings.Builder
	var finish string
	var usage openai.CompletionUsage
	for stream.Next() {
		chunk := stream.Current()
		if len(chunk.Choices) > 0 {
			text.WriteString(chunk.Choices[0].Text)
			if chunk.Choices[0].FinishReason != "" {
				finish = string(chunk.Choices[0].FinishReason)
			}
		}
		if chunk.JSON.Usage.Valid() {
			usage = chunk.Usage
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != DefaultText || finish != "stop" {
		t.Errorf("streamed %q, finish %q", text.String(), finish)
	}
	if usage.TotalTokens != 4+defaultWords {
		t.Errorf("bad streamed usage: %+v", usage)
	}
}

func TestEmbeddings(t *testing.T) {
	h := provision(t, &Handler{Model: "embed-mock"})
	client := openAIClient(startServer(t, h))
	ctx := context.Background()

	embed := func(input openai.EmbeddingNewParamsInputUnion) *openai.CreateEmbeddingResponse {
		t.Helper()
		resp, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "whatever", Input: input})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	many := embed(openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"first text", "second"}})
	if len(many.Data) != 2 || many.Model != "embed-mock" || many.Object != "list" {
		t.Fatalf("bad response: %s", many.RawJSON())
	}
	// 10 + 6 bytes: 4 tokens
	if many.Usage.PromptTokens != 4 || many.Usage.TotalTokens != 4 {
		t.Errorf("bad usage: %s", many.Usage.RawJSON())
	}
	for i, e := range many.Data {
		if e.Index != int64(i) || e.Object != "embedding" || len(e.Embedding) != 8 {
			t.Errorf("bad embedding %d: %s", i, e.RawJSON())
		}
		var norm float64
		for _, x := range e.Embedding {
			norm += x * x
		}
		if math.Abs(norm-1) > 1e-9 {
			t.Errorf("embedding %d has norm %f, want 1", i, norm)
		}
	}
	if slicesEqual(many.Data[0].Embedding, many.Data[1].Embedding) {
		t.Error("different inputs gave the same embedding")
	}

	one := embed(openai.EmbeddingNewParamsInputUnion{OfString: openai.String("first text")})
	if len(one.Data) != 1 || !slicesEqual(one.Data[0].Embedding, many.Data[0].Embedding) {
		t.Errorf("embeddings are not deterministic: %v vs %v", one.Data[0].Embedding, many.Data[0].Embedding)
	}
}

func slicesEqual(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestResponses(t *testing.T) {
	h := provision(t, &Handler{})
	client := openAIClient(startServer(t, h))
	ctx := context.Background()
	params := responses.ResponseNewParams{
		Model: "gpt-test",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Hi")},
	}

	t.Run("non-stream", func(t *testing.T) {
		resp, err := client.Responses.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(resp.ID, "resp_") || resp.Object != "response" || resp.Status != "completed" || resp.Model != "gpt-test" {
			t.Errorf("bad envelope: %s", resp.RawJSON())
		}
		if got := resp.OutputText(); got != DefaultText {
			t.Errorf("output text = %q", got)
		}
		msg := resp.Output[0].AsMessage()
		if msg.Role != "assistant" || msg.Status != "completed" || !strings.HasPrefix(msg.ID, "msg_") {
			t.Errorf("bad output message: %s", msg.RawJSON())
		}
		if u := resp.Usage; u.InputTokens != 1 || u.OutputTokens != defaultWords || u.TotalTokens != 1+defaultWords {
			t.Errorf("bad usage: %s", u.RawJSON())
		}
	})

	t.Run("stream", func(t *testing.T) {
		stream := client.Responses.NewStreaming(ctx, params)
		defer stream.Close()
		var types []string
		var text strings.Builder
		var final responses.Response
		for i := 0; stream.Next(); i++ {
			ev := stream.Current()
			if ev.SequenceNumber != int64(i) {
				t.Errorf("event %d has sequence number %d", i, ev.SequenceNumber)
			}
			types = append(types, ev.Type)
			switch ev.Type {
			case "response.output_text.delta":
				text.WriteString(ev.Delta)
			case "response.completed":
				final = ev.AsResponseCompleted().Response
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		want := []string{"response.created", "response.output_item.added", "response.content_part.added"}
		for range defaultWords {
			want = append(want, "response.output_text.delta")
		}
		want = append(want, "response.output_text.done", "response.content_part.done",
			"response.output_item.done", "response.completed")
		if strings.Join(types, " ") != strings.Join(want, " ") {
			t.Errorf("event types:\n got %v\nwant %v", types, want)
		}
		if text.String() != DefaultText {
			t.Errorf("streamed text = %q", text.String())
		}
		if final.OutputText() != DefaultText || final.Usage.OutputTokens != defaultWords {
			t.Errorf("bad final response: %s", final.RawJSON())
		}
	})
}

func TestMessages(t *testing.T) {
	h := provision(t, &Handler{Name: "claude"})
	client := anthropicClient(startServer(t, h))
	ctx := context.Background()
	params := anthropic.MessageNewParams{
		Model:     "claude-test",
		MaxTokens: 100,
		System:    []anthropic.TextBlockParam{{Text: "Be brief."}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello"))},
	}
	// "Be brief." + "Hello" = 14 bytes: 4 tokens
	const promptTokens = 4

	t.Run("non-stream", func(t *testing.T) {
		msg, err := client.Messages.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(msg.ID, "msg_") || msg.Type != "message" || msg.Role != "assistant" || msg.Model != "claude-test" {
			t.Errorf("bad envelope: %s", msg.RawJSON())
		}
		if len(msg.Content) != 1 || msg.Content[0].Text != DefaultText || msg.StopReason != "end_turn" {
			t.Errorf("bad content: %s", msg.RawJSON())
		}
		if msg.Usage.InputTokens != promptTokens || msg.Usage.OutputTokens != defaultWords {
			t.Errorf("bad usage: %s", msg.Usage.RawJSON())
		}
	})

	t.Run("stream", func(t *testing.T) {
		stream := client.Messages.NewStreaming(ctx, params)
		defer stream.Close()
		var msg anthropic.Message
		var types []string
		for stream.Next() {
			ev := stream.Current()
			types = append(types, ev.Type)
			if err := msg.Accumulate(ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if types[0] != "message_start" || types[len(types)-1] != "message_stop" {
			t.Errorf("event types: %v", types)
		}
		if len(msg.Content) != 1 || msg.Content[0].Text != DefaultText || msg.StopReason != "end_turn" {
			t.Errorf("bad accumulated message: %+v", msg)
		}
		if msg.Usage.InputTokens != promptTokens || msg.Usage.OutputTokens != defaultWords {
			t.Errorf("bad usage: %+v", msg.Usage)
		}
	})
}

func TestMessagesWireFormat(t *testing.T) {
	h := provision(t, &Handler{Text: "a b"})
	w := serve(t, h, newRequest("POST", "/v1/messages",
		`{"model":"m","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}`,
		"anthropic-version", "2023-06-01"))
	var events []string
	for line := range strings.Lines(w.Body.String()) {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "event: "); ok {
			events = append(events, name)
		}
	}
	want := "message_start content_block_start ping content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if got := strings.Join(events, " "); got != want {
		t.Errorf("events:\n got %s\nwant %s", got, want)
	}
	data := sseData(t, w.Body.String())
	if gjson.Get(data[0], "message.usage.output_tokens").Int() != 1 || gjson.Get(data[0], "message.usage.input_tokens").Int() != 1 {
		t.Errorf("message_start: %s", data[0])
	}
	if gjson.Get(data[6], "usage.output_tokens").Int() != 2 || gjson.Get(data[6], "delta.stop_reason").String() != "end_turn" {
		t.Errorf("message_delta: %s", data[6])
	}
}

func TestModels(t *testing.T) {
	for _, tc := range []struct {
		model, want string
	}{
		{"", "mock"},
		{"gpt-fake", "gpt-fake"},
	} {
		h := provision(t, &Handler{Model: tc.model})
		w := serve(t, h, newRequest("GET", "/v1/models", ""))
		if w.Code != http.StatusOK {
			t.Fatalf("status %d", w.Code)
		}
		body := w.Body.String()
		if gjson.Get(body, "object").String() != "list" ||
			gjson.Get(body, "data.0.id").String() != tc.want ||
			gjson.Get(body, "data.0.object").String() != "model" ||
			gjson.Get(body, "data.0.owned_by").String() != "llm_mock" {
			t.Errorf("bad models list: %s", body)
		}
	}
}

func TestModelOverride(t *testing.T) {
	h := provision(t, &Handler{Model: "fixed"})
	w := serve(t, h, newRequest("POST", "/v1/chat/completions", `{"model":"asked","messages":[]}`))
	if got := gjson.Get(w.Body.String(), "model").String(); got != "fixed" {
		t.Errorf("model = %q, want fixed", got)
	}
	w = serve(t, provision(t, &Handler{}), newRequest("POST", "/v1/chat/completions", `{"messages":[]}`))
	if got := gjson.Get(w.Body.String(), "model").String(); got != "mock" {
		t.Errorf("model without request model = %q, want mock", got)
	}
}

func TestEndpointMatching(t *testing.T) {
	h := provision(t, &Handler{Name: "m"})
	for _, tc := range []struct {
		method, target string
		want           int
		object         string
	}{
		{"POST", "/v1/chat/completions", 200, "chat.completion"},
		{"POST", "/openai/deployments/gpt/chat/completions?api-version=2024-10-21", 200, "chat.completion"},
		{"POST", "/v1/completions", 200, "text_completion"},
		{"POST", "/v1/embeddings", 200, "list"},
		{"POST", "/v1/responses", 200, "response"},
		{"POST", "/v1/chat/completions/", 200, "chat.completion"},
		{"GET", "/v1/models", 200, "list"},
		{"GET", "/v1/chat/completions", 404, ""},
		{"POST", "/v1/models", 404, ""},
		{"POST", "/v1/other", 404, ""},
		{"DELETE", "/v1/responses", 404, ""},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			w := serve(t, h, newRequest(tc.method, tc.target, `{"model":"x","input":"x","prompt":"x","messages":[]}`))
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
			}
			if w.Header().Get("X-Mock-Name") != "m" {
				t.Error("missing X-Mock-Name")
			}
			body := w.Body.String()
			if tc.want == 404 {
				if gjson.Get(body, "error.message").String() == "" || gjson.Get(body, "error.type").String() == "" {
					t.Errorf("not an OpenAI error body: %s", body)
				}
				return
			}
			if got := gjson.Get(body, "object").String(); got != tc.object {
				t.Errorf("object = %q, want %q", got, tc.object)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	h := provision(t, &Handler{})
	const anthropicVersion = "anthropic-version"
	for _, tc := range []struct {
		name      string
		req       *http.Request
		anthropic bool
	}{
		{"invalid JSON", newRequest("POST", "/v1/chat/completions", `{"model":`), false},
		{"empty body", newRequest("POST", "/v1/chat/completions", ``), false},
		{"not an object", newRequest("POST", "/v1/responses", `[1,2]`), false},
		{"embeddings without input", newRequest("POST", "/v1/embeddings", `{"model":"e"}`), false},
		{"messages without version", newRequest("POST", "/v1/messages", `{"model":"m","messages":[]}`), true},
		{"messages invalid JSON", newRequest("POST", "/v1/messages", `nope`, anthropicVersion, "2023-06-01"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(t, h, tc.req)
			if w.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", w.Code)
			}
			checkErrorShape(t, w.Body.String(), tc.anthropic)
		})
	}
}

// checkErrorShape fails the test if body is not an error in the
// Anthropic or OpenAI shape.
func checkErrorShape(t *testing.T, body string, anthropicShape bool) {
	t.Helper()
	if anthropicShape {
		if gjson.Get(body, "type").String() != "error" ||
			gjson.Get(body, "error.type").String() == "" ||
			gjson.Get(body, "error.message").String() == "" {
			t.Errorf("not an Anthropic error: %s", body)
		}
		return
	}
	if gjson.Get(body, "type").Exists() ||
		gjson.Get(body, "error.type").String() == "" ||
		gjson.Get(body, "error.code").String() == "" ||
		gjson.Get(body, "error.message").String() == "" {
		t.Errorf("not an OpenAI error: %s", body)
	}
}

func TestMaxTokens(t *testing.T) {
	h := provision(t, &Handler{Text: "one two three four five"})
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	for _, tc := range []struct {
		name, path, body string
		text, reason     string // gjson paths
		wantText         string
		wantReason       string
		usage            string
	}{
		{"chat max_tokens", "/v1/chat/completions", `{"max_tokens":3,` + msgs + `}`,
			"choices.0.message.content", "choices.0.finish_reason", "one two three", "length", "usage.completion_tokens"},
		{"chat max_completion_tokens", "/v1/chat/completions", `{"max_completion_tokens":2,"max_tokens":4,` + msgs + `}`,
			"choices.0.message.content", "choices.0.finish_reason", "one two", "length", "usage.completion_tokens"},
		{"chat large limit", "/v1/chat/completions", `{"max_tokens":50,` + msgs + `}`,
			"choices.0.message.content", "choices.0.finish_reason", "one two three four five", "stop", "usage.completion_tokens"},
		{"completions", "/v1/completions", `{"max_tokens":1,"prompt":"x"}`,
			"choices.0.text", "choices.0.finish_reason", "one", "length", "usage.completion_tokens"},
		{"responses", "/v1/responses", `{"max_output_tokens":3,"input":"x"}`,
			"output.0.content.0.text", "status", "one two three", "incomplete", "usage.output_tokens"},
		{"messages", "/v1/messages", `{"max_tokens":3,` + msgs + `}`,
			"content.0.text", "stop_reason", "one two three", "max_tokens", "usage.output_tokens"},
		{"messages large limit", "/v1/messages", `{"max_tokens":1024,` + msgs + `}`,
			"content.0.text", "stop_reason", "one two three four five", "end_turn", "usage.output_tokens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(t, h, newRequest("POST", tc.path, tc.body, "anthropic-version", "2023-06-01"))
			body := w.Body.String()
			if got := gjson.Get(body, tc.text).String(); got != tc.wantText {
				t.Errorf("text = %q, want %q", got, tc.wantText)
			}
			if got := gjson.Get(body, tc.reason).String(); got != tc.wantReason {
				t.Errorf("%s = %q, want %q", tc.reason, got, tc.wantReason)
			}
			if got := gjson.Get(body, tc.usage).Int(); got != int64(len(strings.Fields(tc.wantText))) {
				t.Errorf("%s = %d", tc.usage, got)
			}
		})
	}

	t.Run("streams", func(t *testing.T) {
		for _, tc := range []struct {
			path, body, want string
		}{
			{"/v1/chat/completions", `{"stream":true,"max_tokens":2,` + msgs + `}`, `"finish_reason":"length"`},
			{"/v1/completions", `{"stream":true,"max_tokens":2,"prompt":"x"}`, `"finish_reason":"length"`},
			{"/v1/messages", `{"stream":true,"max_tokens":2,` + msgs + `}`, `"stop_reason":"max_tokens"`},
			{"/v1/responses", `{"stream":true,"max_output_tokens":2,"input":"x"}`, "event: response.incomplete\n"},
		} {
			w := serve(t, h, newRequest("POST", tc.path, tc.body, "anthropic-version", "2023-06-01"))
			body := w.Body.String()
			if !strings.Contains(body, tc.want) {
				t.Errorf("%s: stream lacks %q:\n%s", tc.path, tc.want, body)
			}
			if strings.Contains(body, "three") {
				t.Errorf("%s: stream was not truncated", tc.path)
			}
		}
	})
}

func TestPromptTokens(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"empty", `{}`, 1},
		{"string content", `{"messages":[{"role":"user","content":"12345678"}]}`, 2},
		{"rounds up", `{"messages":[{"role":"user","content":"123456789"}]}`, 3},
		{"text parts", `{"messages":[{"role":"user","content":[{"type":"text","text":"1234"},{"type":"image_url","image_url":{"url":"data:xxxxxxxx"}},{"type":"text","text":"5678"}]}]}`, 2},
		{"system string", `{"system":"12345678","messages":[{"role":"user","content":"1234"}]}`, 3},
		{"system blocks", `{"system":[{"type":"text","text":"12345678"}]}`, 2},
		{"prompt", `{"prompt":"1234567890123456"}`, 4},
		{"prompt array", `{"prompt":["1234","5678"]}`, 2},
		{"input string", `{"input":"12345678"}`, 2},
		{"input items", `{"input":[{"role":"user","content":[{"type":"input_text","text":"12345678"}]},{"role":"user","content":"1234"}]}`, 3},
		{"ignores model", `{"model":"a-very-long-model-name","input":"1"}`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := promptTokens(gjson.Parse(tc.body)); got != tc.want {
				t.Errorf("promptTokens = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestAPIKey(t *testing.T) {
	t.Setenv("LLM_MOCK_TEST_KEY", "env-secret")
	for _, tc := range []struct {
		name    string
		key     string
		headers []string
		want    int
	}{
		{"bearer", "secret", []string{"Authorization", "Bearer secret"}, 200},
		{"x-api-key", "secret", []string{"x-api-key", "secret"}, 200},
		{"api-key", "secret", []string{"api-key", "secret"}, 200},
		{"all matching", "secret", []string{"Authorization", "Bearer secret", "x-api-key", "secret"}, 200},
		{"placeholder", "{env.LLM_MOCK_TEST_KEY}", []string{"x-api-key", "env-secret"}, 200},
		{"placeholder not resolved literally", "{env.LLM_MOCK_TEST_KEY}", []string{"x-api-key", "{env.LLM_MOCK_TEST_KEY}"}, 401},
		{"missing", "secret", nil, 401},
		{"wrong", "secret", []string{"Authorization", "Bearer client-key"}, 401},
		{"one wrong of two", "secret", []string{"x-api-key", "secret", "Authorization", "Bearer client-key"}, 401},
		{"not bearer", "secret", []string{"Authorization", "Basic secret"}, 401},
		{"empty bearer", "secret", []string{"Authorization", "Bearer "}, 401},
		{"unset key resolves empty", "{env.LLM_MOCK_UNSET_KEY}", []string{"x-api-key", ""}, 401},
		{"no key configured", "", []string{"Authorization", "Bearer anything"}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := provision(t, &Handler{APIKey: tc.key})
			headers := append([]string{"anthropic-version", "2023-06-01"}, tc.headers...)
			for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
				w := serve(t, h, newRequest("POST", path, `{"messages":[]}`, headers...))
				if w.Code != tc.want {
					t.Fatalf("%s: status %d, want %d: %s", path, w.Code, tc.want, w.Body)
				}
				if tc.want == 401 {
					checkErrorShape(t, w.Body.String(), path == "/v1/messages")
					if strings.Contains(w.Body.String(), "secret") {
						t.Errorf("error body leaks the key: %s", w.Body)
					}
				}
			}
		})
	}
}

func TestAPIKeyWithSDKs(t *testing.T) {
	h := provision(t, &Handler{APIKey: "test-key"})
	srv := startServer(t, h)
	ctx := context.Background()

	oa := openAIClient(srv)
	if _, err := oa.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "m"}); err != nil {
		t.Errorf("openai with the right key: %v", err)
	}
	_, err := oa.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "m"}, oaoption.WithAPIKey("other"))
	if apiErr, ok := err.(*openai.Error); !ok || apiErr.StatusCode != 401 {
		t.Errorf("openai with a wrong key: %v", err)
	}

	an := anthropicClient(srv)
	params := anthropic.MessageNewParams{Model: "m", MaxTokens: 10}
	if _, err := an.Messages.New(ctx, params); err != nil {
		t.Errorf("anthropic with the right key: %v", err)
	}
	_, err = an.Messages.New(ctx, params, antoption.WithAPIKey("other"))
	if apiErr, ok := err.(*anthropic.Error); !ok || apiErr.StatusCode != 401 {
		t.Errorf("anthropic with a wrong key: %v", err)
	}
}

func TestTiming(t *testing.T) {
	const d = 80 * time.Millisecond
	chat := `{"model":"m","messages":[]}`
	chatStream := `{"model":"m","stream":true,"messages":[]}`

	t.Run("latency", func(t *testing.T) {
		h := provision(t, &Handler{Latency: caddy.Duration(d)})
		start := time.Now()
		serve(t, h, newRequest("GET", "/v1/models", ""))
		if el := time.Since(start); el < d {
			t.Errorf("answered after %v, want at least %v", el, d)
		}
	})

	t.Run("ttft non-stream", func(t *testing.T) {
		h := provision(t, &Handler{TTFT: caddy.Duration(d)})
		start := time.Now()
		serve(t, h, newRequest("POST", "/v1/chat/completions", chat))
		if el := time.Since(start); el < d {
			t.Errorf("answered after %v, want at least %v", el, d)
		}
	})

	t.Run("tokens_per_second non-stream", func(t *testing.T) {
		// 4 words at 50 tokens/s: 80ms
		h := provision(t, &Handler{Text: "a b c d", TokensPerSecond: 50})
		start := time.Now()
		serve(t, h, newRequest("POST", "/v1/chat/completions", chat))
		if el := time.Since(start); el < d {
			t.Errorf("answered after %v, want at least %v", el, d)
		}
	})

	t.Run("ttft stream", func(t *testing.T) {
		h := provision(t, &Handler{TTFT: caddy.Duration(d)})
		srv := startServer(t, h)
		headers, first := streamTimes(t, srv, "/v1/chat/completions", chatStream)
		if headers >= d {
			t.Errorf("headers after %v, want them before ttft", headers)
		}
		if first < d {
			t.Errorf("first event after %v, want at least %v", first, d)
		}
	})

	t.Run("tokens_per_second stream", func(t *testing.T) {
		// 5 words at 50 tokens/s: 4 gaps of 20ms
		h := provision(t, &Handler{Text: "a b c d e", TokensPerSecond: 50})
		start := time.Now()
		w := serve(t, h, newRequest("POST", "/v1/chat/completions", chatStream))
		if el := time.Since(start); el < d {
			t.Errorf("stream took %v, want at least %v", el, d)
		}
		if n := len(sseData(t, w.Body.String())); n != 1+5+1+1 {
			t.Errorf("%d events", n)
		}
	})
}

// streamTimes posts body to path and returns how long the response
// headers and the first body line took.
func streamTimes(t *testing.T, srv *httptest.Server, path, body string) (headers, first time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := srv.Client().Post(srv.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	headers = time.Since(start)
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	first = time.Since(start)
	_, _ = io.Copy(io.Discard, resp.Body)
	return headers, first
}

func TestValidate(t *testing.T) {
	for _, h := range []*Handler{
		{Latency: -1},
		{TTFT: -1},
		{TokensPerSecond: -1},
		{TokensPerSecond: math.NaN()},
		{TokensPerSecond: math.Inf(1)},
		{CachedTokens: -1},
		{CacheWriteTokens: -1},
	} {
		if err := h.Validate(); err == nil {
			t.Errorf("%+v: expected an error", h)
		}
	}
}

func TestCountTokens(t *testing.T) {
	h := provision(t, &Handler{Name: "m"})
	body := `{"model":"claude","system":"Be brief.","messages":[{"role":"user","content":"count these words please"}]}`
	w := serve(t, h, newRequest("POST", "/v1/messages/count_tokens?beta=true", body, "anthropic-version", "2023-06-01"))
	// One token per 4 bytes of text: 9 + 24 bytes.
	if w.Code != http.StatusOK || w.Body.String() != `{"input_tokens":9}` {
		t.Errorf("count_tokens: %d %s", w.Code, w.Body)
	}
	w = serve(t, h, newRequest("POST", "/v1/messages/count_tokens", body))
	if w.Code != http.StatusBadRequest || gjson.Get(w.Body.String(), "type").String() != "error" {
		t.Errorf("without anthropic-version: %d %s, want an Anthropic 400", w.Code, w.Body)
	}
}
