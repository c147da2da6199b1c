package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go"
	antoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
)

// Translation between the two wire formats, end to end: OpenAI Chat
// Completions clients served by Anthropic-format providers and Anthropic
// Messages clients served by OpenAI-format ones, with the real SDKs on
// the client side and llm_mock (behind a recording tap where the test
// needs to see the translated request) on the provider side.

const (
	cacheText = "Cached answers come back from the prompt cache."

	// what the cache mock reports as read from and written to the cache
	cacheRead  = 4
	cacheWrite = 3

	toolPrompt = "What is the weather in Paris for the next days?"
	toolResult = `{"temperature":21,"sky":"clear"}`
)

// translateSetup is the default configuration plus:
//   - tapclaude / tapalpha: providers (Anthropic / OpenAI format) behind
//     recording taps in front of the claude and alpha mocks, with models
//     tap-claude and tap-alpha;
//   - solo-claude / solo-alpha: one provider each, with upstream names
//     up-claude and up-alpha, and the routes ant-first (solo-claude, then
//     solo-alpha) and oa-first (the reverse);
//   - cache-via-oa / cache-via-ant: the same cache-reporting mock served
//     as an OpenAI and as an Anthropic provider;
//   - n-fallback: claude-chat, then only-alpha.
func translateSetup(tapClaudeURL, tapAlphaURL string) setup {
	s := withDefaults(fmt.Sprintf(`
		provider tapclaude %s {
			format anthropic
		}
		provider tapalpha %s {
			max_tokens_field max_completion_tokens
		}
		provider cache-oa http://127.0.0.1:%d
		provider cache-ant http://127.0.0.1:%d {
			format anthropic
		}
		model tap-claude tapclaude {
			upstream_name tapped-claude
		}
		model tap-alpha tapalpha {
			upstream_name tapped-alpha
		}
		model solo-claude claude {
			upstream_name up-claude
		}
		model solo-alpha alpha {
			upstream_name up-alpha
		}
		model cache-via-oa cache-oa
		model cache-via-ant cache-ant
		route ant-first {
			target solo-claude
			target solo-alpha
		}
		route oa-first {
			target solo-alpha
			target solo-claude
		}
		route n-fallback {
			target claude-chat
			target only-alpha
		}
`, tapClaudeURL, tapAlphaURL, portExtra1, portExtra1))
	s.Mocks = append(s.Mocks, mockSite{
		Port: portExtra1, Name: "cachemock", Text: cacheText,
		Lines: []string{fmt.Sprintf("cached_tokens %d", cacheRead), fmt.Sprintf("cache_write_tokens %d", cacheWrite)},
	})
	return s
}

// tap is a recording reverse proxy in front of a mock: it keeps every
// request it forwards, so a test can see what the gateway really sent
// upstream, and passes the mock's answer through unchanged (streams
// flushed as they come).
type tap struct {
	rec   recorder
	proxy *httputil.ReverseProxy
}

func (tp *tap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	tp.rec.mu.Lock()
	tp.rec.reqs = append(tp.rec.reqs, recorded{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host,
		Header: r.Header.Clone(), Body: body,
	})
	tp.rec.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	tp.proxy.ServeHTTP(w, r)
}

// newTap starts a tap in front of the mock listening on port.
func newTap(t *testing.T, port int) (*httptest.Server, *tap) {
	target, err := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{proxy: httputil.NewSingleHostReverseProxy(target)}
	tp.proxy.FlushInterval = -1
	// a connection of its own for every request: a kept-alive one could
	// lead to the mock of an earlier configuration
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	tp.proxy.Transport = tr
	srv := httptest.NewServer(tp)
	t.Cleanup(srv.Close)
	return srv, tp
}

// startTranslate starts translateSetup with fresh taps.
func startTranslate(t *testing.T) (tapClaude, tapAlpha *tap) {
	t.Helper()
	sc, tc := newTap(t, portClaude)
	sa, ta := newTap(t, portAlpha)
	start(t, translateSetup(sc.URL, sa.URL))
	return tc, ta
}

// oaStreamResult is a chat completion stream assembled by the SDK's
// accumulator.
type oaStreamResult struct {
	Acc    openai.ChatCompletionAccumulator
	Usage  *openai.CompletionUsage // the usage chunk, if one came
	Chunks int
	Err    error
	Resp   *http.Response
}

// choice returns the single accumulated choice, failing the test when
// there is not exactly one.
func (s *oaStreamResult) choice(t *testing.T) openai.ChatCompletionChoice {
	t.Helper()
	if len(s.Acc.Choices) != 1 {
		t.Fatalf("the stream assembled %d choices, want 1: %+v", len(s.Acc.Choices), s.Acc.Choices)
	}
	return s.Acc.Choices[0]
}

// oaAccumulate streams a chat completion and assembles it.
func oaAccumulate(t *testing.T, c openai.Client, p openai.ChatCompletionNewParams, opts ...oaoption.RequestOption) *oaStreamResult {
	t.Helper()
	res := new(oaStreamResult)
	opts = append(opts, oaoption.WithResponseInto(&res.Resp))
	stream := c.Chat.Completions.NewStreaming(ctxT(t), p, opts...)
	defer stream.Close()
	for stream.Next() {
		ch := stream.Current()
		res.Chunks++
		if !res.Acc.AddChunk(ch) {
			res.Err = fmt.Errorf("chunk %d does not continue the stream (id %q, first id %q)", res.Chunks, ch.ID, res.Acc.ID)
			return res
		}
		if ch.JSON.Usage.Valid() && ch.Usage.TotalTokens > 0 {
			if res.Usage != nil {
				res.Err = fmt.Errorf("two chunks carry usage")
				return res
			}
			u := ch.Usage
			res.Usage = &u
		}
	}
	res.Err = stream.Err()
	return res
}

// antStreamResult is a Messages stream assembled by the SDK, with the
// usage of message_start and message_delta as they came: the SDK's
// accumulator copies only output_tokens from message_delta.
type antStreamResult struct {
	Msg        anthropic.Message
	StartUsage anthropic.Usage
	DeltaUsage anthropic.MessageDeltaUsage
	Types      []string
	Err        error
	Resp       *http.Response
}

// antAccumulate streams a message and assembles it.
func antAccumulate(t *testing.T, c anthropic.Client, p anthropic.MessageNewParams, opts ...antoption.RequestOption) *antStreamResult {
	t.Helper()
	res := new(antStreamResult)
	opts = append(opts, antoption.WithResponseInto(&res.Resp))
	stream := c.Messages.NewStreaming(ctxT(t), p, opts...)
	defer stream.Close()
	for stream.Next() {
		ev := stream.Current()
		res.Types = append(res.Types, ev.Type)
		switch e := ev.AsAny().(type) {
		case anthropic.MessageStartEvent:
			res.StartUsage = e.Message.Usage
		case anthropic.MessageDeltaEvent:
			res.DeltaUsage = e.Usage
		}
		if err := res.Msg.Accumulate(ev); err != nil {
			res.Err = fmt.Errorf("accumulate: %w", err)
			return res
		}
	}
	res.Err = stream.Err()
	return res
}

