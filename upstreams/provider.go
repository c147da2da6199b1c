// Package upstreams holds llm_route's providers: each one is a named
// reverse_proxy (loaded as a Caddy guest module) plus the knowledge of
// how that provider wants to be called (auth header, path shape).
package upstreams

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"go.uber.org/zap"

	"github.com/caddy-llm-route/llmroute/limits"
	"github.com/caddy-llm-route/llmroute/translate"
)

// Provider formats. A format decides the auth header and the path shape.
const (
	FormatOpenAI    = "openai"
	FormatAnthropic = "anthropic"
	FormatAzure     = "azure"
)

// Default protocol versions sent when the provider sets none.
const (
	DefaultAnthropicVersion = "2023-06-01"
	DefaultAzureAPIVersion  = "2024-10-21"
)

// clientCredentialHeaders are the request headers that carry a client's
// own credentials. They are removed from every upstream request unless
// the provider sets forward_client_auth.
var clientCredentialHeaders = []string{
	"Authorization", "X-Api-Key", "Api-Key", "X-Goog-Api-Key", "Cookie",
}

// forwardedHeaders are the client's request headers an upstream request
// keeps, by provider format ("" for every format): what the API needs to
// read the body and answer in kind, its version and beta flags, and the
// trace context. The others are dropped unless the handler's
// forward_headers names them, so that a client cannot choose, for
// instance, which organization or project the operator's key bills
// (OpenAI-Organization, OpenAI-Project).
// (Accept-Encoding is left to the transport, so that it can decompress
// the answer and the gateway read it.)
var forwardedHeaders = map[string][]string{
	"":              {"Accept", "Content-Type", "User-Agent", "Traceparent", "Tracestate"},
	FormatOpenAI:    {"Openai-Beta"},
	FormatAzure:     {"Openai-Beta"},
	FormatAnthropic: {"Anthropic-Version", "Anthropic-Beta"},
}

// forwardedQuery are the query parameters of the client's request an
// upstream request keeps, by provider format: Anthropic's SDKs mark beta
// calls with ?beta=true. Any other (a client's ?key=, say) is dropped.
var forwardedQuery = map[string][]string{
	FormatAnthropic: {"beta"},
}

// CredentialHeader reports whether a header (canonical name) carries a
// client's own credentials: such a header reaches only providers that
// set forward_client_auth.
func CredentialHeader(name string) bool { return slices.Contains(clientCredentialHeaders, name) }

