package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	antoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

// accessEntry is the part of an access log entry the tests read.
type accessEntry struct {
	Request struct {
		Headers map[string][]string `json:"headers"`
	} `json:"request"`
	Status           int    `json:"status"`
	Route            string `json:"llm_route"`
	Model            string `json:"llm_model"`
	Provider         string `json:"llm_provider"`
	Attempts         int    `json:"llm_attempts"`
	Key              string `json:"llm_key"`
	PromptTokens     int64  `json:"llm_prompt_tokens"`
	CompletionTokens int64  `json:"llm_completion_tokens"`
}

// readAccessLog returns the entries by their X-Test-Id request header.
func readAccessLog(t *testing.T, path string) map[string]accessEntry {
	return readAccessLogBy(t, path, "X-Test-Id")
}

// readAccessLogBy returns the entries by the value of a request header.
func readAccessLogBy(t *testing.T, path, header string) map[string]accessEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]accessEntry{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e accessEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("access log line %q: %v", sc.Text(), err)
		}
		if id := e.Request.Headers[header]; len(id) == 1 {
			out[id[0]] = e
		}
	}
	return out
}

// The access log carries the routing decision and the token usage read
// from every kind of answer, streamed or not.
func TestAccessLogUsage(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	s := withDefaults("")
	s.Site = fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t\tformat json\n\t}", logFile)
	start(t, s)
	c := oaClient(t)
	ac := antClient(t)
	id := func(s string) oaoption.RequestOption { return oaoption.WithHeader("X-Test-Id", s) }
	aid := func(s string) antoption.RequestOption { return antoption.WithHeader("X-Test-Id", s) }
	alphaWords := int64(len(strings.Fields(alphaText)))
	claudeWords := int64(len(strings.Fields(claudeText)))
	pt := promptTokens(prompt)

	type want struct {
		provider           string
		attempts           int
		prompt, completion int64
	}
	wants := map[string]want{}

	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), id("chat")); err != nil {
		t.Fatal(err)
	}
	wants["chat"] = want{"alpha", 1, pt, alphaWords}

	p := chatParams("chat", prompt)
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	if s := chatStream(t, c, p, id("chat-stream")); s.Err != nil {
		t.Fatal(s.Err)
	}
	wants["chat-stream"] = want{"alpha", 1, pt, alphaWords}

	if s := chatStream(t, c, p, id("chat-stream-fallback"), faultHeader("alpha:status,code=503")); s.Err != nil {
		t.Fatal(s.Err)
	}
	wants["chat-stream-fallback"] = want{"beta", 2, pt, int64(len(strings.Fields(betaText)))}

	cp := openai.CompletionNewParams{
		Model:         openai.CompletionNewParamsModel("chat"),
		Prompt:        openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}
	cs := c.Completions.NewStreaming(ctxT(t), cp, id("completions-stream"))
	for cs.Next() {
	}
	if err := cs.Err(); err != nil {
		t.Fatal(err)
	}
	cs.Close()
	wants["completions-stream"] = want{"alpha", 1, pt, alphaWords}

	inputs := []string{"first", "second input"}
	if _, err := c.Embeddings.New(ctxT(t), openai.EmbeddingNewParams{
		Model: "chat", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
	}, id("embeddings")); err != nil {
		t.Fatal(err)
	}
	wants["embeddings"] = want{"alpha", 1, promptTokens(inputs...), 0}

	rp := responses.ResponseNewParams{Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(prompt)}}
	if _, err := c.Responses.New(ctxT(t), rp, id("responses")); err != nil {
		t.Fatal(err)
	}
	wants["responses"] = want{"alpha", 1, pt, alphaWords}
	rs := c.Responses.NewStreaming(ctxT(t), rp, id("responses-stream"))
	for rs.Next() {
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	rs.Close()
	wants["responses-stream"] = want{"alpha", 1, pt, alphaWords}

	if _, err := ac.Messages.New(ctxT(t), messageParams("claude-chat", prompt), aid("messages")); err != nil {
		t.Fatal(err)
	}
	wants["messages"] = want{"claude", 1, pt, claudeWords}
	if s := messageStream(t, ac, messageParams("claude-chat", prompt), aid("messages-stream")); s.Err != nil {
		t.Fatal(s.Err)
	}
	wants["messages-stream"] = want{"claude", 1, pt, claudeWords}

	// a big answer, whose usage sits far from the start of the body
	big := make([]string, 600)
	for i := range big {
		big[i] = fmt.Sprintf("input number %d to embed", i)
	}
	if _, err := c.Embeddings.New(ctxT(t), openai.EmbeddingNewParams{
		Model: "chat", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: big},
	}, id("embeddings-big")); err != nil {
		t.Fatal(err)
	}
	wants["embeddings-big"] = want{"alpha", 1, promptTokens(big...), 0}

	var entries map[string]accessEntry
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		entries = readAccessLog(t, logFile)
		if len(entries) >= len(wants) || time.Now().After(deadline) {
			break
		}
	}
	for name, w := range wants {
		e, ok := entries[name]
		if !ok {
			t.Errorf("%s: no access log entry", name)
			continue
		}
		if e.Status != 200 || e.Provider != w.provider || e.Attempts != w.attempts {
			t.Errorf("%s: status %d provider %q attempts %d, want %s after %d", name, e.Status, e.Provider, e.Attempts, w.provider, w.attempts)
		}
		if e.PromptTokens != w.prompt || e.CompletionTokens != w.completion {
			t.Errorf("%s: logged usage %d/%d, want %d/%d", name, e.PromptTokens, e.CompletionTokens, w.prompt, w.completion)
		}
	}
}