// text joins the text blocks of a message.
func antText(m anthropic.Message) string {
	var sb strings.Builder
	for _, b := range m.Content {
		if b.Type == "text" {
			sb.WriteString(b.Text)
		}
	}
	return sb.String()
}

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(a, b string) bool {
	var va, vb any
	if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// expectHeaders checks routing headers when the provider and the mock
// behind it are named differently (taps).
func expectHeaders(t *testing.T, resp *http.Response, model, provider, mock string, attempts int) {
	t.Helper()
	if resp == nil {
		t.Fatalf("no response captured")
	}
	got := routeOf(resp.Header)
	if got.Model != model || got.Provider != provider || got.Attempts != attempts || len(got.Mock) != 1 || got.Mock[0] != mock {
		t.Errorf("routing headers %s, want model=%q provider=%q attempts=%d mock=%q", got, model, provider, attempts, mock)
	}
}

// The weather tool both clients offer. The mock calls it with the
// arguments wantToolArgs: "mock" for strings, the first enum value, 1 for
// integers.
var (
	weatherProps = map[string]any{
		"city": map[string]any{"type": "string", "description": "the city"},
		"unit": map[string]any{"type": "string", "enum": []string{"celsius", "fahrenheit"}},
		"days": map[string]any{"type": "integer"},
	}
	weatherRequired = []string{"city", "unit", "days"}
	wantToolArgs    = `{"city":"mock","days":1,"unit":"celsius"}`
)

func weatherToolOA() openai.ChatCompletionToolUnionParam {
	return openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: openai.String("Weather forecast for a city"),
		Parameters: openai.FunctionParameters{
			"type":       "object",
			"properties": weatherProps,
			"required":   weatherRequired,
		},
	})
}

func weatherToolAnt() anthropic.ToolUnionParam {
	return anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{
		Name:        "get_weather",
		Description: anthropic.String("Weather forecast for a city"),
		InputSchema: anthropic.ToolInputSchemaParam{Properties: weatherProps, Required: weatherRequired},
	}}
}

// TestTranslateText: plain answers both ways, streamed and not. The
// streamed answer assembles to the non-streamed one, and the usage is the
// same in both and agrees with what the same mock reports natively.
func TestTranslateText(t *testing.T) {
	startTranslate(t)
	oc, ac := oaClient(t), antClient(t)
	wantPrompt := promptTokens(prompt)

	t.Run("openai client, anthropic provider", func(t *testing.T) {
		// what the mock reports natively, for reference
		native, err := ac.Messages.New(ctxT(t), messageParams("claude-chat", prompt))
		if err != nil {
			t.Fatalf("native messages: %v", err)
		}
		nativePrompt := native.Usage.InputTokens + native.Usage.CacheReadInputTokens + native.Usage.CacheCreationInputTokens
		if nativePrompt != wantPrompt {
			t.Fatalf("the mock reports %d prompt tokens natively, want %d", nativePrompt, wantPrompt)
		}

		var hr *http.Response
		resp, err := oc.Chat.Completions.New(ctxT(t), chatParams("claude-chat", prompt), oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatalf("chat completion to an anthropic model: %v", err)
		}
		expectRoute(t, hr, "claude-chat", "claude", "claude-chat", 1)
		if ct := hr.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type %q", ct)
		}
		if resp.Object != "chat.completion" || !strings.HasPrefix(resp.ID, "msg_") {
			t.Errorf("object %q id %q: want a chat.completion carrying the Messages answer's msg_ id", resp.Object, resp.ID)
		}
		if resp.Model != "mock-claude" {
			t.Errorf("model %q, want the upstream name mock-claude", resp.Model)
		}
		if len(resp.Choices) != 1 {
			t.Fatalf("%d choices", len(resp.Choices))
		}
		ch := resp.Choices[0]
		if ch.Message.Content != claudeText || ch.FinishReason != "stop" || ch.Message.Role != "assistant" || len(ch.Message.ToolCalls) != 0 {
			t.Errorf("message %+v finish %q, want %q / stop", ch.Message, ch.FinishReason, claudeText)
		}
		wantOut := int64(len(strings.Fields(claudeText)))
		if resp.Usage.PromptTokens != nativePrompt || resp.Usage.CompletionTokens != native.Usage.OutputTokens ||
			resp.Usage.CompletionTokens != wantOut || resp.Usage.TotalTokens != nativePrompt+wantOut {
			t.Errorf("usage %d/%d/%d, want %d/%d/%d", resp.Usage.PromptTokens, resp.Usage.CompletionTokens, resp.Usage.TotalTokens,
				nativePrompt, wantOut, nativePrompt+wantOut)
		}
		if resp.Usage.PromptTokensDetails.CachedTokens != 0 {
			t.Errorf("cached tokens %d without a cache", resp.Usage.PromptTokensDetails.CachedTokens)
		}
		if _, ok := resp.Usage.JSON.ExtraFields["cache_creation_input_tokens"]; ok {
			t.Errorf("cache_creation_input_tokens reported without cache writes: %s", resp.Usage.RawJSON())
		}

		p := chatParams("claude-chat", prompt)
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := oaAccumulate(t, oc, p)
		if s.Err != nil {
			t.Fatalf("stream: %v", s.Err)
		}
		expectRoute(t, s.Resp, "claude-chat", "claude", "claude-chat", 1)
		if ct := s.Resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Errorf("stream Content-Type %q", ct)
		}
		sc := s.choice(t)
		if sc.Message.Content != ch.Message.Content || sc.FinishReason != ch.FinishReason || len(sc.Message.ToolCalls) != 0 {
			t.Errorf("stream assembled %q (%s), non-stream %q (%s)", sc.Message.Content, sc.FinishReason, ch.Message.Content, ch.FinishReason)
		}
		if s.Chunks < len(strings.Fields(claudeText)) {
			t.Errorf("only %d chunks: the answer was not streamed word by word", s.Chunks)
		}
		if !strings.HasPrefix(s.Acc.ID, "msg_") || s.Acc.Model != "mock-claude" {
			t.Errorf("stream id %q model %q", s.Acc.ID, s.Acc.Model)
		}
		if s.Usage == nil {
			t.Fatalf("no usage chunk despite include_usage")
		}
		if s.Usage.PromptTokens != resp.Usage.PromptTokens || s.Usage.CompletionTokens != resp.Usage.CompletionTokens ||
			s.Usage.TotalTokens != resp.Usage.TotalTokens || s.Usage.PromptTokensDetails.CachedTokens != 0 {
			t.Errorf("stream usage %+v, non-stream %+v", *s.Usage, resp.Usage)
		}

		// without include_usage, no usage chunk
		s = oaAccumulate(t, oc, chatParams("claude-chat", prompt))
		if s.Err != nil {
			t.Fatalf("stream without usage: %v", s.Err)
		}
		if s.Usage != nil {
			t.Errorf("a usage chunk came without include_usage: %+v", *s.Usage)
		}
		if got := s.choice(t); got.Message.Content != claudeText || got.FinishReason != "stop" {
			t.Errorf("stream without usage assembled %q (%s)", got.Message.Content, got.FinishReason)
		}
	})

	t.Run("anthropic client, openai provider", func(t *testing.T) {
		native, err := oc.Chat.Completions.New(ctxT(t), chatParams("only-alpha", prompt))
		if err != nil {
			t.Fatalf("native chat: %v", err)
		}
		if native.Usage.PromptTokens != wantPrompt {
			t.Fatalf("the mock reports %d prompt tokens natively, want %d", native.Usage.PromptTokens, wantPrompt)
		}

		var hr *http.Response
		msg, err := ac.Messages.New(ctxT(t), messageParams("only-alpha", prompt), antoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatalf("messages to an openai model: %v", err)
		}
		expectRoute(t, hr, "only-alpha", "alpha", "only-alpha", 1)
		if msg.Type != "message" || msg.Role != "assistant" || !strings.HasPrefix(msg.ID, "chatcmpl-") {
			t.Errorf("type %q role %q id %q: want a message carrying the chat completion's id", msg.Type, msg.Role, msg.ID)
		}
		if msg.Model != "only-alpha" {
			t.Errorf("model %q, want only-alpha (its upstream name)", msg.Model)
		}
		if len(msg.Content) != 1 || msg.Content[0].Type != "text" || msg.Content[0].Text != alphaText {
			t.Fatalf("content %+v, want one text block %q", msg.Content, alphaText)
		}
		if msg.StopReason != anthropic.StopReasonEndTurn {
			t.Errorf("stop reason %q", msg.StopReason)
		}
		wantIn := native.Usage.PromptTokens - native.Usage.PromptTokensDetails.CachedTokens
		if msg.Usage.InputTokens != wantIn || msg.Usage.OutputTokens != native.Usage.CompletionTokens ||
			msg.Usage.CacheReadInputTokens != 0 || msg.Usage.CacheCreationInputTokens != 0 {
			t.Errorf("usage %s, want input %d output %d and no cache", msg.Usage.RawJSON(), wantIn, native.Usage.CompletionTokens)
		}

		s := antAccumulate(t, ac, messageParams("only-alpha", prompt))
		if s.Err != nil {
			t.Fatalf("stream: %v", s.Err)
		}
		expectRoute(t, s.Resp, "only-alpha", "alpha", "only-alpha", 1)
		if ct := s.Resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Errorf("stream Content-Type %q", ct)
		}
		if got := antText(s.Msg); got != alphaText || len(s.Msg.Content) != 1 {
			t.Errorf("stream assembled %d blocks, text %q, want %q", len(s.Msg.Content), got, alphaText)
		}
		if s.Msg.StopReason != msg.StopReason {
			t.Errorf("stream stop reason %q, non-stream %q", s.Msg.StopReason, msg.StopReason)
		}
		if !strings.HasPrefix(s.Msg.ID, "chatcmpl-") || s.Msg.Model != "only-alpha" {
			t.Errorf("stream id %q model %q", s.Msg.ID, s.Msg.Model)
		}
		if n := len(s.Types); n < 4 || s.Types[0] != "message_start" || s.Types[n-2] != "message_delta" || s.Types[n-1] != "message_stop" {
			t.Errorf("event sequence %v", s.Types)
		}
		// the chat API reports usage at the end: message_start has none,
		// the final message_delta all of it
		if s.StartUsage.InputTokens != 0 || s.StartUsage.OutputTokens != 0 {
			t.Errorf("message_start usage %s, want zeros", s.StartUsage.RawJSON())
		}
		d := s.DeltaUsage
		if d.InputTokens != msg.Usage.InputTokens || d.OutputTokens != msg.Usage.OutputTokens ||
			d.CacheReadInputTokens != 0 || d.CacheCreationInputTokens != 0 {
			t.Errorf("message_delta usage %s, non-stream %s", d.RawJSON(), msg.Usage.RawJSON())
		}
		if s.Msg.Usage.OutputTokens != msg.Usage.OutputTokens {
			t.Errorf("accumulated output tokens %d, want %d", s.Msg.Usage.OutputTokens, msg.Usage.OutputTokens)
		}
	})
}