// Provider is one LLM API endpoint: a name, a format, a credential and a
// reverse_proxy that reaches one or more upstream addresses of it.
type Provider struct {
	// The name models and routes refer to. Required, unique.
	Name string `json:"name"`

	// The API format: `openai` (default; Bearer auth, `/v1/...` paths),
	// `anthropic` (`x-api-key` and `anthropic-version` headers) or
	// `azure` (`api-key` header, `/openai/deployments/<deployment>/...`
	// paths and an `api-version` query parameter).
	Format string `json:"format,omitempty"`

	// The credential, normally a runtime placeholder such as
	// `{env.OPENAI_API_KEY}` so that the key itself never appears in the
	// config. It is added to upstream requests below the reverse proxy's
	// request logging, so it never shows in logs.
	APIKey string `json:"api_key,omitempty"`

	// The path prefix of the API on the upstream. Defaults to `/v1` for
	// openai and anthropic, and `/openai` for azure.
	BasePath string `json:"base_path,omitempty"`

	// The protocol version: the `anthropic-version` header for anthropic
	// (default 2023-06-01), the `api-version` query parameter for azure
	// (default 2024-10-21).
	APIVersion string `json:"api_version,omitempty"`

	// Extra headers set on every upstream request. Values may hold
	// placeholders.
	Headers http.Header `json:"headers,omitempty"`

	// Send the client's own credential headers (Authorization,
	// x-api-key, api-key, x-goog-api-key, Cookie) upstream. By default
	// they are stripped. When the provider has an api_key, its key still
	// replaces the client's in the format's auth header.
	ForwardClientAuth bool `json:"forward_client_auth,omitempty"`

	// The output token limit sent when a request translated to the
	// anthropic format (which requires one) carries none. Default 4096.
	DefaultMaxTokens int `json:"default_max_tokens,omitempty"`

	// The field that carries the output token limit of a request
	// translated to the openai or azure format: `max_tokens` (default;
	// read by every OpenAI-compatible server) or `max_completion_tokens`
	// (required by OpenAI's reasoning models).
	MaxTokensField string `json:"max_tokens_field,omitempty"`

	// The identity under which the live state of the provider's models
	// (cooldowns, stats) is kept across config reloads. By default it
	// is derived from the name, the format, the base path, the upstream
	// addresses and the api_key as written (its placeholder, not the
	// key): a reload that keeps those keeps the state, while a provider
	// of the same name elsewhere (another site, another account) gets
	// state of its own. Set it to keep the state across a change of
	// address or key, or to share it between providers on purpose.
	StateKey string `json:"state_key,omitempty"`

	// Ask for the usage chunk of OpenAI-format streams
	// (`stream_options.include_usage`) when the client did not, so that
	// usage is counted; that client never sees the chunk. Default: on;
	// turn it off for a server that refuses the field.
	StreamUsage *bool `json:"stream_usage,omitempty"`

	// `auto`: fetch the provider's model list (GET <base_path>/models)
	// at provision and every models_refresh, and register the models it
	// lists (see discovery in the README). Not for azure.
	Models string `json:"models,omitempty"`

	// How often a discovered model list is fetched again. Default: 10m.
	ModelsRefresh caddy.Duration `json:"models_refresh,omitempty"`

	// How long one fetch of the model list may take; provisioning waits
	// at most this long on a provider that does not answer. Default: 5s.
	ModelsTimeout caddy.Duration `json:"models_timeout,omitempty"`
	// How the provider continues an answer another provider's stream
	// broke off (mid-stream rescue): `prefill` (default) sends the text
	// already sent as a trailing assistant turn (Anthropic, and OpenAI-
	// compatible servers that continue a final assistant message),
	// `continue_final_message` adds vLLM's switch for it,
	// `instruction` adds a user turn asking to continue, and `off`
	// never asks this provider to continue an answer.
	Continuation string `json:"continuation,omitempty"`

	// The provider's own limits (an account's rpm, tpm, daily limits),
	// over all its models.
	limits.Limits

	// The reverse_proxy handler that carries this provider's traffic:
	// upstreams, load balancing, health checks, transport and timeouts.
	// Its `handler` must be `reverse_proxy`: the field sits in the
	// http.handlers namespace for the shape of its JSON, but no other
	// handler module is accepted.
	ProxyRaw json.RawMessage `json:"proxy,omitempty" caddy:"namespace=http.handlers inline_key=handler"`

	proxy    *reverseproxy.Handler
	stateKey string
}

