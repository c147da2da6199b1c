// Package translate converts requests and answers between LLM wire
// formats, so a client of one API can be served by a provider that speaks
// another. Each client→provider pair is one Pair; the handler only asks
// for the pair of its client and provider APIs and never looks inside.
//
// A Pair translates a request body and returns an Exchange, which then
// translates that request's answer: a whole body, an error body, or a
// stream one upstream event at a time (incrementally, nothing is held
// back to the end).
package translate

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// APIs: the wire formats translate knows.
const (
	OpenAI    = "openai"    // OpenAI Chat Completions (also Azure OpenAI, vLLM, llama.cpp, Ollama)
	Anthropic = "anthropic" // Anthropic Messages
)

// Endpoint is the path (below the version prefix) a request of an API is
// sent to.
func Endpoint(api string) string {
	switch api {
	case OpenAI:
		return "/chat/completions"
	case Anthropic:
		return "/messages"
	}
	return ""
}

// IsMessages reports whether an endpoint belongs to Anthropic's Messages
// API: /messages and the endpoints below it, such as count_tokens.
func IsMessages(endpoint string) bool {
	return endpoint == "/messages" || strings.HasPrefix(endpoint, "/messages/")
}

// ErrorType names the error type of an HTTP status, in the vocabulary of
// Anthropic's errors, which OpenAI clients understand too.
func ErrorType(status int) string {
	switch status {
	case 401:
		return "authentication_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// ErrorStatus returns the HTTP status an error object (the error member
// of either API's error body or stream event) stands for: its numeric
// code (vLLM's), or its type or code in either API's vocabulary; 0 when
// it says none.
func ErrorStatus(e gjson.Result) int {
	if c := e.Get("code"); c.Type == gjson.Number && c.Int() >= 400 && c.Int() <= 599 {
		return int(c.Int())
	}
	for _, typ := range []string{e.Get("type").Str, e.Get("code").Str} {
		switch typ {
		case "invalid_request_error":
			return 400
		case "authentication_error", "invalid_api_key":
			return 401
		case "permission_error":
			return 403
		case "not_found_error":
			return 404
		case "request_too_large":
			return 413
		case "rate_limit_error", "rate_limit_exceeded":
			return 429
		case "overloaded_error":
			return 529
		case "api_error", "server_error":
			return 500
		case "timeout_error":
			return 504
		}
	}
	return 0
}

// ClientAPI names the API of a client endpoint, or "" when requests to
// that endpoint cannot be translated.
func ClientAPI(endpoint string) string {
	switch endpoint {
	case "/chat/completions":
		return OpenAI
	case "/messages":
		return Anthropic
	}
	return ""
}

// Options tune a request translation.
type Options struct {
	// DefaultMaxTokens is the output limit sent to an API that requires
	// one (Anthropic) when the client set none.
	DefaultMaxTokens int
	// MaxTokensField names the output limit in Chat Completions requests:
	// max_tokens (the default, which every compatible server reads) or
	// max_completion_tokens (which OpenAI's reasoning models require).
	MaxTokensField string
	// NoStreamUsage leaves stream_options out of translated Chat
	// Completions stream requests, for a server that refuses the field
	// (the provider's stream_usage off): the stream's usage is then what
	// the server reports unasked, often none.
	NoStreamUsage bool
}

// DefaultMaxTokens is used when Options.DefaultMaxTokens is zero.
const DefaultMaxTokens = 4096

// Pair translates requests of one client API for one provider API.
type Pair interface {
	// Request translates a client request body (already carrying the
	// provider's model name). An error is a *RequestError: a feature the
	// provider's API cannot honour.
	Request(body []byte, opt Options) ([]byte, Exchange, error)
}

// Exchange translates the answer to one translated request.
type Exchange interface {
	// Response translates a whole successful (2xx) body.
	Response(body []byte) ([]byte, error)
	// Error translates an error body (4xx/5xx) to the client's error
	// shape; bodies it does not recognise come back unchanged.
	Error(status int, body []byte) []byte
	// Event translates one upstream stream event, given its data (the
	// APIs name each event in its data's type), appending the client's
	// events to dst.
	Event(dst, data []byte) ([]byte, error)
}

// now is the clock of the created field; tests set it.
var now = time.Now

var pairs = map[[2]string]Pair{}

// Register makes a pair available. It panics on a duplicate, like
// caddy.RegisterModule.
func Register(client, provider string, p Pair) {
	k := [2]string{client, provider}
	if _, dup := pairs[k]; dup {
		panic(fmt.Sprintf("translate: pair %s→%s registered twice", client, provider))
	}
	pairs[k] = p
}

// Lookup returns the pair translating client requests for provider, or
// nil when there is none.
func Lookup(client, provider string) Pair {
	return pairs[[2]string{client, provider}]
}

// RequestError is a request the target API cannot serve; the client gets
// it as a 400.
type RequestError struct{ Msg string }

func (e *RequestError) Error() string { return e.Msg }

func unsupported(format string, args ...any) error {
	return &RequestError{Msg: fmt.Sprintf(format, args...)}
}

// ErrMalformed is an upstream answer that cannot be translated.
var ErrMalformed = errors.New("upstream answer cannot be translated")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// object is a request's top-level members, read in one pass: looking
// each field up in the body would scan it again every time.
type object map[string]gjson.Result

func topLevel(body []byte) object {
	o := make(object, 16)
	gjson.ParseBytes(body).ForEach(func(k, v gjson.Result) bool {
		o[k.Str] = v
		return true
	})
	return o
}

// Get returns the value at a gjson path whose first component is a
// top-level member.
func (o object) Get(path string) gjson.Result {
	k, rest, nested := strings.Cut(path, ".")
	if nested {
		return o[k].Get(rest)
	}
	return o[k]
}
