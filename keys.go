package llmroute

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-llm-route/llmroute/limits"
)

// ClientKey is a key the gateway hands out to a client (a team, an app):
// its secret, what it may use and its own limits. The secret never
// reaches logs, errors or admin output; the key's name does.
type ClientKey struct {
	// The key's name, shown in logs and placeholders ({llm.key}) in place
	// of the secret. Required, unique.
	Name string `json:"name"`

	// The secret, normally a placeholder resolved at provision such as
	// `{env.TEAM_A_KEY}`; a literal secret shows in the config.
	Secret string `json:"secret,omitempty"`

	// A file holding the secret (surrounding white space is ignored),
	// read at provision, so a config reload rereads it.
	SecretFile string `json:"secret_file,omitempty"`

	// The models and routes the key may ask for (names as clients send
	// them; a provider/model request checks the model). Empty: all.
	Models []string `json:"models,omitempty"`

	// The key's own limits and budget.
	limits.Limits

	digest  [sha256.Size]byte // of the secret; the secret itself is not kept
	subject *limits.Subject
}

// provisionKeys resolves the keys' secrets and indexes them.
func (h *Handler) provisionKeys(ctx caddy.Context) error {
	if len(h.Keys) == 0 {
		return nil
	}
	repl := caddy.NewReplacer()
	h.keys = make([]*ClientKey, 0, len(h.Keys))
	for _, k := range h.Keys {
		if k == nil {
			return fmt.Errorf("null client key")
		}
		secret := repl.ReplaceKnown(k.Secret, "")
		if k.SecretFile != "" {
			b, err := os.ReadFile(k.SecretFile)
			if err != nil {
				return fmt.Errorf("client key %s: reading secret_file: %v", k.Name, err)
			}
			secret = strings.TrimSpace(string(b))
		} else if k.Secret != "" && !strings.Contains(k.Secret, "{") {
			h.logger.Warn("client key secret is a literal and shows in the config; use a placeholder such as {env.TEAM_KEY} or secret_file",
				zap.String("key", k.Name))
		}
		if secret == "" {
			return fmt.Errorf("client key %s: the secret is empty", k.Name)
		}
		k.digest = sha256.Sum256([]byte(secret))
		for _, other := range h.keys {
			if other.digest == k.digest {
				return fmt.Errorf("client keys %s and %s have the same secret", other.Name, k.Name)
			}
		}
		h.keys = append(h.keys, k)
	}
	return nil
}

// clientSecret returns the credential a client sent: a bearer token, or
// the value of x-api-key, api-key or x-goog-api-key.
func clientSecret(r *http.Request) string {
	// The scheme is case-insensitive (RFC 9110 §11.1): "bearer" is a
	// bearer token too.
	if scheme, v, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(v)
	}
	for _, name := range []string{"X-Api-Key", "Api-Key", "X-Goog-Api-Key"} {
		if v := r.Header.Get(name); v != "" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// authenticate finds the client key of a request: 401 when it carries
// none or an unknown one. Without configured keys every request passes
// (with a nil key).
func (h *Handler) authenticate(r *http.Request) (*ClientKey, *requestError) {
	if h.keys == nil {
		return nil, nil
	}
	secret := clientSecret(r)
	if secret == "" {
		return nil, &requestError{status: http.StatusUnauthorized, code: "missing_api_key",
			msg: "this gateway needs an API key: send it as a bearer token or in x-api-key"}
	}
	// Every key's digest is compared in constant time, with no early
	// exit, so the time taken says nothing about which bytes matched.
	sum := sha256.Sum256([]byte(secret))
	var found *ClientKey
	for _, k := range h.keys {
		if subtle.ConstantTimeCompare(k.digest[:], sum[:]) == 1 {
			found = k
		}
	}
	if found == nil {
		return nil, &requestError{status: http.StatusUnauthorized, code: "invalid_api_key", msg: "the API key is not valid"}
	}
	return found, nil
}

// permits reports whether key may ask for name (as the client sent it).
// A provider/model request (pin) is judged by its model; any other name,
// a discovered id with a slash ("meta/llama") included, by itself.
func (h *Handler) permits(key *ClientKey, name string) bool {
	if key == nil || len(key.Models) == 0 || slices.Contains(key.Models, name) {
		return true
	}
	if _, model, ok := h.pin(name); ok {
		return slices.Contains(key.Models, model)
	}
	return false
}
