package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go"
	antoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

// Every API the gateway routes, streamed and not, with the real SDKs:
// the answer, the routing headers, the usage and stream assembly.

const prompt = "Hello gateway, please answer briefly."

func TestChatCompletions(t *testing.T) {
	start(t, withDefaults(""))
	c := oaClient(t)
	ctx := ctxT(t)

	var hr *http.Response
	resp, err := c.Chat.Completions.New(ctx, chatParams("chat", prompt), oaoption.WithResponseInto(&hr))
	if err != nil {
		t.Fatalf("chat completion: %v", err)
	}
	expectRoute(t, hr, "chat", "alpha", "chat", 1)
	if len(resp.Choices) != 1 || resp.Choices[0].Message.Content != alphaText {
		t.Fatalf("content: got %+v, want %q", resp.Choices, alphaText)
	}
	if resp.Choices[0].FinishReason != "stop" {
		t.Errorf("finish reason %q, want stop", resp.Choices[0].FinishReason)
	}
	// the mock echoes the model it was asked for: the registry's upstream name
	if resp.Model != "mock-chat" {
		t.Errorf("upstream saw model %q, want the upstream name mock-chat", resp.Model)
	}
	wantPrompt, wantCompletion := promptTokens(prompt), int64(len(strings.Fields(alphaText)))
	if resp.Usage.PromptTokens != wantPrompt || resp.Usage.CompletionTokens != wantCompletion ||
		resp.Usage.TotalTokens != wantPrompt+wantCompletion {
		t.Errorf("usage %+v, want prompt %d completion %d", resp.Usage, wantPrompt, wantCompletion)
	}

	p := chatParams("chat", prompt)
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	s := chatStream(t, c, p)
	if s.Err != nil {
		t.Fatalf("stream: %v", s.Err)
	}
	expectRoute(t, s.Resp, "chat", "alpha", "chat", 1)
	if ct := s.Resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("stream Content-Type %q", ct)
	}
	if s.Text != resp.Choices[0].Message.Content {
		t.Errorf("streamed text %q differs from the non-streamed %q", s.Text, resp.Choices[0].Message.Content)
	}
	if s.Events < len(strings.Fields(alphaText)) {
		t.Errorf("only %d events: the answer was not streamed chunk by chunk", s.Events)
	}
	if s.Finish != "stop" {
		t.Errorf("stream finish reason %q", s.Finish)
	}
	if s.Usage != [2]int64{resp.Usage.PromptTokens, resp.Usage.CompletionTokens} {
		t.Errorf("stream usage %v, non-stream usage %d/%d", s.Usage, resp.Usage.PromptTokens, resp.Usage.CompletionTokens)
	}

	// The accumulator of the SDK agrees.
	stream := c.Chat.Completions.NewStreaming(ctx, p)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	stream.Close()
	if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != alphaText || acc.Usage.TotalTokens != resp.Usage.TotalTokens {
		t.Errorf("accumulated %+v / usage %+v", acc.Choices, acc.Usage)
	}
}