// TestTranslateCacheUsage: cache reads and writes keep their meaning
// across formats. OpenAI's prompt_tokens includes cached tokens,
// Anthropic's input_tokens leaves out cache reads and writes.
func TestTranslateCacheUsage(t *testing.T) {
	startTranslate(t)
	oc, ac := oaClient(t), antClient(t)
	wantPrompt := promptTokens(prompt)
	if wantPrompt <= cacheRead+cacheWrite {
		t.Fatalf("the prompt (%d tokens) must be longer than the cached part", wantPrompt)
	}
	wantOut := int64(len(strings.Fields(cacheText)))

	// natively: the chat API reports reads only, the Messages API both
	nativeOA, err := oc.Chat.Completions.New(ctxT(t), chatParams("cache-via-oa", prompt))
	if err != nil {
		t.Fatal(err)
	}
	if u := nativeOA.Usage; u.PromptTokens != wantPrompt || u.PromptTokensDetails.CachedTokens != cacheRead || u.CompletionTokens != wantOut {
		t.Fatalf("native chat usage %s", u.RawJSON())
	}
	nativeAnt, err := ac.Messages.New(ctxT(t), messageParams("cache-via-ant", prompt))
	if err != nil {
		t.Fatal(err)
	}
	if u := nativeAnt.Usage; u.InputTokens != wantPrompt-cacheRead-cacheWrite || u.CacheReadInputTokens != cacheRead ||
		u.CacheCreationInputTokens != cacheWrite || u.OutputTokens != wantOut {
		t.Fatalf("native messages usage %s", u.RawJSON())
	}

	t.Run("openai client, anthropic provider", func(t *testing.T) {
		// prompt_tokens = input + cache reads + cache writes
		want := nativeAnt.Usage.InputTokens + nativeAnt.Usage.CacheReadInputTokens + nativeAnt.Usage.CacheCreationInputTokens
		check := func(t *testing.T, what string, u openai.CompletionUsage) {
			t.Helper()
			if u.PromptTokens != want || u.CompletionTokens != wantOut || u.TotalTokens != want+wantOut ||
				u.PromptTokensDetails.CachedTokens != cacheRead {
				t.Errorf("%s usage %s, want prompt %d (cached %d) completion %d", what, u.RawJSON(), want, cacheRead, wantOut)
			}
			var extra struct {
				Write *int64 `json:"cache_creation_input_tokens"`
			}
			if err := json.Unmarshal([]byte(u.RawJSON()), &extra); err != nil || extra.Write == nil || *extra.Write != cacheWrite {
				t.Errorf("%s usage %s: want cache_creation_input_tokens %d", what, u.RawJSON(), cacheWrite)
			}
		}
		var hr *http.Response
		resp, err := oc.Chat.Completions.New(ctxT(t), chatParams("cache-via-ant", prompt), oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatal(err)
		}
		expectHeaders(t, hr, "cache-via-ant", "cache-ant", "cachemock", 1)
		if resp.Choices[0].Message.Content != cacheText || !strings.HasPrefix(resp.ID, "msg_") {
			t.Errorf("id %q content %q", resp.ID, resp.Choices[0].Message.Content)
		}
		check(t, "non-stream", resp.Usage)

		p := chatParams("cache-via-ant", prompt)
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := oaAccumulate(t, oc, p)
		if s.Err != nil {
			t.Fatal(s.Err)
		}
		if got := s.choice(t).Message.Content; got != cacheText {
			t.Errorf("streamed %q", got)
		}
		if s.Usage == nil {
			t.Fatal("no usage chunk")
		}
		check(t, "stream", *s.Usage)
	})

	t.Run("anthropic client, openai provider", func(t *testing.T) {
		// input_tokens = prompt_tokens - cached tokens; the chat API
		// reports no cache writes
		wantIn := nativeOA.Usage.PromptTokens - nativeOA.Usage.PromptTokensDetails.CachedTokens
		var hr *http.Response
		msg, err := ac.Messages.New(ctxT(t), messageParams("cache-via-oa", prompt), antoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatal(err)
		}
		expectHeaders(t, hr, "cache-via-oa", "cache-oa", "cachemock", 1)
		if antText(*msg) != cacheText || !strings.HasPrefix(msg.ID, "chatcmpl-") {
			t.Errorf("id %q text %q", msg.ID, antText(*msg))
		}
		if u := msg.Usage; u.InputTokens != wantIn || u.CacheReadInputTokens != cacheRead || u.CacheCreationInputTokens != 0 || u.OutputTokens != wantOut {
			t.Errorf("usage %s, want input %d cache read %d write 0 output %d", u.RawJSON(), wantIn, cacheRead, wantOut)
		}

		s := antAccumulate(t, ac, messageParams("cache-via-oa", prompt))
		if s.Err != nil {
			t.Fatal(s.Err)
		}
		if antText(s.Msg) != cacheText {
			t.Errorf("streamed %q", antText(s.Msg))
		}
		if u := s.StartUsage; u.InputTokens != 0 || u.CacheReadInputTokens != 0 || u.OutputTokens != 0 {
			t.Errorf("message_start usage %s, want zeros (the chat API reports usage at the end)", u.RawJSON())
		}
		if u := s.DeltaUsage; u.InputTokens != wantIn || u.CacheReadInputTokens != cacheRead || u.CacheCreationInputTokens != 0 || u.OutputTokens != wantOut {
			t.Errorf("message_delta usage %s, want input %d cache read %d write 0 output %d", u.RawJSON(), wantIn, cacheRead, wantOut)
		}
	})
}

