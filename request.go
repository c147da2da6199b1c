package llmroute

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// Endpoints llm_route understands by path suffix, longest first.
var knownEndpoints = []string{"/chat/completions", "/completions", "/embeddings", "/responses", "/messages"}

// Request is the view of an LLM API request that routing needs.
type Request struct {
	// Endpoint is the API endpoint without version prefix, e.g.
	// "/chat/completions" or "/messages"; it is appended to a provider's
	// base path.
	Endpoint string
	// Model is the model field as sent.
	Model string
	// Stream is the stream flag.
	Stream bool
	// MaxTokens is the output cap the client set, or 0.
	MaxTokens int64
	// Body is the request body.
	Body []byte
}

// endpointFor returns the upstream endpoint of a request path: a known
// API endpoint, else the matched configured suffix, else the path with a
// leading /v1 removed.
func endpointFor(path, matched string) string {
	for _, e := range knownEndpoints {
		if strings.HasSuffix(path, e) {
			return e
		}
	}
	if matched != "" && matched != "*" {
		return matched
	}
	if rest, ok := strings.CutPrefix(path, "/v1/"); ok {
		return "/" + rest
	}
	return path
}

// requestError is a client error answered before routing.
type requestError struct {
	status int
	code   string
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(code, format string, args ...any) *requestError {
	return &requestError{status: 400, code: code, msg: fmt.Sprintf(format, args...)}
}

// numericFields are top-level fields that must be finite, non-negative
// integers of a sane size when present.
var numericFields = []string{"max_tokens", "max_completion_tokens", "max_output_tokens", "n"}

// maxTokensLimit bounds integer token fields; anything above is absurd.
const maxTokensLimit = 100_000_000

// parseRequest validates body and builds the request view. Validation is
// strict on what routing reads (the model, stream and token fields) and
// guards the process: nesting is checked iteratively before anything
// recursive looks at the body.
func parseRequest(body []byte, modelKey string, maxDepth int) (*Request, *requestError) {
	if err := checkDepth(body, maxDepth); err != nil {
		return nil, err
	}
	if !gjson.ValidBytes(body) {
		return nil, badRequest("invalid_json", "request body is not valid JSON")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return nil, badRequest("invalid_request", "request body must be a JSON object")
	}
	seen := make(map[string]struct{}, 16)
	var dup string
	root.ForEach(func(k, _ gjson.Result) bool {
		if _, ok := seen[k.Str]; ok {
			dup = k.Str
			return false
		}
		seen[k.Str] = struct{}{}
		return true
	})
	if dup != "" {
		return nil, badRequest("duplicate_key", "request body has the key %q more than once", truncate(dup, 64))
	}

	req := &Request{Body: body}
	m := gjson.GetBytes(body, modelKey)
	switch {
	case !m.Exists():
		return nil, badRequest("missing_model", "request body has no %q field", modelKey)
	case m.Type != gjson.String || m.Str == "":
		return nil, badRequest("invalid_model", "%q must be a non-empty string", modelKey)
	}
	req.Model = m.Str

	if s := root.Get("stream"); s.Exists() {
		if !s.IsBool() {
			return nil, badRequest("invalid_stream", "\"stream\" must be true or false")
		}
		req.Stream = s.Bool()
	}
	for _, f := range numericFields {
		v := root.Get(f)
		if !v.Exists() || v.Type == gjson.Null {
			continue
		}
		if v.Type != gjson.Number {
			return nil, badRequest("invalid_number", "%q must be a number", f)
		}
		n := v.Float()
		if math.IsInf(n, 0) || math.IsNaN(n) || n < 0 || n > maxTokensLimit || n != math.Trunc(n) {
			return nil, badRequest("invalid_number", "%q must be an integer between 0 and %d", f, maxTokensLimit)
		}
		if f != "n" && req.MaxTokens == 0 {
			req.MaxTokens = int64(n)
		}
	}
	for _, f := range []string{"temperature", "top_p", "presence_penalty", "frequency_penalty"} {
		v := root.Get(f)
		if v.Exists() && v.Type == gjson.Number && (math.IsInf(v.Float(), 0) || math.Abs(v.Float()) > 1e6) {
			return nil, badRequest("invalid_number", "%q is out of range", f)
		}
	}
	return req, nil
}

// checkDepth rejects bodies nested deeper than max without recursion, so
// a body of millions of '[' cannot exhaust the stack.
func checkDepth(body []byte, max int) *requestError {
	depth := 0
	inString := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > max {
				return badRequest("too_deep", "request body is nested deeper than %d levels", max)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// rewriteBody returns the body for one target: the model field set to the
// upstream model name, and the target's parameters applied.
func rewriteBody(body []byte, modelKey, model string, params map[string]json.RawMessage) ([]byte, error) {
	out, err := sjson.SetBytes(body, modelKey, model)
	if err != nil {
		return nil, err
	}
	for _, path := range slices.Sorted(maps.Keys(params)) {
		if out, err = sjson.SetRawBytes(out, path, params[path]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
