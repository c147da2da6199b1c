package llmroute

import (
	"strings"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap/zapcore"
)

// placeholders answers a request's {llm.*} placeholders (README,
// "Placeholders") from the values the request ended with.
//
// It is one provider of the request's replacer, added when the request
// starts, before any attempt runs: Replacer.Map is not safe while other
// goroutines read the replacer, and an attempt's reverse proxy does.
// Eleven Replacer.Set calls would grow the replacer's map on every
// request. The values are published whole and atomically, since an
// abandoned attempt may still read the replacer when they are.
type placeholders struct {
	v atomic.Pointer[placeholderValues]

	// first holds the values set first (most requests set them once),
	// taken by one caller only.
	first      placeholderValues
	firstTaken atomic.Bool
}

// placeholderValues are the values of one request's placeholders.
type placeholderValues struct {
	route, model, provider, reason string
	key                            *string // nil without client keys
	attempts                       int
	usage                          Usage
}

// register adds p to repl's providers.
func (p *placeholders) register(repl *caddy.Replacer) {
	repl.Map(p.get)
}

// fresh returns values to fill in and then set: first for the first
// caller, then new ones (values once set are never changed, since they
// may be read at any time).
func (p *placeholders) fresh() *placeholderValues {
	if p.firstTaken.CompareAndSwap(false, true) {
		return &p.first
	}
	return new(placeholderValues)
}

// set publishes v.
func (p *placeholders) set(v *placeholderValues) { p.v.Store(v) }

// get implements caddy.ReplacerFunc.
func (p *placeholders) get(key string) (any, bool) {
	name, ok := strings.CutPrefix(key, "llm.")
	if !ok {
		return nil, false
	}
	v := p.v.Load()
	if v == nil {
		return nil, false
	}
	switch name {
	case "route":
		return v.route, true
	case "model":
		return v.model, true
	case "provider":
		return v.provider, true
	case "reason":
		return v.reason, true
	case "attempts":
		return v.attempts, true
	case "key":
		if v.key == nil {
			return nil, false
		}
		return *v.key, true
	case "usage.prompt_tokens":
		return v.usage.PromptTokens, true
	case "usage.completion_tokens":
		return v.usage.CompletionTokens, true
	case "usage.total_tokens":
		return v.usage.PromptTokens + v.usage.CompletionTokens, true
	case "usage.cache_read_tokens":
		return v.usage.CacheReadTokens, true
	case "usage.cache_write_tokens":
		return v.usage.CacheWriteTokens, true
	}
	return nil, false
}

// MarshalLogObject implements zapcore.ObjectMarshaler: the access log's
// llm_* fields.
func (v *placeholderValues) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("llm_route", v.route)
	enc.AddString("llm_model", v.model)
	enc.AddString("llm_provider", v.provider)
	enc.AddInt("llm_attempts", v.attempts)
	enc.AddString("llm_reason", v.reason)
	if v.key != nil {
		enc.AddString("llm_key", *v.key)
	}
	enc.AddInt64("llm_prompt_tokens", v.usage.PromptTokens)
	enc.AddInt64("llm_completion_tokens", v.usage.CompletionTokens)
	return nil
}