// TestTranslateToolRoundTrip: a tool call and its result, both ways,
// streamed and not, through taps that show the request each provider
// really received.
func TestTranslateToolRoundTrip(t *testing.T) {
	tapClaude, tapAlpha := startTranslate(t)
	oc, ac := oaClient(t), antClient(t)

	// checkAnthropicRequest checks what the Anthropic-format mock got for
	// the first request of a round trip.
	checkAnthropicRequest := func(t *testing.T, got recorded, stream bool) {
		t.Helper()
		if got.Path != "/v1/messages" || got.Header.Get("Anthropic-Version") == "" {
			t.Errorf("the anthropic provider got %s %s (anthropic-version %q), want /v1/messages",
				got.Method, got.Path, got.Header.Get("Anthropic-Version"))
		}
		for path, want := range map[string]string{
			"model":                     "tapped-claude",
			"tools.0.name":              "get_weather",
			"tools.0.function":          "", // no OpenAI tool shape left
			"tools.0.type":              "",
			"messages.0.role":           "user",
			"messages.0.content.0.type": "text",
			"messages.0.content.0.text": toolPrompt,
		} {
			if v := jsonPath(got.Body, path); v != want {
				t.Errorf("upstream body %s = %q, want %q (body %s)", path, v, want, got.Body)
			}
		}
		schema := jsonPath(got.Body, "tools.0.input_schema")
		if !sameJSON(schema, `{"type":"object","properties":`+mustJSON(weatherProps)+`,"required":`+mustJSON(weatherRequired)+`}`) {
			t.Errorf("upstream tools.0.input_schema %s", schema)
		}
		if jsonPath(got.Body, "max_tokens") == "" {
			t.Errorf("the Messages request has no max_tokens: %s", got.Body)
		}
		if s := jsonPath(got.Body, "stream"); (s == "true") != stream {
			t.Errorf("upstream stream %q, want %v", s, stream)
		}
	}
	// checkAnthropicResult checks the second request: the tool call and
	// its result in Messages form.
	checkAnthropicResult := func(t *testing.T, got recorded, id string) {
		t.Helper()
		for path, want := range map[string]string{
			"messages.#":                       "3",
			"messages.1.role":                  "assistant",
			"messages.1.content.0.type":        "tool_use",
			"messages.1.content.0.id":          id,
			"messages.1.content.0.name":        "get_weather",
			"messages.2.role":                  "user",
			"messages.2.content.0.type":        "tool_result",
			"messages.2.content.0.tool_use_id": id,
			"messages.2.content.0.content":     toolResult,
		} {
			v := jsonPath(got.Body, path)
			if v != want {
				t.Errorf("upstream body %s = %q, want %q (body %s)", path, v, want, got.Body)
			}
		}
		if in := jsonPath(got.Body, "messages.1.content.0.input"); !sameJSON(in, wantToolArgs) {
			t.Errorf("tool_use input %s, want %s", in, wantToolArgs)
		}
	}

	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("openai client, anthropic provider, stream=%v", stream), func(t *testing.T) {
			p := chatParams("tap-claude", toolPrompt)
			p.Tools = []openai.ChatCompletionToolUnionParam{weatherToolOA()}
			if stream {
				p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			}
			// ask: the answer as id, name, arguments, content, finish,
			// usage, whatever the stream flag
			type answer struct {
				id, name, args, content, finish string
				calls                           int
				usage                           openai.CompletionUsage
				hr                              *http.Response
			}
			ask := func(p openai.ChatCompletionNewParams) answer {
				t.Helper()
				var a answer
				var msg openai.ChatCompletionMessage
				if stream {
					s := oaAccumulate(t, oc, p)
					if s.Err != nil {
						t.Fatalf("stream: %v", s.Err)
					}
					ch := s.choice(t)
					msg, a.finish, a.hr = ch.Message, ch.FinishReason, s.Resp
					if s.Usage == nil {
						t.Fatalf("no usage chunk")
					}
					a.usage = *s.Usage
				} else {
					resp, err := oc.Chat.Completions.New(ctxT(t), p, oaoption.WithResponseInto(&a.hr))
					if err != nil {
						t.Fatalf("chat completion: %v", err)
					}
					if len(resp.Choices) != 1 {
						t.Fatalf("%d choices", len(resp.Choices))
					}
					msg, a.finish, a.usage = resp.Choices[0].Message, resp.Choices[0].FinishReason, resp.Usage
				}
				a.content, a.calls = msg.Content, len(msg.ToolCalls)
				if a.calls > 0 {
					tc := msg.ToolCalls[0]
					if tc.Type != "function" {
						t.Errorf("tool call type %q", tc.Type)
					}
					a.id, a.name, a.args = tc.ID, tc.Function.Name, tc.Function.Arguments
				}
				return a
			}

			before := tapClaude.rec.count()
			first := ask(p)
			expectHeaders(t, first.hr, "tap-claude", "tapclaude", "claude", 1)
			if first.finish != "tool_calls" || first.calls != 1 || first.content != "" {
				t.Fatalf("finish %q, %d tool calls, content %q: want one tool call", first.finish, first.calls, first.content)
			}
			if !strings.HasPrefix(first.id, "toolu_") || first.name != "get_weather" {
				t.Errorf("tool call id %q name %q, want a toolu_ id (Anthropic's) and get_weather", first.id, first.name)
			}
			if !sameJSON(first.args, wantToolArgs) {
				t.Errorf("arguments %q, want %s", first.args, wantToolArgs)
			}
			if first.usage.CompletionTokens < 2 || first.usage.PromptTokens != promptTokens(toolPrompt) ||
				first.usage.TotalTokens != first.usage.PromptTokens+first.usage.CompletionTokens {
				t.Errorf("usage %s", first.usage.RawJSON())
			}
			if n := tapClaude.rec.count() - before; n != 1 {
				t.Fatalf("the anthropic provider got %d requests, want 1", n)
			}
			checkAnthropicRequest(t, tapClaude.rec.last(t), stream)

			// the tool's result goes back: assistant message with the
			// call, then a tool message
			asst := openai.ChatCompletionAssistantMessageParam{
				ToolCalls: []openai.ChatCompletionMessageToolCallUnionParam{{
					OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
						ID:       first.id,
						Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: first.name, Arguments: first.args},
					},
				}},
			}
			p.Messages = append(p.Messages, openai.ChatCompletionMessageParamUnion{OfAssistant: &asst}, openai.ToolMessage(toolResult, first.id))
			second := ask(p)
			expectHeaders(t, second.hr, "tap-claude", "tapclaude", "claude", 1)
			if second.content != claudeText || second.finish != "stop" || second.calls != 0 {
				t.Errorf("after the tool result: content %q finish %q, %d tool calls; want %q, stop", second.content, second.finish, second.calls, claudeText)
			}
			if second.usage.CompletionTokens != int64(len(strings.Fields(claudeText))) {
				t.Errorf("usage after the tool result %s", second.usage.RawJSON())
			}
			checkAnthropicResult(t, tapClaude.rec.last(t), first.id)
		})
	}

	// The same round trip streamed and not gives the same answer.
	t.Run("openai client, stream equals non-stream", func(t *testing.T) {
		p := chatParams("tap-claude", toolPrompt)
		p.Tools = []openai.ChatCompletionToolUnionParam{weatherToolOA()}
		resp, err := oc.Chat.Completions.New(ctxT(t), p)
		if err != nil {
			t.Fatal(err)
		}
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := oaAccumulate(t, oc, p)
		if s.Err != nil || s.Usage == nil {
			t.Fatalf("stream: %v (usage %v)", s.Err, s.Usage)
		}
		a, b := resp.Choices[0], s.choice(t)
		if len(a.Message.ToolCalls) != 1 || len(b.Message.ToolCalls) != 1 {
			t.Fatalf("tool calls: %d non-stream, %d stream", len(a.Message.ToolCalls), len(b.Message.ToolCalls))
		}
		ta, tb := a.Message.ToolCalls[0], b.Message.ToolCalls[0]
		if a.FinishReason != b.FinishReason || ta.Function.Name != tb.Function.Name || !sameJSON(ta.Function.Arguments, tb.Function.Arguments) ||
			ta.Type != tb.Type || !strings.HasPrefix(tb.ID, "toolu_") {
			t.Errorf("non-stream %+v (%s), stream %+v (%s)", ta, a.FinishReason, tb, b.FinishReason)
		}
		if resp.Usage.PromptTokens != s.Usage.PromptTokens || resp.Usage.CompletionTokens != s.Usage.CompletionTokens {
			t.Errorf("usage non-stream %s, stream %s", resp.Usage.RawJSON(), s.Usage.RawJSON())
		}
	})

	// checkOpenAIRequest checks what the OpenAI-format mock got for the
	// first request of a round trip.
	checkOpenAIRequest := func(t *testing.T, got recorded, stream bool) {
		t.Helper()
		if got.Path != "/v1/chat/completions" {
			t.Errorf("the openai provider got %s %s, want /v1/chat/completions", got.Method, got.Path)
		}
		for path, want := range map[string]string{
			"model":                 "tapped-alpha",
			"tools.0.type":          "function",
			"tools.0.function.name": "get_weather",
			"tools.0.input_schema":  "",
			"messages.0.role":       "user",
			"messages.0.content":    toolPrompt,
			// the provider's max_tokens_field
			"max_completion_tokens": "256",
			"max_tokens":            "",
		} {
			if v := jsonPath(got.Body, path); v != want {
				t.Errorf("upstream body %s = %q, want %q (body %s)", path, v, want, got.Body)
			}
		}
		params := jsonPath(got.Body, "tools.0.function.parameters")
		if !sameJSON(params, `{"type":"object","properties":`+mustJSON(weatherProps)+`,"required":`+mustJSON(weatherRequired)+`}`) {
			t.Errorf("upstream tools.0.function.parameters %s", params)
		}
		if stream {
			if jsonPath(got.Body, "stream") != "true" || jsonPath(got.Body, "stream_options.include_usage") != "true" {
				t.Errorf("a streamed chat request must ask for usage: %s", got.Body)
			}
		} else if jsonPath(got.Body, "stream") != "" {
			t.Errorf("non-stream request sent with stream %q", jsonPath(got.Body, "stream"))
		}
	}
	checkOpenAIResult := func(t *testing.T, got recorded, id string) {
		t.Helper()
		for path, want := range map[string]string{
			"messages.#":                            "3",
			"messages.1.role":                       "assistant",
			"messages.1.tool_calls.#":               "1",
			"messages.1.tool_calls.0.id":            id,
			"messages.1.tool_calls.0.type":          "function",
			"messages.1.tool_calls.0.function.name": "get_weather",
			"messages.2.role":                       "tool",
			"messages.2.tool_call_id":               id,
			"messages.2.content":                    toolResult,
		} {
			if v := jsonPath(got.Body, path); v != want {
				t.Errorf("upstream body %s = %q, want %q (body %s)", path, v, want, got.Body)
			}
		}
		if args := jsonPath(got.Body, "messages.1.tool_calls.0.function.arguments"); !sameJSON(args, wantToolArgs) {
			t.Errorf("tool call arguments %q, want %s", args, wantToolArgs)
		}
	}

	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("anthropic client, openai provider, stream=%v", stream), func(t *testing.T) {
			p := messageParams("tap-alpha", toolPrompt)
			p.Tools = []anthropic.ToolUnionParam{weatherToolAnt()}
			ask := func(p anthropic.MessageNewParams) (anthropic.Message, anthropic.MessageDeltaUsage, *http.Response) {
				t.Helper()
				if stream {
					s := antAccumulate(t, ac, p)
					if s.Err != nil {
						t.Fatalf("stream: %v", s.Err)
					}
					return s.Msg, s.DeltaUsage, s.Resp
				}
				var hr *http.Response
				msg, err := ac.Messages.New(ctxT(t), p, antoption.WithResponseInto(&hr))
				if err != nil {
					t.Fatalf("messages: %v", err)
				}
				u := anthropic.MessageDeltaUsage{InputTokens: msg.Usage.InputTokens, OutputTokens: msg.Usage.OutputTokens}
				return *msg, u, hr
			}

			before := tapAlpha.rec.count()
			msg, usage, hr := ask(p)
			expectHeaders(t, hr, "tap-alpha", "tapalpha", "alpha", 1)
			if msg.StopReason != anthropic.StopReasonToolUse || len(msg.Content) != 1 || msg.Content[0].Type != "tool_use" {
				t.Fatalf("stop %q content %+v: want one tool_use block", msg.StopReason, msg.Content)
			}
			block := msg.Content[0]
			if !strings.HasPrefix(block.ID, "call_") || block.Name != "get_weather" {
				t.Errorf("tool_use id %q name %q, want a call_ id (OpenAI's) and get_weather", block.ID, block.Name)
			}
			if !sameJSON(string(block.Input), wantToolArgs) {
				t.Errorf("input %s, want %s", block.Input, wantToolArgs)
			}
			if usage.InputTokens != promptTokens(toolPrompt) || usage.OutputTokens < 2 {
				t.Errorf("usage %+v", usage)
			}
			if n := tapAlpha.rec.count() - before; n != 1 {
				t.Fatalf("the openai provider got %d requests, want 1", n)
			}
			checkOpenAIRequest(t, tapAlpha.rec.last(t), stream)

			p.Messages = append(p.Messages,
				anthropic.NewAssistantMessage(anthropic.NewToolUseBlock(block.ID, json.RawMessage(block.Input), block.Name)),
				anthropic.NewUserMessage(anthropic.NewToolResultBlock(block.ID, toolResult, false)))
			msg, usage, hr = ask(p)
			expectHeaders(t, hr, "tap-alpha", "tapalpha", "alpha", 1)
			if antText(msg) != alphaText || msg.StopReason != anthropic.StopReasonEndTurn || len(msg.Content) != 1 {
				t.Errorf("after the tool result: %+v stop %q; want %q, end_turn", msg.Content, msg.StopReason, alphaText)
			}
			if usage.OutputTokens != int64(len(strings.Fields(alphaText))) {
				t.Errorf("usage after the tool result %+v", usage)
			}
			checkOpenAIResult(t, tapAlpha.rec.last(t), block.ID)
		})
	}

	t.Run("anthropic client, stream equals non-stream", func(t *testing.T) {
		p := messageParams("tap-alpha", toolPrompt)
		p.Tools = []anthropic.ToolUnionParam{weatherToolAnt()}
		msg, err := ac.Messages.New(ctxT(t), p)
		if err != nil {
			t.Fatal(err)
		}
		s := antAccumulate(t, ac, p)
		if s.Err != nil {
			t.Fatal(s.Err)
		}
		if len(msg.Content) != 1 || len(s.Msg.Content) != 1 {
			t.Fatalf("blocks: %d non-stream, %d stream", len(msg.Content), len(s.Msg.Content))
		}
		a, b := msg.Content[0], s.Msg.Content[0]
		if a.Type != b.Type || a.Name != b.Name || !sameJSON(string(a.Input), string(b.Input)) || msg.StopReason != s.Msg.StopReason ||
			!strings.HasPrefix(b.ID, "call_") {
			t.Errorf("non-stream %s (%s), stream %s (%s)", a.RawJSON(), msg.StopReason, b.RawJSON(), s.Msg.StopReason)
		}
		if msg.Usage.InputTokens != s.DeltaUsage.InputTokens || msg.Usage.OutputTokens != s.DeltaUsage.OutputTokens {
			t.Errorf("usage non-stream %s, stream %s", msg.Usage.RawJSON(), s.DeltaUsage.RawJSON())
		}
	})
}

