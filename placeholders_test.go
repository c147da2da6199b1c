package llmroute

import (
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestPlaceholdersPublishedWhole: a reader of the replacer (an abandoned
// attempt's reverse proxy) may look the placeholders up while the
// request publishes them; it sees none or all of them (run with -race).
func TestPlaceholdersPublishedWhole(t *testing.T) {
	repl := caddy.NewReplacer()
	var p placeholders
	p.register(repl)
	if _, ok := repl.Get("llm.model"); ok {
		t.Fatal("llm.model known before the request published it")
	}

	seen := make(chan [2]any)
	go func() {
		for {
			m, ok := repl.Get("llm.model")
			if !ok {
				continue
			}
			n, _ := repl.Get("llm.usage.total_tokens")
			seen <- [2]any{m, n}
			return
		}
	}()
	p.set(&placeholderValues{route: "r", model: "m", provider: "p", reason: "why", attempts: 2,
		usage: Usage{PromptTokens: 3, CompletionTokens: 4, CacheReadTokens: 5, CacheWriteTokens: 6}})
	if got := <-seen; got[0] != "m" || got[1] != int64(7) {
		t.Fatalf("a concurrent reader saw %v", got)
	}

	for k, want := range map[string]string{
		"llm.route": "r", "llm.model": "m", "llm.provider": "p", "llm.reason": "why", "llm.attempts": "2",
		"llm.usage.prompt_tokens": "3", "llm.usage.completion_tokens": "4", "llm.usage.total_tokens": "7",
		"llm.usage.cache_read_tokens": "5", "llm.usage.cache_write_tokens": "6",
		"llm.key": "-", "llm.nope": "-", "http.nope": "-",
	} {
		if got := repl.ReplaceAll("{"+k+"}", "-"); got != want {
			t.Errorf("{%s} = %q, want %q", k, got, want)
		}
	}
	name := "team-a"
	p.set(&placeholderValues{key: &name})
	if got := repl.ReplaceAll("{llm.key}", "-"); got != "team-a" {
		t.Errorf("{llm.key} = %q", got)
	}
}