// Provision loads the provider's reverse proxy and wraps its transport so
// that credentials are injected at round-trip time.
func (p *Provider) Provision(ctx caddy.Context) error {
	if p.Format == "" {
		p.Format = FormatOpenAI
	}
	if p.BasePath == "" {
		p.BasePath = "/v1"
		if p.Format == FormatAzure {
			p.BasePath = "/openai"
		}
	}
	p.BasePath = strings.TrimSuffix(p.BasePath, "/")
	if p.APIVersion == "" {
		switch p.Format {
		case FormatAnthropic:
			p.APIVersion = DefaultAnthropicVersion
		case FormatAzure:
			p.APIVersion = DefaultAzureAPIVersion
		}
	}
	if p.ProxyRaw == nil {
		return fmt.Errorf("provider %s: no proxy configured", p.Name)
	}
	if p.APIKey != "" && !strings.Contains(p.APIKey, "{") {
		ctx.Logger().Warn("provider api_key is a literal key and shows in the config; use a runtime placeholder such as {env.OPENAI_API_KEY}",
			zap.String("provider", p.Name))
	} else if p.APIKey != "" && caddy.NewReplacer().ReplaceKnown(p.APIKey, "") == "" {
		// (placeholders of the request, unknown here, stay and do not warn)
		ctx.Logger().Warn("provider api_key resolves to an empty value: requests go without a credential (is what the placeholder names, an environment variable or a file, set?)",
			zap.String("provider", p.Name))
	}
	// The proxy's transport is wrapped, in the config the proxy is
	// loaded from, by the auth transport: it is in place before the
	// proxy (and its active health checker) starts.
	rp, err := p.decodeProxy()
	if err != nil {
		return fmt.Errorf("provider %s: %v", p.Name, err)
	}
	if addr := plainRemote(rp); addr != "" && p.APIKey != "" {
		ctx.Logger().Warn("provider api_key goes over plain HTTP to a remote host: write the upstream as https://… if the API is served over TLS (an upstream without a scheme is http://, port 80)",
			zap.String("provider", p.Name), zap.String("upstream", addr))
	}
	p.stateKey = p.identity(rp)
	rp.TransportRaw, err = ModuleJSON(&AuthTransport{
		Format: p.Format, APIKey: p.APIKey, Headers: p.Headers, TransportRaw: rp.TransportRaw,
	}, "protocol", "llm_auth")
	if err != nil {
		return fmt.Errorf("provider %s: %v", p.Name, err)
	}
	p.ProxyRaw, err = ModuleJSON(rp, "handler", "reverse_proxy")
	if err != nil {
		return fmt.Errorf("provider %s: %v", p.Name, err)
	}
	mod, err := ctx.LoadModule(p, "ProxyRaw")
	if err != nil {
		return fmt.Errorf("provider %s: loading proxy: %v", p.Name, err)
	}
	p.proxy = mod.(*reverseproxy.Handler)
	return nil
}

// decodeProxy reads the reverse proxy's config strictly and applies the
// provider's defaults: requests carry the provider's own host name (never
// the client's), and active health checks authenticate like requests do
// (the key stays a placeholder, resolved by the health checker at check
// time).
func (p *Provider) decodeProxy() (*reverseproxy.Handler, error) {
	if h := gjson.GetBytes(p.ProxyRaw, "handler").Str; h != "reverse_proxy" {
		return nil, fmt.Errorf("proxy must be a reverse_proxy handler, got %q", h)
	}
	raw, err := sjson.DeleteBytes(p.ProxyRaw, "handler")
	if err != nil {
		return nil, err
	}
	rp := new(reverseproxy.Handler)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(rp); err != nil {
		return nil, fmt.Errorf("proxy: %v", err)
	}
	if rp.Headers == nil {
		rp.Headers = new(headers.Handler)
	}
	if rp.Headers.Request == nil {
		rp.Headers.Request = new(headers.HeaderOps)
	}
	if rp.Headers.Request.Set.Get("Host") == "" {
		if rp.Headers.Request.Set == nil {
			rp.Headers.Request.Set = make(http.Header)
		}
		rp.Headers.Request.Set.Set("Host", "{http.reverse_proxy.upstream.hostport}")
	}
	if hc := rp.HealthChecks; hc != nil && hc.Active != nil && p.APIKey != "" {
		name, value := authHeader(p.Format, p.APIKey)
		if hc.Active.Headers.Get(name) == "" {
			if hc.Active.Headers == nil {
				hc.Active.Headers = make(http.Header)
			}
			hc.Active.Headers.Set(name, value)
			if p.Format == FormatAnthropic {
				hc.Active.Headers.Set("anthropic-version", p.APIVersion)
			}
		}
	}
	return rp, nil
}

// plainRemote returns an upstream that the proxy reaches over plain HTTP
// and that looks remote: a host name with a dot, or a public IP address.
// Loopback, private addresses and single-label names (a container's
// service name) are taken for a network of the operator's own.
func plainRemote(rp *reverseproxy.Handler) string {
	if gjson.GetBytes(rp.TransportRaw, "tls").Exists() {
		return ""
	}
	for _, u := range rp.Upstreams {
		if strings.Contains(u.Dial, "{") || strings.HasPrefix(u.Dial, "unix/") {
			continue
		}
		host, _, err := net.SplitHostPort(u.Dial)
		if err != nil {
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			if !ip.IsLoopback() && !ip.IsPrivate() && !ip.IsLinkLocalUnicast() && !ip.IsUnspecified() {
				return u.Dial
			}
			continue
		}
		if strings.Contains(strings.TrimSuffix(host, "."), ".") && !strings.HasSuffix(host, ".localhost") && !strings.HasSuffix(host, ".internal") && !strings.HasSuffix(host, ".local") {
			return u.Dial
		}
	}
	return ""
}

