// Package strategies holds llm_route's routing strategies. Each strategy
// is a Caddy guest module in the namespace
// `http.handlers.llm_route.strategies`, and a pure function of the
// request view and the candidates with their live stats: it orders the
// candidates (best first; the attempt loop falls back along that order)
// and says why.
package strategies

import (
	"encoding/json"
	"net/http"

	"github.com/caddy-llm-route/llmroute/upstreams"
)

// Namespace is the Caddy module namespace of strategies.
const Namespace = "http.handlers.llm_route.strategies"

// Strategy orders candidates for a request.
type Strategy interface {
	// Select reorders cands in place, best first, and returns the
	// decision. It must not keep cands or req, must be safe for
	// concurrent use, and must do no I/O.
	Select(req *Request, cands []Candidate) Decision
}

// PromptBlind is implemented by strategies whose choice never reads the
// prompt (the text and token fields ReadPrompt fills): the handler then
// does not read the messages for them, unless a filter or a limit needs
// them.
type PromptBlind interface {
	PromptBlind()
}

// Referrer is implemented by strategies whose options name models or
// set body parameters (tiers, rules, premium models). A strategy does
// not know the registry: the handler's Validate checks each name against
// it, and each parameter against the fields the gateway owns (the model,
// stream and models), so a typo fails at config load rather than
// misrouting at run time.
type Referrer interface {
	Refs() []Ref
}

// Ref is one option of a strategy that names models or sets parameters.
type Ref struct {
	// Option names the option as an error message says it, e.g.
	// "difficulty: tier 0" or "rule code".
	Option string
	// Models are the registry names the option refers to.
	Models []string
	// Params are the body parameter paths the option sets.
	Params []string
}

// Decision is a strategy's verdict beyond the order.
type Decision struct {
	// Reason explains the choice for logs, headers and metrics, e.g.
	// "rule=code_generation" or "difficulty=0.62 tier=2".
	Reason string
	// Params are body parameters to set on every attempt (by sjson
	// path), e.g. temperature or max_tokens from a rule.
	Params map[string]json.RawMessage
}

// Request is the read-only view of a request that strategies see.
type Request struct {
	// Endpoint is the API endpoint, e.g. "/chat/completions" or "/messages".
	Endpoint string
	// Model is the model field as the client sent it.
	Model string
	// Body is the raw request body.
	Body []byte
	// Stream is the stream flag.
	Stream bool
	// MaxTokens is the client's output cap, or 0.
	MaxTokens int64
	// PromptTokens estimates the prompt's tokens; TextTokens those of
	// Conversation alone (without tool definitions and the per-message
	// overhead).
	PromptTokens, TextTokens int
	// System is the text of the system prompt(s).
	System string
	// LastUser is the text of the last user message.
	LastUser string
	// Conversation is the text of all messages, system included.
	Conversation string
	// HasTools, HasImages and JSONMode tell whether the request carries
	// tools, image inputs, or asks for JSON / structured output.
	HasTools, HasImages, JSONMode bool
	// Header is the client's request header.
	Header http.Header

	promptRead bool // ReadPrompt has filled the prompt fields
}

// Candidate is one model at one provider: what a strategy ranks and the
// attempt loop calls. Strategies read its registry attributes and stats
// and reorder candidates; they never change them.
type Candidate struct {
	// Model is the registry name, UpstreamModel the model's name at the
	// provider.
	Model, UpstreamModel string
	// Provider serves the model.
	Provider *upstreams.Provider
	// Pair is the live state of this provider+model.
	Pair upstreams.Pair
	// InputPrice and OutputPrice are USD per million tokens; Priced is
	// false when the registry has no price (never read as free).
	InputPrice, OutputPrice float64
	Priced                  bool
	// Quality is the configured score in 0..1; 0 when unknown.
	Quality float64
	// Context is the context window in tokens; 0 when unknown.
	Context int
	// Weight is the target's weight for weighted strategies; default 1.
	Weight float64
	// Params are the target's body parameter overrides.
	Params map[string]json.RawMessage
	// Stats are the pair's live stats when the strategy runs.
	Stats upstreams.Stats
}

// Cost estimates the USD cost of the request on c: prompt tokens at the
// input price plus the expected output at the output price. The expected
// output is expectedOutput, or the client's max_tokens when that is lower.
func Cost(req *Request, c *Candidate, expectedOutput int) float64 {
	out := float64(expectedOutput)
	if req.MaxTokens > 0 && float64(req.MaxTokens) < out {
		out = float64(req.MaxTokens)
	}
	return (float64(req.PromptTokens)*c.InputPrice + out*c.OutputPrice) / 1e6
}

// Prefer reorders cands so that the candidates of the given models come
// first, in the order of models (each model's candidates keep their
// relative order), followed by the others in their previous order. It
// returns how many candidates matched. Models not among cands are
// skipped. Rule-like strategies use it to put their pick first while
// keeping the rest as fallbacks.
func Prefer(cands []Candidate, models []string) int {
	n := 0
	for _, m := range models {
		for i := n; i < len(cands); i++ {
			if cands[i].Model != m {
				continue
			}
			c := cands[i]
			copy(cands[n+1:i+1], cands[n:i])
			cands[n] = c
			n++
		}
	}
	return n
}