func TestCompletions(t *testing.T) {
	start(t, withDefaults(""))
	c := oaClient(t)
	ctx := ctxT(t)
	params := openai.CompletionNewParams{
		Model:  openai.CompletionNewParamsModel("only-beta"),
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
	}

	var hr *http.Response
	resp, err := c.Completions.New(ctx, params, oaoption.WithResponseInto(&hr))
	if err != nil {
		t.Fatalf("completion: %v", err)
	}
	expectRoute(t, hr, "only-beta", "beta", "only-beta", 1)
	if len(resp.Choices) != 1 || resp.Choices[0].Text != betaText {
		t.Fatalf("text: got %+v, want %q", resp.Choices, betaText)
	}
	if resp.Model != "only-beta" {
		t.Errorf("model %q", resp.Model)
	}
	wantPrompt, wantCompletion := promptTokens(prompt), int64(len(strings.Fields(betaText)))
	if resp.Usage.PromptTokens != wantPrompt || resp.Usage.CompletionTokens != wantCompletion {
		t.Errorf("usage %+v, want %d/%d", resp.Usage, wantPrompt, wantCompletion)
	}

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	var shr *http.Response
	stream := c.Completions.NewStreaming(ctx, params, oaoption.WithResponseInto(&shr))
	var text strings.Builder
	var usage openai.CompletionUsage
	events := 0
	for stream.Next() {
		ch := stream.Current()
		events++
		for _, choice := range ch.Choices {
			text.WriteString(choice.Text)
		}
		if ch.Usage.TotalTokens > 0 {
			usage = ch.Usage
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	stream.Close()
	expectRoute(t, shr, "only-beta", "beta", "only-beta", 1)
	if text.String() != resp.Choices[0].Text {
		t.Errorf("streamed %q, non-streamed %q", text.String(), resp.Choices[0].Text)
	}
	if events < len(strings.Fields(betaText)) {
		t.Errorf("only %d events", events)
	}
	if usage.PromptTokens != resp.Usage.PromptTokens || usage.CompletionTokens != resp.Usage.CompletionTokens {
		t.Errorf("stream usage %+v, non-stream %+v", usage, resp.Usage)
	}
}

func TestEmbeddings(t *testing.T) {
	start(t, withDefaults(""))
	c := oaClient(t)
	var hr *http.Response
	inputs := []string{"first text to embed", "second"}
	resp, err := c.Embeddings.New(ctxT(t), openai.EmbeddingNewParams{
		Model: "chat",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
	}, oaoption.WithResponseInto(&hr))
	if err != nil {
		t.Fatalf("embeddings: %v", err)
	}
	expectRoute(t, hr, "chat", "alpha", "chat", 1)
	if len(resp.Data) != 2 {
		t.Fatalf("%d embeddings, want 2", len(resp.Data))
	}
	for i, d := range resp.Data {
		if d.Index != int64(i) || len(d.Embedding) != 8 {
			t.Errorf("embedding %d: index %d, %d dimensions", i, d.Index, len(d.Embedding))
		}
	}
	if resp.Model != "mock-chat" {
		t.Errorf("model %q, want the upstream name", resp.Model)
	}
	if want := promptTokens(inputs...); resp.Usage.PromptTokens != want || resp.Usage.TotalTokens != want {
		t.Errorf("usage %+v, want %d", resp.Usage, want)
	}

	// The same input embeds the same way through the same route.
	again, err := c.Embeddings.New(ctxT(t), openai.EmbeddingNewParams{
		Model: "chat",
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String(inputs[0])},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range again.Data[0].Embedding {
		if again.Data[0].Embedding[i] != resp.Data[0].Embedding[i] {
			t.Fatalf("embedding of %q differs between calls", inputs[0])
		}
	}
}

func TestResponses(t *testing.T) {
	start(t, withDefaults(""))
	c := oaClient(t)
	ctx := ctxT(t)
	params := responses.ResponseNewParams{
		Model: "chat",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(prompt)},
	}

	var hr *http.Response
	resp, err := c.Responses.New(ctx, params, oaoption.WithResponseInto(&hr))
	if err != nil {
		t.Fatalf("responses: %v", err)
	}
	expectRoute(t, hr, "chat", "alpha", "chat", 1)
	if resp.OutputText() != alphaText {
		t.Errorf("output %q, want %q", resp.OutputText(), alphaText)
	}
	if resp.Status != "completed" || resp.Model != "mock-chat" {
		t.Errorf("status %q model %q", resp.Status, resp.Model)
	}
	wantIn, wantOut := promptTokens(prompt), int64(len(strings.Fields(alphaText)))
	if resp.Usage.InputTokens != wantIn || resp.Usage.OutputTokens != wantOut || resp.Usage.TotalTokens != wantIn+wantOut {
		t.Errorf("usage %+v, want %d/%d", resp.Usage, wantIn, wantOut)
	}

	var shr *http.Response
	stream := c.Responses.NewStreaming(ctx, params, oaoption.WithResponseInto(&shr))
	var deltas strings.Builder
	var final responses.Response
	var types []string
	for stream.Next() {
		ev := stream.Current()
		types = append(types, ev.Type)
		switch ev.Type {
		case "response.output_text.delta":
			deltas.WriteString(ev.Delta)
		case "response.completed":
			final = ev.Response
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	stream.Close()
	expectRoute(t, shr, "chat", "alpha", "chat", 1)
	if deltas.String() != resp.OutputText() {
		t.Errorf("streamed %q, non-streamed %q", deltas.String(), resp.OutputText())
	}
	if len(types) == 0 || types[0] != "response.created" || types[len(types)-1] != "response.completed" {
		t.Errorf("event sequence %v", types)
	}
	if final.OutputText() != resp.OutputText() || final.Usage.InputTokens != wantIn || final.Usage.OutputTokens != wantOut {
		t.Errorf("final response %q usage %+v", final.OutputText(), final.Usage)
	}
}

func TestAnthropicMessages(t *testing.T) {
	start(t, withDefaults(""))
	c := antClient(t)

	var hr *http.Response
	msg, err := c.Messages.New(ctxT(t), messageParams("claude-chat", prompt), antoption.WithResponseInto(&hr))
	if err != nil {
		t.Fatalf("messages: %v", err)
	}
	expectRoute(t, hr, "claude-chat", "claude", "claude-chat", 1)
	if len(msg.Content) != 1 || msg.Content[0].Text != claudeText {
		t.Fatalf("content %+v, want %q", msg.Content, claudeText)
	}
	if msg.Model != "mock-claude" || msg.StopReason != anthropic.StopReasonEndTurn {
		t.Errorf("model %q stop reason %q", msg.Model, msg.StopReason)
	}
	wantIn, wantOut := promptTokens(prompt), int64(len(strings.Fields(claudeText)))
	if msg.Usage.InputTokens != wantIn || msg.Usage.OutputTokens != wantOut {
		t.Errorf("usage %+v, want %d/%d", msg.Usage, wantIn, wantOut)
	}

	s := messageStream(t, c, messageParams("claude-chat", prompt))
	if s.Err != nil {
		t.Fatalf("stream: %v", s.Err)
	}
	expectRoute(t, s.Resp, "claude-chat", "claude", "claude-chat", 1)
	if s.Text != msg.Content[0].Text {
		t.Errorf("streamed %q, non-streamed %q", s.Text, msg.Content[0].Text)
	}
	if s.Finish != string(anthropic.StopReasonEndTurn) {
		t.Errorf("stream stop reason %q", s.Finish)
	}
	if s.Usage != [2]int64{wantIn, wantOut} {
		t.Errorf("stream usage %v, want %d/%d", s.Usage, wantIn, wantOut)
	}

	// An OpenAI-format model serves the Messages API through translation,
	// and an Anthropic provider serves chat completions the same way: the
	// client gets an answer in its own format (see translate_test.go).
	hr = nil
	msg, err = c.Messages.New(ctxT(t), messageParams("only-alpha", prompt), antoption.WithResponseInto(&hr))
	if err != nil {
		t.Fatalf("messages to an openai model: %v", err)
	}
	expectRoute(t, hr, "only-alpha", "alpha", "only-alpha", 1)
	if msg.Type != "message" || len(msg.Content) != 1 || msg.Content[0].Type != "text" || msg.Content[0].Text != alphaText ||
		msg.StopReason != anthropic.StopReasonEndTurn || !strings.HasPrefix(msg.ID, "chatcmpl-") {
		t.Errorf("messages to an openai model: %s, want alpha's text as an Anthropic message", msg.RawJSON())
	}
	if msg.Usage.InputTokens != wantIn || msg.Usage.OutputTokens != int64(len(strings.Fields(alphaText))) {
		t.Errorf("messages to an openai model: usage %s", msg.Usage.RawJSON())
	}
	oc := oaClient(t)
	hr = nil
	resp, err := oc.Chat.Completions.New(ctxT(t), chatParams("claude-chat", prompt), oaoption.WithResponseInto(&hr))
	if err != nil {
		t.Fatalf("chat to an anthropic model: %v", err)
	}
	expectRoute(t, hr, "claude-chat", "claude", "claude-chat", 1)
	if resp.Object != "chat.completion" || len(resp.Choices) != 1 || resp.Choices[0].Message.Content != claudeText ||
		resp.Choices[0].FinishReason != "stop" || resp.Model != "mock-claude" || !strings.HasPrefix(resp.ID, "msg_") {
		t.Errorf("chat to an anthropic model: %s, want claude's text as a chat completion", resp.RawJSON())
	}
	if resp.Usage.PromptTokens != wantIn || resp.Usage.CompletionTokens != wantOut {
		t.Errorf("chat to an anthropic model: usage %s", resp.Usage.RawJSON())
	}
}