// identity is the provider's state key: the explicit state_key, or a
// digest of what makes the provider a different account or endpoint.
func (p *Provider) identity(rp *reverseproxy.Handler) string {
	if p.StateKey != "" {
		return "=" + p.StateKey
	}
	h := sha256.New()
	for _, s := range []string{p.Name, p.Format, p.BasePath, p.APIKey, string(rp.DynamicUpstreamsRaw)} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	for _, u := range rp.Upstreams {
		fmt.Fprintf(h, "%d:%s;", len(u.Dial), u.Dial)
	}
	return p.Name + "#" + hex.EncodeToString(h.Sum(nil)[:12])
}

// Validate checks the provider's configuration: its values, which
// UnmarshalCaddyfile leaves to it.
func (p *Provider) Validate() error {
	if p.Name == "" {
		return fmt.Errorf("provider without a name")
	}
	for _, d := range []struct {
		name string
		v    caddy.Duration
	}{{"models_refresh", p.ModelsRefresh}, {"models_timeout", p.ModelsTimeout}} {
		if err := ValidDuration(d.name, d.v); err != nil {
			return fmt.Errorf("provider %s: %v", p.Name, err)
		}
	}
	if err := p.Limits.Validate(); err != nil {
		return fmt.Errorf("provider %s: %v", p.Name, err)
	}
	if strings.ContainsAny(p.Name, "/ \t") {
		return fmt.Errorf("provider %s: name must not contain '/' or spaces", p.Name)
	}
	switch p.Format {
	case FormatOpenAI, FormatAnthropic, FormatAzure:
	default:
		return fmt.Errorf("provider %s: unknown format %q (want openai, anthropic or azure)", p.Name, p.Format)
	}
	if p.DefaultMaxTokens < 0 {
		return fmt.Errorf("provider %s: default_max_tokens must not be negative", p.Name)
	}
	switch p.Continuation {
	case "", ContinuePrefill, ContinueFinalMessage, ContinueInstruction, ContinueOff:
	default:
		return fmt.Errorf("provider %s: continuation must be prefill, continue_final_message, instruction or off, not %q", p.Name, p.Continuation)
	}
	if p.Continuation == ContinueFinalMessage && p.Format == FormatAnthropic {
		return fmt.Errorf("provider %s: continuation continue_final_message is for OpenAI-compatible servers; anthropic providers continue a prefill", p.Name)
	}
	if p.proxy != nil {
		for _, u := range p.proxy.Upstreams {
			if strings.Contains(u.Dial, "{") {
				continue // a placeholder, resolved per request
			}
			// "network/host:port": a "network" that looks like a host
			// name is one whose path follows it (api.openai.com/v1:80)
			if network, _, ok := strings.Cut(u.Dial, "/"); ok && (strings.ContainsAny(network, ".:") || network == "localhost") {
				return fmt.Errorf("provider %s: upstream dial address %q holds a path, which is no part of a host name: dial the host and port, and put the path in base_path", p.Name, u.Dial)
			}
		}
	}
	switch p.MaxTokensField {
	case "", "max_tokens", "max_completion_tokens":
	default:
		return fmt.Errorf("provider %s: max_tokens_field must be max_tokens or max_completion_tokens, not %q", p.Name, p.MaxTokensField)
	}
	if p.BasePath != "" && !strings.HasPrefix(p.BasePath, "/") {
		return fmt.Errorf("provider %s: base_path must start with '/'", p.Name)
	}
	if err := p.validDiscovery(); err != nil {
		return err
	}
	// (The proxy is loaded by Provision, which fails without one.)
	if p.proxy != nil && len(p.proxy.Upstreams) == 0 && p.proxy.DynamicUpstreams == nil {
		return fmt.Errorf("provider %s: no upstream address", p.Name)
	}
	return nil
}

