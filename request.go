package llmroute

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// Endpoints llm_route understands by path suffix; one that ends with another
// (/chat/completions, /completions) comes first.
var knownEndpoints = []string{"/chat/completions", "/completions", "/embeddings", "/responses", "/messages", countTokensEndpoint}

// countTokensEndpoint is Anthropic's token counting endpoint; providers of
// other formats have it answered by the gateway's estimate.
const countTokensEndpoint = "/messages/count_tokens"

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

// maxTokensLimit bounds integer token fields; anything above is absurd.
const maxTokensLimit = 100_000_000

// parseRequest validates body and builds the request view: the body, the
// model, the stream flag and the output cap (its prompt is read later,
// and only when routing needs it). Validation is strict on what routing
// reads (the model, stream and token fields) and guards the process:
// nesting is checked iteratively before anything recursive looks at the
// body.
func parseRequest(body []byte, modelKey string, maxDepth int) (*strategies.Request, *requestError) {
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
	// One pass over the top-level members: duplicates, and the fields
	// routing reads.
	req := &strategies.Request{Body: body}
	var perr *requestError
	var model gjson.Result
	seen := make(map[string]struct{}, 16)
	root.ForEach(func(k, v gjson.Result) bool {
		if _, ok := seen[k.Str]; ok {
			perr = badRequest("duplicate_key", "request body has the key %q more than once", truncate(k.Str, 64))
			return false
		}
		seen[k.Str] = struct{}{}
		switch k.Str {
		case modelKey:
			model = v
		case "stream":
			if v.Type == gjson.Null {
				break
			}
			if !v.IsBool() {
				perr = badRequest("invalid_stream", "\"stream\" must be true or false")
				return false
			}
			req.Stream = v.Bool()
		case "max_tokens", "max_completion_tokens", "max_output_tokens", "n":
			n, err := tokenCount(k.Str, v)
			if err != nil {
				perr = err
				return false
			}
			if k.Str != "n" {
				req.MaxTokens = max(req.MaxTokens, n)
			}
		case "temperature", "top_p", "presence_penalty", "frequency_penalty":
			if v.Type == gjson.Number && (math.IsInf(v.Float(), 0) || math.Abs(v.Float()) > 1e6) {
				perr = badRequest("invalid_number", "%q is out of range", k.Str)
				return false
			}
		}
		return true
	})
	if perr != nil {
		return nil, perr
	}
	if _, topLevel := seen[modelKey]; !topLevel {
		model = gjson.GetBytes(body, modelKey)
		if i := strings.LastIndexByte(modelKey, '.'); i > 0 && model.Exists() {
			n := 0
			gjson.GetBytes(body, modelKey[:i]).ForEach(func(k, _ gjson.Result) bool {
				if k.Str == modelKey[i+1:] {
					n++
				}
				return true
			})
			if n > 1 {
				return nil, badRequest("duplicate_key", "request body has the key %q more than once", truncate(modelKey, 64))
			}
		}
	}
	switch {
	case !model.Exists():
		return nil, badRequest("missing_model", "request body has no %q field", modelKey)
	case model.Type != gjson.String || model.Str == "":
		return nil, badRequest("invalid_model", "%q must be a non-empty string", modelKey)
	}
	req.Model = model.Str
	return req, nil
}

// tokenCount validates a token count field: a finite integer within
// 0..maxTokensLimit, or null.
func tokenCount(name string, v gjson.Result) (int64, *requestError) {
	if v.Type == gjson.Null {
		return 0, nil
	}
	if v.Type != gjson.Number {
		return 0, badRequest("invalid_number", "%q must be a number", name)
	}
	n := v.Float()
	if math.IsInf(n, 0) || math.IsNaN(n) || n < 0 || n > maxTokensLimit || n != math.Trunc(n) {
		return 0, badRequest("invalid_number", "%q must be an integer between 0 and %d", name, maxTokensLimit)
	}
	return int64(n), nil
}

// checkDepth rejects bodies nested deeper than max without recursion, so
// a body of millions of '[' cannot exhaust the stack.
func checkDepth(body []byte, max int) *requestError {
	depth := 0
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '"':
			// Skip the string: find its closing quote, one not escaped
			// by an odd run of backslashes.
			for {
				j := bytes.IndexByte(body[i+1:], '"')
				if j < 0 {
					return nil // unterminated; the JSON check reports it
				}
				i += j + 1
				k := i - 1
				for k >= 0 && body[k] == '\\' {
					k--
				}
				if (i-1-k)%2 == 0 {
					break
				}
			}
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

// rewriteBody returns the body for one attempt: the model field set to
// model, each set of parameters applied in turn (a later set wins), and
// the client's `models` list removed when dropModels is set.
func rewriteBody(body []byte, modelKey, model string, dropModels bool, params ...map[string]json.RawMessage) ([]byte, error) {
	out, err := sjson.SetBytes(body, modelKey, model)
	if err != nil {
		return nil, err
	}
	for _, ps := range params {
		for _, path := range slices.Sorted(maps.Keys(ps)) {
			if out, err = sjson.SetRawBytes(out, path, ps[path]); err != nil {
				return nil, err
			}
		}
	}
	if dropModels {
		return sjson.DeleteBytes(out, "models")
	}
	return out, nil
}

// truncate shortens s to at most n bytes, marked with an ellipsis. It
// cuts before the character that straddles the limit, never inside it
// (if s is not UTF-8 there, it cuts at n).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for i := n; i >= 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return s[:n] + "…"
}
