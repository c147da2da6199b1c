package upstreams

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	caddy.RegisterModule(AuthTransport{})
}

// AuthTransport is the transport every provider's reverse proxy uses: it
// adds the provider's credential to a copy of each request just before
// it leaves, below reverse_proxy's request logging, so the key is never
// part of a logged request, and hands it to the inner transport. An
// upstream that reflects the key (an error message quoting the request,
// a header echoing Authorization) has it replaced with REDACTED in the
// response's headers, body and trailers, before reverse_proxy logs or
// passes on any of them.
// llm_route sets it up for each provider; it is not configured by hand.
type AuthTransport struct {
	// The provider's format, which decides the auth header.
	Format string `json:"format,omitempty"`

	// The credential, usually a placeholder such as {env.OPENAI_API_KEY},
	// resolved for each request.
	APIKey string `json:"api_key,omitempty"`

	// The provider's extra headers, set here with the credential (so no
	// log shows them either). Values may hold placeholders; a value
	// resolved from one is a secret, scrubbed from answers like the key.
	Headers http.Header `json:"headers,omitempty"`

	// The transport that carries the requests. Default: http.
	TransportRaw json.RawMessage `json:"transport,omitempty" caddy:"namespace=http.reverse_proxy.transport inline_key=protocol"`

	inner http.RoundTripper
}

// CaddyModule returns the Caddy module information.
func (AuthTransport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.llm_auth",
		New: func() caddy.Module { return new(AuthTransport) },
	}
}

// Provision loads the inner transport.
func (t *AuthTransport) Provision(ctx caddy.Context) error {
	if t.TransportRaw == nil {
		t.TransportRaw = json.RawMessage(`{"protocol":"http"}`)
	}
	mod, err := ctx.LoadModule(t, "TransportRaw")
	if err != nil {
		return fmt.Errorf("loading transport: %v", err)
	}
	t.inner = mod.(http.RoundTripper)
	return nil
}

// RoundTrip implements http.RoundTripper.
func (t *AuthTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	repl, ok := req.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		repl = caddy.NewReplacer()
	}
	key := t.APIKey
	if strings.Contains(key, "{") {
		key = repl.ReplaceKnown(key, "")
	}
	if key == "" && len(t.Headers) == 0 {
		return t.inner.RoundTrip(req)
	}
	out := new(http.Request)
	*out = *req
	out.Header = req.Header.Clone()
	var secrets []string // what the answer must not carry back
	if key != "" {
		name, value := authHeader(t.Format, key)
		out.Header.Set(name, value)
		secrets = append(secrets, key)
	}
	for name, vals := range t.Headers {
		out.Header.Del(name)
		for _, v := range vals {
			resolved := v
			if strings.Contains(v, "{") {
				resolved = repl.ReplaceKnown(v, "")
				if resolved != v {
					secrets = append(secrets, resolved)
				}
			}
			out.Header.Add(name, resolved)
		}
	}
	resp, err := t.inner.RoundTrip(out)
	if err != nil {
		return resp, err
	}
	for _, h := range accountHeaders {
		delete(resp.Header, h)
	}
	if err := unreadableEncoding(resp); err != nil {
		return nil, err
	}
	for _, secret := range secrets {
		if len(secret) < minScrubbed {
			continue
		}
		scrubHeader(resp.Header, secret)
		if resp.Body != nil {
			resp.Body = newScrubReader(resp.Body, secret, func() { scrubHeader(resp.Trailer, secret) })
		}
	}
	return resp, nil
}

// unreadableEncoding refuses an answer whose body is still encoded: the
// inner transport asks for gzip itself and decompresses it, so any
// Content-Encoding left is one nobody asked for (deflate, br, …). The
// gateway could neither check such a body nor scrub a key from it, and a
// client that decodes it would read what the upstream reflected.
func unreadableEncoding(resp *http.Response) error {
	ce := strings.TrimSpace(resp.Header.Get("Content-Encoding"))
	if ce == "" || strings.EqualFold(ce, "identity") {
		return nil
	}
	if resp.Body != nil {
		resp.Body.Close()
	}
	return fmt.Errorf("upstream answered with Content-Encoding %q, which was not asked for", truncate(ce, 32))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// accountHeaders describe the operator's account at the provider, not
// the answer: which organization and project the key bills, and the
// provider's cookies. An answer to a call made with the operator's key
// goes to clients without them (canonical names, as the transport reads
// them).
var accountHeaders = []string{"Openai-Organization", "Openai-Project", "Anthropic-Organization-Id", "Set-Cookie"}

// authHeader returns the header name and value carrying key for a format.
func authHeader(format, key string) (string, string) {
	switch format {
	case FormatAnthropic:
		return "X-Api-Key", key
	case FormatAzure:
		return "Api-Key", key
	default:
		return "Authorization", "Bearer " + key
	}
}

// The inner transport's optional abilities are passed on, so the proxy
// behaves as it would with the inner transport alone.

// OverrideHealthCheckScheme keeps HTTPS health checks working.
func (t *AuthTransport) OverrideHealthCheckScheme(u *url.URL, port string) {
	if o, ok := t.inner.(reverseproxy.HealthCheckSchemeOverriderTransport); ok {
		o.OverrideHealthCheckScheme(u, port)
	}
}

// RequestHeaderOps passes on the inner transport's default header
// operations (Host for HTTPS upstreams).
func (t *AuthTransport) RequestHeaderOps() *headers.HeaderOps {
	if o, ok := t.inner.(reverseproxy.RequestHeaderOpsTransport); ok {
		return o.RequestHeaderOps()
	}
	return nil
}

// ProxyProtocolEnabled reports the inner transport's PROXY protocol use.
func (t *AuthTransport) ProxyProtocolEnabled() bool {
	if o, ok := t.inner.(reverseproxy.ProxyProtocolTransport); ok {
		return o.ProxyProtocolEnabled()
	}
	return false
}

// DefaultBufferSizes passes on the inner transport's buffer sizes.
func (t *AuthTransport) DefaultBufferSizes() (int64, int64) {
	if o, ok := t.inner.(reverseproxy.BufferedTransport); ok {
		return o.DefaultBufferSizes()
	}
	return 0, 0
}

// Interface guards
var (
	_ caddy.Provisioner                                = (*AuthTransport)(nil)
	_ http.RoundTripper                                = (*AuthTransport)(nil)
	_ reverseproxy.HealthCheckSchemeOverriderTransport = (*AuthTransport)(nil)
	_ reverseproxy.RequestHeaderOpsTransport           = (*AuthTransport)(nil)
	_ reverseproxy.ProxyProtocolTransport              = (*AuthTransport)(nil)
	_ reverseproxy.BufferedTransport                   = (*AuthTransport)(nil)
)
