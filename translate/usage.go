package translate

import "github.com/tidwall/gjson"

// Usage is the token usage an answer reported, in Anthropic's terms:
// Input leaves out the prompt tokens read from or written to the cache,
// which CacheRead and CacheWrite count. Prompt gives OpenAI's count,
// which includes them.
//
// The readers take a usage object as an API writes it; reading the usage
// objects of a stream's events one after the other leaves the stream's
// usage.
type Usage struct {
	Input, Output, CacheRead, CacheWrite int64
}

// Prompt is the number of prompt tokens, cached ones included, as
// OpenAI's prompt_tokens counts them.
func (u Usage) Prompt() int64 {
	return u.Input + u.CacheRead + u.CacheWrite
}

// ReadAnthropic reads a Messages usage object: input_tokens,
// output_tokens, cache_read_input_tokens and cache_creation_input_tokens.
// A field the object lacks keeps its value (a message_delta event may
// carry output_tokens only).
func (u *Usage) ReadAnthropic(v gjson.Result) {
	if !v.IsObject() {
		return
	}
	for _, f := range []struct {
		name string
		to   *int64
	}{
		{"input_tokens", &u.Input},
		{"output_tokens", &u.Output},
		{"cache_read_input_tokens", &u.CacheRead},
		{"cache_creation_input_tokens", &u.CacheWrite},
	} {
		if x := v.Get(f.name); x.Exists() {
			*f.to = tokenCount(x)
		}
	}
}

// ReadOpenAI reads an OpenAI usage object and replaces u with it: a chat
// completion's (prompt_tokens, completion_tokens,
// prompt_tokens_details.cached_tokens, and the cache_creation_input_tokens
// that translated answers add) or, without prompt_tokens, a Responses
// API one (input_tokens, output_tokens, input_tokens_details.cached_tokens).
// OpenAI's prompt and input tokens include the cached ones; Input does
// not.
//
// An upstream's numbers are not trusted to add up: a negative count reads
// as 0, and cached tokens beyond the prompt's count as the prompt's, so
// that usage (and the cost and limits charged on it) never goes below
// zero and the prompt's count is what the object said.
func (u *Usage) ReadOpenAI(v gjson.Result) {
	if !v.IsObject() {
		return
	}
	if prompt := v.Get("prompt_tokens"); prompt.Exists() {
		p := tokenCount(prompt)
		read := min(tokenCount(v.Get("prompt_tokens_details.cached_tokens")), p)
		write := min(tokenCount(v.Get("cache_creation_input_tokens")), p-read)
		*u = Usage{Input: p - read - write, Output: tokenCount(v.Get("completion_tokens")), CacheRead: read, CacheWrite: write}
		return
	}
	p := tokenCount(v.Get("input_tokens"))
	read := min(tokenCount(v.Get("input_tokens_details.cached_tokens")), p)
	*u = Usage{Input: p - read, Output: tokenCount(v.Get("output_tokens")), CacheRead: read}
}

// maxTokenCount bounds every count an upstream reports: far above any
// call's, and low enough that the sums of a request's counts (its fields,
// its calls) and their prices cannot wrap.
const maxTokenCount = 1 << 32

// tokenCount reads a count as 0..maxTokenCount: a negative one (or one
// that is no number) as 0, one beyond the bound (however large, even
// past int64) as the bound.
func tokenCount(v gjson.Result) int64 {
	switch f := v.Float(); {
	case !(f > 0):
		return 0
	case f >= maxTokenCount:
		return maxTokenCount
	}
	return v.Int()
}

// Read reads a usage object of any API: Anthropic's has input_tokens and
// neither prompt_tokens (chat completions) nor total_tokens (Responses).
func (u *Usage) Read(v gjson.Result) {
	if v.Get("input_tokens").Exists() && !v.Get("prompt_tokens").Exists() && !v.Get("total_tokens").Exists() {
		u.ReadAnthropic(v)
		return
	}
	u.ReadOpenAI(v)
}

// writeOpenAI writes the usage object of a chat completion. prompt_tokens
// counts cached tokens too, as OpenAI's does; cache writes, which OpenAI
// has no field for, appear as cache_creation_input_tokens when there are
// any.
func (u Usage) writeOpenAI(w *jsonw) {
	prompt := u.Prompt()
	w.open('{')
	w.kint("prompt_tokens", prompt)
	w.kint("completion_tokens", u.Output)
	w.kint("total_tokens", prompt+u.Output)
	w.key("prompt_tokens_details")
	w.open('{')
	w.kint("cached_tokens", u.CacheRead)
	w.close('}')
	if u.CacheWrite > 0 {
		w.kint("cache_creation_input_tokens", u.CacheWrite)
	}
	w.close('}')
}

// writeAnthropic writes a Messages usage object.
func (u Usage) writeAnthropic(w *jsonw) {
	w.open('{')
	w.kint("input_tokens", max(u.Input, 0))
	w.kint("output_tokens", u.Output)
	w.kint("cache_read_input_tokens", u.CacheRead)
	w.kint("cache_creation_input_tokens", u.CacheWrite)
	w.close('}')
}