// The ways of continuing an answer (see Continuation).
const (
	ContinuePrefill      = "prefill"
	ContinueFinalMessage = "continue_final_message"
	ContinueInstruction  = "instruction"
	ContinueOff          = "off"
)

// ContinuationMethod returns how the provider continues an answer.
func (p *Provider) ContinuationMethod() string {
	if p.Continuation == "" {
		return ContinuePrefill
	}
	return p.Continuation
}

// StreamUsageOn reports whether the gateway asks the provider's streams
// for their usage (see StreamUsage).
func (p *Provider) StreamUsageOn() bool { return p.StreamUsage == nil || *p.StreamUsage }

// Identity returns the provider's identity (see state_key), under which
// its live state and its limits are kept.
func (p *Provider) Identity() string { return p.stateKey }

// Proxy returns the provider's provisioned reverse proxy.
func (p *Provider) Proxy() *reverseproxy.Handler { return p.proxy }

// API names the wire format the provider speaks, in translate's terms.
func (p *Provider) API() string {
	if p.Format == FormatAnthropic {
		return translate.Anthropic
	}
	return translate.OpenAI
}

// Serves reports whether the provider can answer requests to an
// endpoint: natively (anthropic providers serve `/messages` and
// `/messages/...`, such as count_tokens; openai and azure providers
// everything else), through a translation (chat completions ⇄
// messages), or, for count_tokens, by the gateway's own estimate.
func (p *Provider) Serves(endpoint string) bool {
	return p.native(endpoint) || p.Translation(endpoint) != nil || endpoint == "/messages/count_tokens"
}

func (p *Provider) native(endpoint string) bool {
	return translate.IsMessages(endpoint) == (p.Format == FormatAnthropic)
}

// Translation returns the pair that translates requests to an endpoint
// for this provider, or nil when the provider serves them natively or
// not at all.
func (p *Provider) Translation(endpoint string) translate.Pair {
	if p.native(endpoint) {
		return nil
	}
	return translate.Lookup(translate.ClientAPI(endpoint), p.API())
}

// Available reports whether at least one of the provider's static
// upstreams is currently available according to reverse_proxy's own
// health checks. Providers with dynamic upstreams are always available.
func (p *Provider) Available() bool {
	if p.proxy == nil || p.proxy.DynamicUpstreams != nil || len(p.proxy.Upstreams) == 0 {
		return true
	}
	for _, u := range p.proxy.Upstreams {
		if u.Available() {
			return true
		}
	}
	return false
}

// PrepareRequest shapes an upstream request for this provider: the path
// (base path + endpoint, or the Azure deployment path), the query (what
// the format needs, see forwardedQuery, and Azure's api-version), the format's
// protocol headers and the extra headers. Of the client's headers it
// keeps those the format needs (see forwardedHeaders), those named in
// forward (canonical names), and its credentials if forward_client_auth
// is set. Credentials of the provider itself are added later, by the
// transport.
//
// upstreamModel is the registry's upstream name for the model; it is
// operator configuration, never client input.
func (p *Provider) PrepareRequest(r *http.Request, endpoint, upstreamModel string, forward []string) {
	for name := range r.Header {
		if !slices.Contains(forwardedHeaders[""], name) && !slices.Contains(forwardedHeaders[p.Format], name) &&
			!slices.Contains(forward, name) && !(p.ForwardClientAuth && CredentialHeader(name)) {
			delete(r.Header, name)
		}
	}
	query := make(url.Values)
	if r.URL.RawQuery != "" {
		for name, vals := range r.URL.Query() {
			if slices.Contains(forwardedQuery[p.Format], name) {
				query[name] = vals
			}
		}
	}

	switch p.Format {
	case FormatAzure:
		r.URL.Path = p.BasePath + "/deployments/" + upstreamModel + endpoint
		query.Set("api-version", p.APIVersion)
	case FormatAnthropic:
		r.URL.Path = p.BasePath + endpoint
		if r.Header.Get("anthropic-version") == "" {
			r.Header.Set("anthropic-version", p.APIVersion)
		}
	default:
		r.URL.Path = p.BasePath + endpoint
	}
	r.URL.RawPath = ""
	r.URL.RawQuery = query.Encode()
	r.RequestURI = ""
}