// mustJSON encodes v.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestTranslateJSONSchema: response_format json_schema from an OpenAI
// client to an Anthropic provider comes back as JSON text content.
func TestTranslateJSONSchema(t *testing.T) {
	tapClaude, _ := startTranslate(t)
	oc := oaClient(t)
	schema := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"answer":     map[string]any{"type": "string"},
			"confidence": map[string]any{"type": "number"},
			"tags":       map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
		},
		"required": []string{"answer", "confidence", "tags"},
	}
	const want = `{"answer":"mock","confidence":1,"tags":[]}`
	p := chatParams("tap-claude", "Answer in JSON, please.")
	p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{
		OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
			JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "verdict", Schema: schema},
		},
	}

	var hr *http.Response
	resp, err := oc.Chat.Completions.New(ctxT(t), p, oaoption.WithResponseInto(&hr))
	if err != nil {
		t.Fatalf("json_schema to an anthropic model: %v", err)
	}
	expectHeaders(t, hr, "tap-claude", "tapclaude", "claude", 1)
	ch := resp.Choices[0]
	if !sameJSON(ch.Message.Content, want) || ch.FinishReason != "stop" || len(ch.Message.ToolCalls) != 0 {
		t.Errorf("content %q finish %q tool calls %d; want the JSON %s as text, stop, no tool calls",
			ch.Message.Content, ch.FinishReason, len(ch.Message.ToolCalls), want)
	}
	got := tapClaude.rec.last(t)
	if got.Path != "/v1/messages" || jsonPath(got.Body, "response_format") != "" {
		t.Errorf("upstream request %s: %s", got.Path, got.Body)
	}
	if tc := jsonPath(got.Body, "tool_choice"); !sameJSON(tc, `{"type":"tool","name":"`+jsonPath(got.Body, "tools.0.name")+`"}`) ||
		jsonPath(got.Body, "tools.#") != "1" || !sameJSON(jsonPath(got.Body, "tools.0.input_schema"), mustJSON(schema)) {
		t.Errorf("the schema should become one forced tool: %s", got.Body)
	}

	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	s := oaAccumulate(t, oc, p)
	if s.Err != nil {
		t.Fatalf("stream: %v", s.Err)
	}
	sc := s.choice(t)
	if !sameJSON(sc.Message.Content, want) || sc.FinishReason != "stop" || len(sc.Message.ToolCalls) != 0 {
		t.Errorf("stream content %q finish %q tool calls %d", sc.Message.Content, sc.FinishReason, len(sc.Message.ToolCalls))
	}
	if s.Usage == nil || s.Usage.CompletionTokens != resp.Usage.CompletionTokens || s.Usage.PromptTokens != resp.Usage.PromptTokens {
		t.Errorf("stream usage %v, non-stream %s", s.Usage, resp.Usage.RawJSON())
	}
}

