package llmroute

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// This file holds checks of Validate (module.go) on values that look
// fine alone but misroute or leak once served: names a strategy refers
// to, parameters that would overwrite what the gateway owns, request
// headers the gateway must not set, a feedback path that would shadow
// an API endpoint, capability names, and bounds.

// maxRetries is the most a target may be tried again (retries): past a
// few tries a failing target is down, and each try holds the client.
const maxRetries = 10

// knownCapabilities are the capabilities a request may need, as the
// candidate filter (route.go, unfit) checks them: a request with tools,
// with image inputs, or in JSON mode.
var knownCapabilities = []string{"tools", "vision", "json"}

// gatewayHeaders are request headers that model_to_header and
// provider_header must not name: hop-by-hop headers, and those that
// frame or address the request. (Credential headers are refused too, by
// upstreams.CredentialHeader.)
var gatewayHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Host", "Content-Length", "Content-Type", "Content-Encoding", "Expect",
}

// owns reports whether a body parameter at path would set a field the
// gateway owns: the model (model_key), the stream flag (the client's),
// or the client's `models` list (client_models), or a part or a parent
// of one of them.
func (h *Handler) owns(path string) bool {
	if path == "" {
		return true
	}
	for _, f := range []string{h.ModelKey, "stream", "models"} {
		if path == f || strings.HasPrefix(path, f+".") || strings.HasPrefix(f, path+".") {
			return true
		}
	}
	return false
}

// validStrategyRefs checks the models a route's strategy names (tiers,
// rules, premium models) against the registry, and the parameters it
// sets against the fields the gateway owns.
func (h *Handler) validStrategyRefs(s strategies.Strategy) error {
	ref, ok := s.(strategies.Referrer)
	if !ok {
		return nil
	}
	for _, r := range ref.Refs() {
		for _, name := range r.Models {
			if _, ok := h.models[name]; !ok {
				return fmt.Errorf("%s: unknown model %q", r.Option, name)
			}
		}
		for _, path := range r.Params {
			if h.owns(path) {
				return fmt.Errorf("%s cannot set %q: the gateway sets the model, the stream flag and the models list", r.Option, path)
			}
		}
	}
	return nil
}

// validHeaderName checks a request header a directive names.
func validHeaderName(directive, name string) error {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) }) {
		return fmt.Errorf("%s: %q is not a header field name", directive, name)
	}
	return nil
}

// validGatewayHeader checks model_to_header and provider_header: a valid
// name, neither a credential header nor one that frames or addresses
// the request.
func validGatewayHeader(directive, name string) error {
	if name == "" {
		return nil
	}
	if err := validHeaderName(directive, name); err != nil {
		return err
	}
	c := http.CanonicalHeaderKey(name)
	if upstreams.CredentialHeader(c) {
		return fmt.Errorf("%s: %s carries credentials; the gateway would send the model name as one", directive, c)
	}
	if slices.Contains(gatewayHeaders, c) {
		return fmt.Errorf("%s: %s is a hop-by-hop or message header; use a header of its own, such as X-LLM-Model", directive, c)
	}
	return nil
}

// validFeedbackPath checks that feedback_path starts with '/' and does
// not take the path of an API request the handler serves: one ending in
// an enabled suffix or a known endpoint, or a model list path.
func (h *Handler) validFeedbackPath() error {
	fp := h.FeedbackPath
	if fp == "" {
		return nil
	}
	if !strings.HasPrefix(fp, "/") {
		return fmt.Errorf("feedback_path: %q must start with '/'", fp)
	}
	if _, ok := modelsPath(fp); ok {
		return fmt.Errorf("feedback_path: %s is a model list path the gateway answers", fp)
	}
	for _, s := range slices.Concat(h.EnableOnPathSuffix, knownEndpoints) {
		if s != "*" && strings.HasSuffix(fp, s) {
			return fmt.Errorf("feedback_path: %s ends in %s, an API endpoint the gateway serves; use a path of its own, such as /v1/feedback", fp, s)
		}
	}
	return nil
}

// validCapabilities checks a model's capability names.
func validCapabilities(caps []string) error {
	for _, c := range caps {
		if !slices.Contains(knownCapabilities, c) {
			return fmt.Errorf("unknown capability %q (want %s)", c, strings.Join(knownCapabilities, ", "))
		}
	}
	return nil
}

// validPinName refuses a model or route name that reads as a
// provider/model request naming a provider and one of its models: the
// name, resolved first, would take that request, and the client could
// no longer pin the provider.
func (h *Handler) validPinName(kind, name string) error {
	prov, model, ok := strings.Cut(name, "/")
	if !ok || h.providers[prov] == nil {
		return nil
	}
	if m := h.models[model]; m != nil && slices.Contains(m.Providers, prov) {
		return fmt.Errorf("%s %s: the name reads as provider %s's model %s (provider/model), and would take those requests: rename it", kind, name, prov, model)
	}
	return nil
}

// retriesOn reports whether a status moves on under the handler's
// retry_on or any route's.
func (h *Handler) retriesOn(status int) bool {
	if matchesStatus(status, h.RetryOn) {
		return true
	}
	return slices.ContainsFunc(h.Routes, func(r *Route) bool { return matchesStatus(status, r.RetryOn) })
}