// ProviderDirectives are the subdirectives of a provider block that
// llm_route reads itself (limits aside); every other one belongs to
// reverse_proxy.
var ProviderDirectives = []string{"format", "api_key", "base_path", "api_version",
	"header", "forward_client_auth", "default_max_tokens", "max_tokens_field", "state_key",
	"stream_usage", "models", "models_refresh", "models_timeout", "continuation"}

// UnmarshalCaddyfile sets up the provider from Caddyfile tokens. The
// dispenser must be positioned on the `provider` token. Syntax:
//
//	provider <name> [<upstream URLs...>] {
//		format openai|anthropic|azure
//		api_key <key placeholder>
//		base_path <path>
//		api_version <version>
//		header <field> <value>
//		forward_client_auth
//		default_max_tokens <n>
//		max_tokens_field max_tokens|max_completion_tokens
//		state_key <key>
//		stream_usage on|off
//		models auto                 # discover the provider's models
//		models_refresh <duration>
//		models_timeout <duration>
//		rpm|tpm|max_concurrent|daily_requests|daily_tokens <n>
//		budget <USD> day|month
//		# any reverse_proxy subdirective: to, lb_policy, health_uri,
//		# transport http { ... }, fail_duration, ...
//	}
//
// A path in the upstream URLs becomes the base path; all upstream URLs of
// a provider must share it.
// checkUpstreamURL refuses what reverse_proxy would accept and get wrong
// in an upstream URL: credentials, which it drops (the upstream then
// gets none), and a path without a scheme, which it takes for part of
// the host name (api.openai.com/v1 would dial "api.openai.com/v1:80").
func checkUpstreamURL(s string) error {
	if strings.Contains(s, "{") {
		return nil // a placeholder, resolved later
	}
	if !strings.Contains(s, "://") {
		if host, path, ok := strings.Cut(s, "/"); ok && host != "unix" && host != "" {
			return fmt.Errorf("upstream %q has a path but no scheme: write https://%s/%s (or http://)", s, host, path)
		}
		return nil
	}
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return fmt.Errorf("upstream %q has credentials in its URL, which reverse_proxy would drop: use api_key, or header Authorization", u.Redacted())
	}
	return nil
}