// TestTranslateFallback: a route mixing formats falls back from a failing
// first target to the second, whose answer reaches the client in the
// client's format.
func TestTranslateFallback(t *testing.T) {
	startTranslate(t)
	oc, ac := oaClient(t), antClient(t)
	type target struct{ model, provider, upstream, text, idPrefix string }
	claude := target{"solo-claude", "claude", "up-claude", claudeText, "msg_"}
	alpha := target{"solo-alpha", "alpha", "up-alpha", alphaText, "chatcmpl-"}
	routes := []struct {
		name          string
		first, second target
	}{
		{"ant-first", claude, alpha},
		{"oa-first", alpha, claude},
	}
	faults := []struct {
		name, spec string
		streamToo  bool
		translated bool // only when the first target's answer is translated (held whole)
	}{
		{"status_500", "status,code=500", true, false},
		{"status_429", "status,code=429", true, false},
		{"reset", "reset", true, false},
		{"no_answer", "no_answer", true, false},
		// a half body: a translated answer is held until complete, so it
		// can still fall back
		{"malformed_body", "malformed", false, true},
		{"cut_body", "cut", false, true},
	}
	for _, rt := range routes {
		for _, f := range faults {
			fault := rt.first.provider + ":" + f.spec
			for _, client := range []string{"openai", "anthropic"} {
				firstTranslated := (client == "openai") == (rt.first.provider == "claude")
				if f.translated && !firstTranslated {
					continue
				}
				for _, stream := range []bool{false, true} {
					if stream && !f.streamToo {
						continue
					}
					t.Run(fmt.Sprintf("%s/%s/%s/stream=%v", rt.name, f.name, client, stream), func(t *testing.T) {
						restart(t)
						var hr *http.Response
						var text, model, id, finish string
						switch {
						case client == "openai" && !stream:
							resp, err := oc.Chat.Completions.New(ctxT(t), chatParams(rt.name, prompt), faultHeader(fault), oaoption.WithResponseInto(&hr))
							if err != nil {
								t.Fatalf("request failed instead of falling back: %v", err)
							}
							if resp.Object != "chat.completion" || len(resp.Choices) != 1 {
								t.Fatalf("not a chat completion: %s", resp.RawJSON())
							}
							text, model, id, finish = resp.Choices[0].Message.Content, resp.Model, resp.ID, resp.Choices[0].FinishReason
						case client == "openai":
							s := oaAccumulate(t, oc, chatParams(rt.name, prompt), faultHeader(fault))
							if s.Err != nil {
								t.Fatalf("stream failed instead of falling back: %v", s.Err)
							}
							ch := s.choice(t)
							hr, text, model, id, finish = s.Resp, ch.Message.Content, s.Acc.Model, s.Acc.ID, ch.FinishReason
						case !stream:
							msg, err := ac.Messages.New(ctxT(t), messageParams(rt.name, prompt), antFaultHeader(fault), antoption.WithResponseInto(&hr))
							if err != nil {
								t.Fatalf("request failed instead of falling back: %v", err)
							}
							if msg.Type != "message" {
								t.Fatalf("not a message: %s", msg.RawJSON())
							}
							text, model, id, finish = antText(*msg), string(msg.Model), msg.ID, string(msg.StopReason)
						default:
							s := antAccumulate(t, ac, messageParams(rt.name, prompt), antFaultHeader(fault))
							if s.Err != nil {
								t.Fatalf("stream failed instead of falling back: %v", s.Err)
							}
							hr, text, model, id, finish = s.Resp, antText(s.Msg), string(s.Msg.Model), s.Msg.ID, string(s.Msg.StopReason)
						}
						expectRoute(t, hr, rt.second.model, rt.second.provider, rt.name, 2)
						if text != rt.second.text {
							t.Errorf("text %q, want %q from %s", text, rt.second.text, rt.second.provider)
						}
						if model != rt.second.upstream {
							t.Errorf("the answer names model %q, want %q (the one that answered)", model, rt.second.upstream)
						}
						if !strings.HasPrefix(id, rt.second.idPrefix) {
							t.Errorf("id %q, want the %s prefix of %s's own format", id, rt.second.idPrefix, rt.second.provider)
						}
						wantFinish := "stop"
						if client == "anthropic" {
							wantFinish = "end_turn"
						}
						if finish != wantFinish {
							t.Errorf("finish %q, want %q", finish, wantFinish)
						}
					})
				}
			}
		}
	}
}

