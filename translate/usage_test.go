package translate

import (
	"testing"

	"github.com/tidwall/gjson"
)

func TestUsageReaders(t *testing.T) {
	for _, tc := range []struct {
		name       string
		read       func(*Usage, gjson.Result)
		objects    []string // read one after the other
		want       Usage
		wantPrompt int64
	}{
		{
			name:    "chat completion",
			read:    (*Usage).ReadOpenAI,
			objects: []string{`{"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "prompt_tokens_details": {"cached_tokens": 4}}`},
			want:    Usage{Input: 8, Output: 5, CacheRead: 4}, wantPrompt: 12,
		},
		{
			name:    "translated chat completion with cache writes",
			read:    (*Usage).ReadOpenAI,
			objects: []string{`{"prompt_tokens": 20, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 4}, "cache_creation_input_tokens": 6}`},
			want:    Usage{Input: 10, Output: 1, CacheRead: 4, CacheWrite: 6}, wantPrompt: 20,
		},
		{
			name:    "responses",
			read:    (*Usage).ReadOpenAI,
			objects: []string{`{"input_tokens": 30, "output_tokens": 12, "total_tokens": 42, "input_tokens_details": {"cached_tokens": 8}}`},
			want:    Usage{Input: 22, Output: 12, CacheRead: 8}, wantPrompt: 30,
		},
		{
			name:    "openai: the last object wins; null and non-objects are skipped",
			read:    (*Usage).ReadOpenAI,
			objects: []string{`{"prompt_tokens": 1, "completion_tokens": 1}`, `null`, `{"prompt_tokens": 3, "completion_tokens": 2}`, `"x"`},
			want:    Usage{Input: 3, Output: 2}, wantPrompt: 3,
		},
		{
			name: "anthropic stream: message_start, then a delta with output only",
			read: (*Usage).ReadAnthropic,
			objects: []string{
				`{"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 3}`,
				`{"output_tokens": 15}`,
			},
			want: Usage{Input: 25, Output: 15, CacheRead: 10, CacheWrite: 3}, wantPrompt: 38,
		},
		{
			name: "anthropic: a field left out keeps its value",
			read: (*Usage).ReadAnthropic,
			objects: []string{
				`{"input_tokens": 25, "cache_read_input_tokens": 10}`,
				`{"input_tokens": 26, "output_tokens": 4}`,
			},
			want: Usage{Input: 26, Output: 4, CacheRead: 10}, wantPrompt: 36,
		},
		{
			name:    "openai: negative counts read as 0, cached tokens beyond the prompt as the prompt",
			read:    (*Usage).ReadOpenAI,
			objects: []string{`{"prompt_tokens": 10, "completion_tokens": -500, "prompt_tokens_details": {"cached_tokens": 15}, "cache_creation_input_tokens": -3}`},
			want:    Usage{Input: 0, Output: 0, CacheRead: 10}, wantPrompt: 10,
		},
		{
			name:    "openai: a negative prompt",
			read:    (*Usage).ReadOpenAI,
			objects: []string{`{"prompt_tokens": -7, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4}}`},
			want:    Usage{Output: 2}, wantPrompt: 0,
		},
		{
			name:    "responses: negative and excess counts",
			read:    (*Usage).ReadOpenAI,
			objects: []string{`{"input_tokens": 5, "output_tokens": -1, "total_tokens": 4, "input_tokens_details": {"cached_tokens": 9}}`},
			want:    Usage{CacheRead: 5}, wantPrompt: 5,
		},
		{
			name:    "anthropic: negative counts read as 0",
			read:    (*Usage).ReadAnthropic,
			objects: []string{`{"input_tokens": -25, "output_tokens": -1, "cache_read_input_tokens": -10, "cache_creation_input_tokens": 3}`},
			want:    Usage{CacheWrite: 3}, wantPrompt: 3,
		},
		{
			name:    "any API: anthropic",
			read:    (*Usage).Read,
			objects: []string{`{"input_tokens": 7, "output_tokens": 2, "cache_read_input_tokens": 3}`},
			want:    Usage{Input: 7, Output: 2, CacheRead: 3}, wantPrompt: 10,
		},
		{
			name:    "any API: responses (total_tokens)",
			read:    (*Usage).Read,
			objects: []string{`{"input_tokens": 7, "output_tokens": 2, "total_tokens": 9}`},
			want:    Usage{Input: 7, Output: 2}, wantPrompt: 7,
		},
		{
			name:    "any API: chat",
			read:    (*Usage).Read,
			objects: []string{`{"prompt_tokens": 7, "completion_tokens": 2}`},
			want:    Usage{Input: 7, Output: 2}, wantPrompt: 7,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u Usage
			for _, o := range tc.objects {
				tc.read(&u, gjson.Parse(o))
			}
			if u != tc.want || u.Prompt() != tc.wantPrompt {
				t.Errorf("usage = %+v (prompt %d), want %+v (prompt %d)", u, u.Prompt(), tc.want, tc.wantPrompt)
			}
		})
	}
}

// TestUsageWriters checks the usage objects written into translated
// answers, including numbers that do not add up (more cached tokens than
// prompt tokens, read as the prompt's), which never give a negative
// input_tokens.
func TestUsageWriters(t *testing.T) {
	for _, tc := range []struct {
		name, read, anthropic, openAI string
	}{
		{
			name:      "cached and written",
			read:      `{"prompt_tokens": 20, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 4}, "cache_creation_input_tokens": 6}`,
			anthropic: `{"input_tokens":10,"output_tokens":1,"cache_read_input_tokens":4,"cache_creation_input_tokens":6}`,
			openAI:    `{"prompt_tokens":20,"completion_tokens":1,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":4},"cache_creation_input_tokens":6}`,
		},
		{
			name:      "more cached than prompt tokens",
			read:      `{"prompt_tokens": 2, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 4}}`,
			anthropic: `{"input_tokens":0,"output_tokens":1,"cache_read_input_tokens":2,"cache_creation_input_tokens":0}`,
			openAI:    `{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u Usage
			u.ReadOpenAI(gjson.Parse(tc.read))
			var a, o jsonw
			u.writeAnthropic(&a)
			u.writeOpenAI(&o)
			if string(a.b) != tc.anthropic {
				t.Errorf("anthropic usage = %s, want %s", a.b, tc.anthropic)
			}
			if string(o.b) != tc.openAI {
				t.Errorf("openai usage = %s, want %s", o.b, tc.openAI)
			}
		})
	}
}