func (p *Provider) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	// Collect the provider's segment so that URL tokens can be adjusted
	// and our own subdirectives removed before reverse_proxy reads it.
	seg := d.NewFromNextSegment()
	var toks []caddyfile.Token
	for seg.Next() {
		toks = append(toks, seg.Token())
	}
	if len(toks) < 2 || toks[1].Line != toks[0].Line || toks[1].Text == "{" {
		return d.Errf("provider needs a name")
	}
	p.Name = toks[1].Text
	for i := 2; i < len(toks) && toks[i].Line == toks[0].Line && toks[i].Text != "{"; i++ {
		if err := checkUpstreamURL(toks[i].Text); err != nil {
			return d.Errf("provider %s: %v", p.Name, err)
		}
		u, err := url.Parse(toks[i].Text)
		if err != nil || u.Host == "" {
			continue // let reverse_proxy parse and report it
		}
		path := strings.TrimSuffix(u.Path, "/")
		if path != "" {
			if p.BasePath != "" && p.BasePath != path {
				return d.Errf("provider %s: upstream URLs have different paths %q and %q", p.Name, p.BasePath, path)
			}
			p.BasePath = path
		}
		u.Path, u.RawPath = "", ""
		toks[i].Text = u.String()
	}

	urlPath := p.BasePath
	pd := caddyfile.NewDispenser(toks)
	pd.Next() // provider
	pd.Next() // name
	pd.DeleteN(1)
	pd.RemainingArgs()
	for nesting := pd.Nesting(); pd.NextBlock(nesting); {
		if pd.Nesting() != 1 || !slices.Contains(ProviderDirectives, pd.Val()) && !limits.Directives[pd.Val()] {
			if pd.Val() == "handle_response" {
				return pd.Errf("provider %s: handle_response is not supported in a provider block", p.Name)
			}
			if pd.Nesting() == 1 {
				pd.RemainingArgs() // a reverse_proxy subdirective's arguments
			}
			continue
		}
		dir := pd.Val()
		args := pd.RemainingArgs()
		if pd.NextBlock(pd.Nesting()) {
			return pd.Errf("provider %s: %s takes no block", p.Name, dir)
		}
		if limits.Directives[dir] {
			if err := p.Limits.Set(dir, args); err != nil {
				return pd.Errf("provider %s: %v", p.Name, err)
			}
			pd.DeleteN(len(args) + 1)
			continue
		}
		switch dir {
		case "forward_client_auth":
			if len(args) != 0 {
				return pd.ArgErr()
			}
			p.ForwardClientAuth = true
		case "header":
			if len(args) != 2 {
				return pd.Errf("provider %s: header needs a field and a value", p.Name)
			}
			if p.Headers == nil {
				p.Headers = make(http.Header)
			}
			p.Headers.Add(args[0], args[1])
		default:
			if len(args) != 1 {
				return pd.Errf("provider %s: %s needs exactly one argument", p.Name, dir)
			}
			switch dir {
			case "format":
				p.Format = args[0]
			case "api_key":
				p.APIKey = args[0]
			case "base_path":
				if urlPath != "" && strings.TrimSuffix(args[0], "/") != urlPath {
					return pd.Errf("provider %s: base_path %s and the upstream URL's path %s differ; keep one", p.Name, args[0], urlPath)
				}
				p.BasePath = args[0]
			case "api_version":
				p.APIVersion = args[0]
			case "state_key":
				p.StateKey = args[0]
			case "stream_usage":
				if args[0] != "on" && args[0] != "off" {
					return pd.Errf("provider %s: stream_usage is on or off, not %q", p.Name, args[0])
				}
				on := args[0] == "on"
				p.StreamUsage = &on
			case "default_max_tokens":
				n, err := strconv.Atoi(args[0])
				if err != nil {
					return pd.Errf("provider %s: default_max_tokens must be an integer, not %q", p.Name, args[0])
				}
				if n == 0 {
					// JSON reads 0 as "not set", the default.
					return pd.Errf("provider %s: default_max_tokens 0 is not allowed (leave it out for the default)", p.Name)
				}
				p.DefaultMaxTokens = n
			case "max_tokens_field":
				p.MaxTokensField = args[0]
			case "models":
				p.Models = args[0]
			case "models_refresh", "models_timeout":
				dur, err := caddy.ParseDuration(args[0])
				if err != nil {
					return pd.Errf("provider %s: invalid %s %q", p.Name, dir, args[0])
				}
				if dur == 0 {
					// JSON reads 0 as "not set", the default.
					return pd.Errf("provider %s: %s 0 is not allowed (leave it out for the default)", p.Name, dir)
				}
				if dir == "models_refresh" {
					p.ModelsRefresh = caddy.Duration(dur)
				} else {
					p.ModelsTimeout = caddy.Duration(dur)
				}
			case "continuation":
				p.Continuation = args[0]
			}
		}
		pd.DeleteN(len(args) + 1)
	}

	pd.Reset()
	rp := new(reverseproxy.Handler)
	if err := rp.UnmarshalCaddyfile(pd); err != nil {
		return fmt.Errorf("provider %s: %w", p.Name, err)
	}
	raw, err := ModuleJSON(rp, "handler", "reverse_proxy")
	if err != nil {
		return fmt.Errorf("provider %s: %w", p.Name, err)
	}
	p.ProxyRaw = raw
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Provider)(nil)
	_ caddy.Validator       = (*Provider)(nil)
	_ caddyfile.Unmarshaler = (*Provider)(nil)
)

// ValidDuration refuses a duration under a millisecond, which none of
// llm_route's settings can mean: in JSON a bare number is nanoseconds,
// so "cooldown": 30 meant for seconds would be 30ns (a first_byte_timeout
// of 30ns fails every request, a models_refresh of 300ns fetches without
// a pause). 0 is the default and passes.
func ValidDuration(name string, d caddy.Duration) error {
	if d > 0 && time.Duration(d) < time.Millisecond {
		return fmt.Errorf("%s: %v is less than a millisecond; a JSON number is in nanoseconds: write a duration string such as \"30s\"", name, time.Duration(d))
	}
	return nil
}