// TestTranslateErrors: a provider's error reaches the client in the
// client's error shape, with its status and Retry-After.
func TestTranslateErrors(t *testing.T) {
	startTranslate(t)
	oc, ac := oaClient(t), antClient(t)
	hc := newHTTPClient(t)
	cases := []struct {
		status     int
		spec, typ  string
		retryAfter string
	}{
		{400, "status,code=400", "invalid_request_error", ""},
		{429, "status,code=429,retry_after=7", "rate_limit_error", "7"},
		{503, "status,code=503", "api_error", ""},
	}
	for _, tc := range cases {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("openai client, anthropic provider, %d, stream=%v", tc.status, stream), func(t *testing.T) {
				restart(t)
				var err error
				if stream {
					s := oaAccumulate(t, oc, chatParams("solo-claude", prompt), faultHeader("claude:"+tc.spec))
					if s.Chunks > 0 {
						t.Errorf("%d chunks before the error", s.Chunks)
					}
					err = s.Err
				} else {
					_, err = oc.Chat.Completions.New(ctxT(t), chatParams("solo-claude", prompt), faultHeader("claude:"+tc.spec))
				}
				var oerr *openai.Error
				if !asError(err, &oerr) {
					t.Fatalf("got %v, want an *openai.Error", err)
				}
				if oerr.StatusCode != tc.status || oerr.Type != tc.typ || !strings.Contains(oerr.Message, fmt.Sprintf("injected %d fault", tc.status)) {
					t.Errorf("status %d type %q message %q; want %d %s and the provider's message", oerr.StatusCode, oerr.Type, oerr.Message, tc.status, tc.typ)
				}
				if !stream {
					// the body on the wire: OpenAI's shape, no Anthropic envelope
					res := post(t, hc, "/v1/chat/completions", chatBody("solo-claude"), "X-Mock-Fault", "claude:"+tc.spec)
					if res.Status != tc.status || res.json("type") != "" || res.json("error.type") != tc.typ ||
						!strings.Contains(res.json("error.message"), fmt.Sprintf("injected %d fault", tc.status)) {
						t.Errorf("status %d body %s: want OpenAI's error shape", res.Status, res.Body)
					}
				}
				if got := oerr.Response.Header.Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
				}
				if got := routeOf(oerr.Response.Header); got.Provider != "claude" || got.Attempts != 1 || got.Model != "solo-claude" {
					t.Errorf("routing headers %s", got)
				}
			})
			t.Run(fmt.Sprintf("anthropic client, openai provider, %d, stream=%v", tc.status, stream), func(t *testing.T) {
				restart(t)
				var err error
				if stream {
					s := antAccumulate(t, ac, messageParams("solo-alpha", prompt), antFaultHeader("alpha:"+tc.spec))
					if len(s.Types) > 0 {
						t.Errorf("events %v before the error", s.Types)
					}
					err = s.Err
				} else {
					_, err = ac.Messages.New(ctxT(t), messageParams("solo-alpha", prompt), antFaultHeader("alpha:"+tc.spec))
				}
				var aerr *anthropic.Error
				if !asError(err, &aerr) {
					t.Fatalf("got %v, want an *anthropic.Error", err)
				}
				var body struct {
					Type  string `json:"type"`
					Error struct {
						Type    string `json:"type"`
						Message string `json:"message"`
					} `json:"error"`
				}
				if jerr := json.Unmarshal([]byte(aerr.RawJSON()), &body); jerr != nil {
					t.Fatalf("error body %q: %v", aerr.RawJSON(), jerr)
				}
				if aerr.StatusCode != tc.status || body.Type != "error" || body.Error.Type != tc.typ ||
					!strings.Contains(body.Error.Message, fmt.Sprintf("injected %d fault", tc.status)) {
					t.Errorf("status %d body %s; want %d, Anthropic's shape with type %s and the provider's message", aerr.StatusCode, aerr.RawJSON(), tc.status, tc.typ)
				}
				if got := aerr.Response.Header.Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
				}
				if got := routeOf(aerr.Response.Header); got.Provider != "alpha" || got.Attempts != 1 || got.Model != "solo-alpha" {
					t.Errorf("routing headers %s", got)
				}
			})
		}
	}
}

// TestTranslateRefusals: a request the other format cannot honour is
// refused before any provider is called, or served by a target that can
// take it.
func TestTranslateRefusals(t *testing.T) {
	tapClaude, _ := startTranslate(t)
	oc, ac := oaClient(t), antClient(t)
	hc := newHTTPClient(t)

	t.Run("n=2 to an anthropic model", func(t *testing.T) {
		for _, stream := range []bool{false, true} {
			p := chatParams("claude-chat", prompt)
			p.N = openai.Int(2)
			var err error
			if stream {
				s := oaAccumulate(t, oc, p)
				err = s.Err
			} else {
				_, err = oc.Chat.Completions.New(ctxT(t), p)
			}
			var oerr *openai.Error
			if !asError(err, &oerr) {
				t.Fatalf("stream=%v: got %v, want an *openai.Error", stream, err)
			}
			if oerr.StatusCode != http.StatusBadRequest || oerr.Type != "invalid_request_error" || oerr.Code != "unsupported_parameter" ||
				!regexp.MustCompile(`\bn\b`).MatchString(oerr.Message) {
				t.Errorf("stream=%v: status %d type %q code %q message %q; want 400 unsupported_parameter about n", stream, oerr.StatusCode, oerr.Type, oerr.Code, oerr.Message)
			}
			if strings.Contains(oerr.RawJSON(), `"type":"error"`) {
				t.Errorf("Anthropic-shaped error for an OpenAI client: %s", oerr.RawJSON())
			}
			if m := oerr.Response.Header.Values("X-Mock-Name"); len(m) != 0 {
				t.Errorf("stream=%v: the request reached %q", stream, m)
			}
			if got := routeOf(oerr.Response.Header).Attempts; got != 0 {
				t.Errorf("stream=%v: X-LLM-Attempts %d, want 0 (no provider called)", stream, got)
			}
		}
		// raw: the body is OpenAI's error shape
		res := post(t, hc, "/v1/chat/completions", chatBody("tap-claude", `"n":3`))
		expectOpenAIError(t, res, http.StatusBadRequest, "unsupported_parameter")
		if tapClaude.rec.count() != 0 {
			t.Errorf("the anthropic provider got %d requests", tapClaude.rec.count())
		}
		// n=1 is fine
		p := chatParams("claude-chat", prompt)
		p.N = openai.Int(1)
		if resp, err := oc.Chat.Completions.New(ctxT(t), p); err != nil || resp.Choices[0].Message.Content != claudeText {
			t.Errorf("n=1: %v", err)
		}
	})

	t.Run("n=2 with an openai-format fallback", func(t *testing.T) {
		p := chatParams("n-fallback", prompt)
		p.N = openai.Int(2)
		// a fault for the claude mocks would show if they were called
		var hr *http.Response
		resp, err := oc.Chat.Completions.New(ctxT(t), p, faultHeader("claude:status,code=500;claude2:status,code=500"), oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatalf("the openai-format target should serve it: %v", err)
		}
		// skipped, not failed: one attempt
		expectRoute(t, hr, "only-alpha", "alpha", "n-fallback", 1)
		if resp.Choices[0].Message.Content != alphaText {
			t.Errorf("content %q", resp.Choices[0].Message.Content)
		}
		s := oaAccumulate(t, oc, p, faultHeader("claude:status,code=500;claude2:status,code=500"))
		if s.Err != nil {
			t.Fatal(s.Err)
		}
		expectRoute(t, s.Resp, "only-alpha", "alpha", "n-fallback", 1)
	})

	t.Run("server tool to an openai model", func(t *testing.T) {
		p := messageParams("only-alpha", prompt)
		p.Tools = []anthropic.ToolUnionParam{{OfWebSearchTool20250305: &anthropic.WebSearchTool20250305Param{}}}
		for _, stream := range []bool{false, true} {
			var err error
			if stream {
				err = antAccumulate(t, ac, p).Err
			} else {
				_, err = ac.Messages.New(ctxT(t), p)
			}
			var aerr *anthropic.Error
			if !asError(err, &aerr) {
				t.Fatalf("stream=%v: got %v, want an *anthropic.Error", stream, err)
			}
			var body struct {
				Type  string `json:"type"`
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
			}
			_ = json.Unmarshal([]byte(aerr.RawJSON()), &body)
			if aerr.StatusCode != http.StatusBadRequest || body.Type != "error" || body.Error.Type != "invalid_request_error" ||
				!strings.Contains(body.Error.Message, "web_search") {
				t.Errorf("stream=%v: status %d body %s; want a 400 Anthropic error about the server tool", stream, aerr.StatusCode, aerr.RawJSON())
			}
			if m := aerr.Response.Header.Values("X-Mock-Name"); len(m) != 0 {
				t.Errorf("stream=%v: the request reached %q", stream, m)
			}
		}
		// raw
		res := post(t, hc, "/v1/messages", []byte(`{"model":"only-alpha","max_tokens":50,"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"web_search_20250305","name":"web_search"}]}`),
			"anthropic-version", "2023-06-01")
		expectAnthropicError(t, res, http.StatusBadRequest, "invalid_request_error")
		if m := res.Header.Get("X-Mock-Name"); m != "" {
			t.Errorf("the request reached %s", m)
		}
	})
}

// TestTranslateBrokenStream: a translated stream that breaks, with no
// other candidate to continue it, ends with an explicit error event in
// the client's format, never with the format's terminator.
func TestTranslateBrokenStream(t *testing.T) {
	startTranslate(t)
	hc := newHTTPClient(t)
	oc, ac := oaClient(t), antClient(t)

	raw := func(t *testing.T, path string, body []byte, fault string) (string, error) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPost, gatewayURL+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("anthropic-version", "2023-06-01")
		req.Header.Set("X-Mock-Fault", fault)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, readErr := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		return string(b), readErr
	}

	t.Run("openai client, anthropic provider", func(t *testing.T) {
		restart(t)
		body, readErr := raw(t, "/v1/chat/completions", chatBody("solo-claude", `"stream":true`), "claude:cut,after=2")
		if readErr == nil {
			t.Errorf("the response ended like a complete one; a broken stream should be aborted")
		}
		events := sseEvents(body)
		if len(events) < 2 {
			t.Fatalf("events: %q", body)
		}
		var text strings.Builder
		for i, ev := range events {
			if len(ev) != 1 || !strings.HasPrefix(ev[0], "data: ") {
				t.Errorf("event %d is not one data line: %q", i, ev)
				continue
			}
			d := strings.TrimPrefix(ev[0], "data: ")
			if d == "[DONE]" {
				t.Errorf("event %d is [DONE] in a broken stream", i)
				continue
			}
			if !json.Valid([]byte(d)) {
				t.Errorf("event %d: invalid JSON %q", i, d)
			}
			text.WriteString(jsonPath([]byte(d), "choices.0.delta.content"))
			if f := jsonPath([]byte(d), "choices.0.finish_reason"); f != "" {
				t.Errorf("event %d has finish_reason %q in a broken stream", i, f)
			}
		}
		last := strings.TrimPrefix(events[len(events)-1][0], "data: ")
		if jsonPath([]byte(last), "error.code") != "stream_interrupted" || jsonPath([]byte(last), "error.message") == "" ||
			jsonPath([]byte(last), "type") != "" {
			t.Errorf("last event %q, want an OpenAI error object with code stream_interrupted", last)
		}
		if got := text.String(); !strings.HasPrefix(claudeText, got) || len(strings.Fields(got)) != 2 {
			t.Errorf("received %q, want the first 2 words of %q", got, claudeText)
		}

		p := chatParams("solo-claude", prompt)
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := oaAccumulate(t, oc, p, faultHeader("claude:cut,after=2"))
		if s.Err == nil || !strings.Contains(s.Err.Error(), "stream_interrupted") {
			t.Errorf("SDK error %v, want the gateway's stream_interrupted error", s.Err)
		}
		expectRoute(t, s.Resp, "solo-claude", "claude", "solo-claude", 1)
		if s.Usage != nil {
			t.Errorf("a usage chunk in a broken stream: %+v", *s.Usage)
		}
		if len(s.Acc.Choices) == 1 && s.Acc.Choices[0].FinishReason != "" {
			t.Errorf("finish reason %q in a broken stream", s.Acc.Choices[0].FinishReason)
		}
	})

	t.Run("anthropic client, openai provider", func(t *testing.T) {
		restart(t)
		body, readErr := raw(t, "/v1/messages",
			[]byte(`{"model":"only-alpha","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}`), "alpha:cut,after=2")
		if readErr == nil {
			t.Errorf("the response ended like a complete one; a broken stream should be aborted")
		}
		events := sseEvents(body)
		if len(events) < 2 {
			t.Fatalf("events: %q", body)
		}
		var text strings.Builder
		for i, ev := range events {
			if len(ev) != 2 || !strings.HasPrefix(ev[0], "event: ") || !strings.HasPrefix(ev[1], "data: ") {
				t.Errorf("event %d is not an event and a data line: %q", i, ev)
				continue
			}
			name, d := strings.TrimPrefix(ev[0], "event: "), strings.TrimPrefix(ev[1], "data: ")
			if !json.Valid([]byte(d)) {
				t.Errorf("event %d: invalid JSON %q", i, d)
			}
			if name == "message_stop" || name == "message_delta" {
				t.Errorf("event %d is %s in a broken stream", i, name)
			}
			if name == "content_block_delta" {
				text.WriteString(jsonPath([]byte(d), "delta.text"))
			}
		}
		last := events[len(events)-1]
		if last[0] != "event: error" || !strings.Contains(last[len(last)-1], `"stream_interrupted"`) ||
			jsonPath([]byte(strings.TrimPrefix(last[len(last)-1], "data: ")), "type") != "error" {
			t.Errorf("last event %q, want an Anthropic error event", last)
		}
		if got := text.String(); !strings.HasPrefix(alphaText, got) || len(strings.Fields(got)) != 2 {
			t.Errorf("received %q, want the first 2 words of %q", got, alphaText)
		}

		s := antAccumulate(t, ac, messageParams("only-alpha", prompt), antFaultHeader("alpha:cut,after=2"))
		if s.Err == nil || !strings.Contains(s.Err.Error(), "stream_interrupted") {
			t.Errorf("SDK error %v, want the gateway's stream_interrupted error event", s.Err)
		}
		expectRoute(t, s.Resp, "only-alpha", "alpha", "only-alpha", 1)
		for _, typ := range s.Types {
			if typ == "message_stop" || typ == "message_delta" {
				t.Errorf("the SDK saw %s in a broken stream (events %v)", typ, s.Types)
			}
		}
	})
}

// TestCountTokens: the Anthropic SDK's count_tokens is served for a model
// at an anthropic provider by the provider, and for a model at an
// OpenAI-format provider (which has no such endpoint) by the gateway's
// estimate, so clients that count before every turn work on any route.
func TestCountTokens(t *testing.T) {
	start(t, withDefaults(""))
	c := antClient(t)
	prompt := strings.Repeat("How many tokens does this sentence take? ", 40)
	params := func(model string) anthropic.MessageCountTokensParams {
		return anthropic.MessageCountTokensParams{
			Model:    anthropic.Model(model),
			System:   anthropic.MessageCountTokensParamsSystemUnion{OfString: anthropic.String("Be brief.")},
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))},
		}
	}

	var hr *http.Response
	native, err := c.Messages.CountTokens(ctxT(t), params("claude-chat"), antoption.WithResponseInto(&hr))
	if err != nil {
		t.Fatalf("count_tokens at the anthropic provider: %v", err)
	}
	// The mock counts one token per 4 bytes of text.
	if want := promptTokens("Be brief.", prompt); native.InputTokens != want || hr.Header.Get("X-Mock-Name") != "claude" {
		t.Errorf("native count %d from %q, want %d from the claude mock", native.InputTokens, hr.Header.Get("X-Mock-Name"), want)
	}

	hr = nil
	est, err := c.Messages.CountTokens(ctxT(t), params("only-alpha"), antoption.WithResponseInto(&hr))
	if err != nil {
		t.Fatalf("count_tokens for an openai-format model: %v", err)
	}
	if hr.Header.Get("X-Mock-Name") != "" || hr.Header.Get("X-LLM-Provider") != "alpha" {
		t.Errorf("estimate headers: mock %q provider %q; want no mock and provider alpha", hr.Header.Get("X-Mock-Name"), hr.Header.Get("X-LLM-Provider"))
	}
	// 40 repetitions of a 9-token sentence: about 360 tokens.
	if est.InputTokens < 300 || est.InputTokens > 450 {
		t.Errorf("estimated count %d, want about 360", est.InputTokens)
	}
}
