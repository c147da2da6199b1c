package llmroute

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("llm_route", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("llm_route", httpcaddyfile.Before, "reverse_proxy")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	llm_route [<matcher>] {
//		name <name>                   # in the admin API
//		list_models on|off            # GET .../models answers the gateway's list (default on)
//		model_key <gjson path>
//		client_models
//		strategy_header <field>
//		model_to_header <field>
//		provider_header <field>
//		forward_headers <fields...>   # client headers providers get besides their format's
//		enable_on_path_suffix <suffixes...> | *
//		max_body <size>
//		max_depth <levels>
//		first_byte_timeout <duration>
//		stream_idle_timeout <duration>
//		read_body_timeout <duration>
//		retry_on <statuses...>        # e.g. 429 5xx
//		max_attempts <n>
//		retries <n>                   # tries again on a 5xx or connect error, with backoff
//		max_retry_wait <duration>     # a 429 asking for at most this is retried after it
//		fallback_on content_filter    # move on after a content-policy refusal too
//		rescue on|off                 # continue a broken text stream on the next candidate
//		cooldown <duration>
//		fail_threshold <n>
//		probe_interval <duration>     # a probe goes through a cooldown this often
//		ramp <duration>               # traffic returns to a recovered pair over this long
//		reset_tz <IANA time zone>     # when daily and monthly limits reset
//		state memory | redis <url> [{ ... }]  # where limit counters, cooldowns and stats live
//		decision_log [{                # one record per request on http.handlers.llm_route.decisions
//			prompt_bytes <n>           # with up to n bytes of the last user message
//		}]
//		feedback_path <path>          # POST {"request_id","score","comment"} here
//
//		key <name> {                  # client keys; with any, every request needs one
//			secret <placeholder>
//			secret_file <path>
//			models <models or routes...>
//			<limits>
//		}
//
//		provider <name> [<upstream URLs...>] {
//			format openai|anthropic|azure
//			api_key <placeholder>
//			base_path <path>
//			api_version <version>
//			header <field> <value>
//			forward_client_auth
//			default_max_tokens <n>
//			max_tokens_field max_tokens|max_completion_tokens
//			models auto                 # discover the provider's models
//			models_refresh <duration>
//			models_timeout <duration>
//			continuation prefill|continue_final_message|instruction|off
//			<any reverse_proxy subdirective>
//		}
//
//		model <name or pattern> [<providers...>] {  # a pattern (gpt-4o*) sets defaults for discovered models
//			provider <names...>
//			upstream_name <name>
//			price <input USD/1M> <output USD/1M>
//			quality <0..1>
//			context <tokens>
//			capabilities <names...>
//			cache_price <read USD/1M> <write USD/1M>
//			max_output <tokens>
//			<limits>
//		}
//
//		route <name> [<models...>] {
//			models <models...>
//			target <model> [<provider>] {
//				weight <n>
//				<body param path> <JSON value or string>
//			}
//			strategy <name> [{ ... }]
//			fallback <models...>
//			max_price <input> <output>
//			retry_on <statuses...>
//			rescue on|off
//			on_exhausted cheapest|next|<models...>
//			hedge <delay>|p95 [<min delay>] [budget <share>|<n>%]
//			<limits>
//		}
//	}
//
// <limits> are any of: rpm <n>, tpm <n>, max_concurrent <n>,
// daily_requests <n>, daily_tokens <n>, budget <USD> day|month; a
// provider block takes them too.
//
// A subdirective that takes a list (enable_on_path_suffix,
// forward_headers, retry_on, header, provider, capabilities, models,
// target, fallback) may be repeated; each occurrence adds to the list.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "client_models":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.ClientModels = true
		case "state":
			s, err := unmarshalState(d)
			if err != nil {
				return err
			}
			h.State = s
		case "reset_tz":
			if !d.Args(&h.ResetTZ) || d.NextArg() {
				return d.ArgErr()
			}
		case "feedback_path":
			if !d.Args(&h.FeedbackPath) || d.NextArg() {
				return d.ArgErr()
			}
		case "decision_log":
			dl, err := unmarshalDecisionLog(d)
			if err != nil {
				return err
			}
			h.DecisionLog = dl
		case "key":
			k, err := parseKey(d)
			if err != nil {
				return err
			}
			h.Keys = append(h.Keys, k)
		case "list_models":
			var v string
			if !d.Args(&v) || d.NextArg() || v != "on" && v != "off" {
				return d.Errf("list_models is on or off")
			}
			on := v == "on"
			h.ListModels = &on
		case "name", "model_key", "model_to_header", "provider_header", "strategy_header":
			dir := d.Val()
			var v string
			if !d.Args(&v) || d.NextArg() {
				return d.ArgErr()
			}
			switch dir {
			case "name":
				h.Name = v
			case "model_key":
				h.ModelKey = v
			case "model_to_header":
				h.ModelToHeader = v
			case "provider_header":
				h.ProviderHeader = v
			case "strategy_header":
				h.StrategyHeader = v
			}
		case "enable_on_path_suffix", "forward_headers":
			dir := d.Val()
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if dir == "forward_headers" {
				h.ForwardHeaders = append(h.ForwardHeaders, args...)
			} else {
				h.EnableOnPathSuffix = append(h.EnableOnPathSuffix, args...)
			}
		case "max_body":
			var v string
			if !d.Args(&v) || d.NextArg() {
				return d.ArgErr()
			}
			size, err := humanize.ParseBytes(v)
			if err != nil || size > math.MaxInt64 {
				return d.Errf("max_body: invalid size %q", v)
			}
			if size == 0 {
				return errZero(d, "max_body")
			}
			h.MaxBody = int64(size)
		case "max_depth", "max_attempts", "fail_threshold", "retries":
			dir := d.Val()
			n, err := intArg(d)
			if err != nil {
				return err
			}
			if n == 0 && (dir == "max_depth" || dir == "fail_threshold") {
				return errZero(d, dir)
			}
			switch dir {
			case "max_depth":
				h.MaxDepth = n
			case "max_attempts":
				h.MaxAttempts = n
			case "fail_threshold":
				h.FailThreshold = n
			case "retries":
				h.Retries = n
			}
		case "first_byte_timeout", "stream_idle_timeout", "read_body_timeout", "cooldown", "max_retry_wait", "probe_interval", "ramp":
			dir := d.Val()
			dur, err := durationArg(d)
			if err != nil {
				return err
			}
			switch dir {
			case "first_byte_timeout":
				h.FirstByteTimeout = dur
			case "stream_idle_timeout":
				h.StreamIdleTimeout = dur
			case "read_body_timeout":
				h.ReadBodyTimeout = dur
			case "cooldown":
				h.Cooldown = dur
			case "max_retry_wait":
				h.MaxRetryWait = dur
			case "probe_interval":
				h.ProbeInterval = dur
			case "ramp":
				h.Ramp = dur
			}
		case "retry_on":
			codes, err := statusArgs(d)
			if err != nil {
				return err
			}
			h.RetryOn = append(h.RetryOn, codes...)
		case "rescue":
			on, err := onOffArg(d)
			if err != nil {
				return err
			}
			h.Rescue = &on
		case "fallback_on":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.FallbackOn = append(h.FallbackOn, args...)
		case "provider":
			seg := d.NewFromNextSegment()
			if err := misplacedInProvider(seg); err != nil {
				return err
			}
			seg.Reset()
			seg.Next()
			p := new(upstreams.Provider)
			if err := p.UnmarshalCaddyfile(seg); err != nil {
				return err
			}
			h.Providers = append(h.Providers, p)
		case "model":
			m, err := parseModel(d)
			if err != nil {
				return err
			}
			h.Models = append(h.Models, m)
		case "route":
			r, err := parseRoute(d)
			if err != nil {
				return err
			}
			h.Routes = append(h.Routes, r)
		default:
			return unrecognized(d, "llm_route", "", d.Val())
		}
	}
	return nil
}

func parseModel(d *caddyfile.Dispenser) (*Model, error) {
	m := new(Model)
	if !d.NextArg() {
		return nil, d.Errf("model needs a name")
	}
	m.Name = d.Val()
	m.Providers = d.RemainingArgs()
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "provider":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			m.Providers = append(m.Providers, args...)
		case "upstream_name":
			if !d.Args(&m.UpstreamName) || d.NextArg() {
				return nil, d.ArgErr()
			}
		case "price":
			var in, out string
			if !d.Args(&in, &out) || d.NextArg() {
				return nil, d.Errf("model %s: price needs an input and an output price (USD per 1M tokens)", m.Name)
			}
			var ok1, ok2 bool
			m.InputPrice, ok1 = number(in)
			m.OutputPrice, ok2 = number(out)
			if !ok1 || !ok2 {
				return nil, d.Errf("model %s: invalid price %s %s", m.Name, in, out)
			}
		case "quality":
			var v string
			if !d.Args(&v) || d.NextArg() {
				return nil, d.ArgErr()
			}
			q, ok := number(v)
			if !ok {
				return nil, d.Errf("model %s: quality must be a number, got %q", m.Name, v)
			}
			m.Quality = q
		case "context":
			n, err := intArg(d)
			if err != nil {
				return nil, err
			}
			m.Context = n
		case "capabilities":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			m.Capabilities = append(m.Capabilities, args...)
		case "cache_price":
			var read, write string
			if !d.Args(&read, &write) || d.NextArg() {
				return nil, d.Errf("model %s: cache_price needs the price of cached tokens read and written (USD per 1M tokens)", m.Name)
			}
			r, ok1 := number(read)
			w, ok2 := number(write)
			if !ok1 || !ok2 {
				return nil, d.Errf("model %s: invalid cache_price %s %s", m.Name, read, write)
			}
			m.CacheReadPrice, m.CacheWritePrice = &r, &w
		case "max_output":
			var v string
			if !d.Args(&v) || d.NextArg() {
				return nil, d.ArgErr()
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, d.Errf("model %s: max_output: want an integer, got %q", m.Name, v)
			}
			m.MaxOutput = n
		default:
			if ok, err := m.Limits.UnmarshalLimit(d); ok {
				if err != nil {
					return nil, err
				}
				continue
			}
			return nil, unrecognized(d, "model", "model "+m.Name+": ", d.Val())
		}
	}
	return m, nil
}

func parseRoute(d *caddyfile.Dispenser) (*Route, error) {
	r := new(Route)
	if !d.NextArg() {
		return nil, d.Errf("route needs a name")
	}
	r.Name = d.Val()
	for _, m := range d.RemainingArgs() {
		r.Targets = append(r.Targets, &Target{Model: m})
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "target":
			t := new(Target)
			args := d.RemainingArgs()
			switch len(args) {
			case 1:
				t.Model = args[0]
			case 2:
				t.Model, t.Provider = args[0], args[1]
			default:
				return nil, d.Errf("route %s: target needs a model and optionally a provider", r.Name)
			}
			for tn := d.Nesting(); d.NextBlock(tn); {
				path := d.Val()
				var v string
				if !d.Args(&v) || d.NextArg() {
					return nil, d.Errf("route %s: target %s: parameter %s needs exactly one value", r.Name, t.Model, path)
				}
				if path == "weight" {
					w, ok := number(v)
					if !ok {
						return nil, d.Errf("route %s: target %s: invalid weight %q", r.Name, t.Model, v)
					}
					t.Weight = &w
					continue
				}
				if t.Params == nil {
					t.Params = make(map[string]json.RawMessage)
				}
				t.Params[path] = paramValue(v)
			}
			r.Targets = append(r.Targets, t)
		case "retry_on":
			codes, err := statusArgs(d)
			if err != nil {
				return nil, err
			}
			r.RetryOn = append(r.RetryOn, codes...)
		case "rescue":
			on, err := onOffArg(d)
			if err != nil {
				return nil, err
			}
			r.Rescue = &on
		case "models":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			for _, m := range args {
				r.Targets = append(r.Targets, &Target{Model: m})
			}
		case "fallback":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			r.Fallback = append(r.Fallback, args...)
		case "max_price":
			var in, out string
			if !d.Args(&in, &out) || d.NextArg() {
				return nil, d.Errf("route %s: max_price needs an input and an output price (USD per 1M tokens; 0 = no cap)", r.Name)
			}
			var ok1, ok2 bool
			r.MaxInputPrice, ok1 = number(in)
			r.MaxOutputPrice, ok2 = number(out)
			if !ok1 || !ok2 {
				return nil, d.Errf("route %s: invalid max_price %s %s", r.Name, in, out)
			}
		case "hedge":
			if r.Hedge != nil {
				return nil, d.Errf("route %s: hedge set twice", r.Name)
			}
			hg, err := parseHedge(d)
			if err != nil {
				return nil, err
			}
			r.Hedge = hg
		case "on_exhausted":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			r.OnExhausted = append(r.OnExhausted, args...)
		case "strategy":
			if r.StrategyRaw != nil {
				return nil, d.Errf("route %s: strategy set twice", r.Name)
			}
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			name := d.Val()
			seg := d.NextSegment()
			sd := caddyfile.NewDispenser(seg)
			sd.Next()
			mod, err := caddyfile.UnmarshalModule(sd, strategies.Namespace+"."+name)
			if err != nil {
				return nil, fmt.Errorf("route %s: strategy %s: %w%s", r.Name, name, err, strategyOptionHint(name, seg))
			}
			r.StrategyRaw, err = upstreams.ModuleJSON(mod, "name", name)
			if err != nil {
				return nil, fmt.Errorf("route %s: strategy %s: %w", r.Name, name, err)
			}
		default:
			if ok, err := r.Limits.UnmarshalLimit(d); ok {
				if err != nil {
					return nil, err
				}
				continue
			}
			return nil, unrecognized(d, "route", "route "+r.Name+": ", d.Val())
		}
	}
	return r, nil
}

// onOffArg reads the single on|off argument of a subdirective.
func onOffArg(d *caddyfile.Dispenser) (bool, error) {
	dir := d.Val()
	var v string
	if !d.Args(&v) || d.NextArg() {
		return false, d.ArgErr()
	}
	if v != "on" && v != "off" {
		return false, d.Errf("%s is on or off, not %q", dir, v)
	}
	return v == "on", nil
}

// parseKey reads a client key block. Syntax:
//
//	key <name> {
//		secret <placeholder>
//		secret_file <path>
//		models <models or routes...>
//		<limits: rpm, tpm, max_concurrent, daily_requests, daily_tokens, budget>
//	}
func parseKey(d *caddyfile.Dispenser) (*ClientKey, error) {
	k := new(ClientKey)
	if !d.Args(&k.Name) || d.NextArg() {
		return nil, d.Errf("key needs a name")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "secret":
			if !d.Args(&k.Secret) || d.NextArg() {
				return nil, d.ArgErr()
			}
		case "secret_file":
			if !d.Args(&k.SecretFile) || d.NextArg() {
				return nil, d.ArgErr()
			}
		case "models":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			k.Models = append(k.Models, args...)
		default:
			if ok, err := k.Limits.UnmarshalLimit(d); ok {
				if err != nil {
					return nil, err
				}
				continue
			}
			return nil, unrecognized(d, "key", "key "+k.Name+": ", d.Val())
		}
	}
	return k, nil
}

// paramValue reads a parameter value: JSON when it parses as JSON (a
// number, true, false, null, an object or array, a quoted string),
// otherwise a plain string.
func paramValue(v string) json.RawMessage {
	if json.Valid([]byte(v)) {
		return json.RawMessage(v)
	}
	b, _ := json.Marshal(v)
	return b
}

// The parsers check syntax: argument counts, known subdirectives, and
// that numbers, sizes and durations parse as such. Validate judges the
// values, for Caddyfile and JSON configs alike. The one exception is a 0
// that JSON would read as "not set": see errZero.

func intArg(d *caddyfile.Dispenser) (int, error) {
	dir := d.Val()
	var v string
	if !d.Args(&v) || d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, d.Errf("%s: want an integer, got %q", dir, v)
	}
	return n, nil
}

func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	dir := d.Val()
	var v string
	if !d.Args(&v) || d.NextArg() {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("%s: invalid duration %q", dir, v)
	}
	if dur == 0 {
		return 0, errZero(d, dir)
	}
	return caddy.Duration(dur), nil
}

// errZero refuses a 0 for a setting whose JSON field reads 0 as "not
// set": written down, it would silently mean the setting's default.
func errZero(d *caddyfile.Dispenser, dir string) error {
	return d.Errf("%s: 0 is not allowed (it would mean the default; leave %s out for that)", dir, dir)
}

// statusArgs reads status codes: three digits such as 429, or a class
// such as 5xx, which becomes its digit (the JSON notation). Validate
// checks the values.
func statusArgs(d *caddyfile.Dispenser) ([]int, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	var codes []int
	for _, a := range args {
		switch {
		case len(a) == 3 && strings.Trim(a, "0123456789") == "":
			n, _ := strconv.Atoi(a)
			codes = append(codes, n)
		case len(a) == 3 && a[0] >= '0' && a[0] <= '9' && strings.EqualFold(a[1:], "xx"):
			codes = append(codes, int(a[0]-'0'))
		default:
			return nil, d.Errf("retry_on: invalid status %q (want e.g. 429 or 5xx)", a)
		}
	}
	return codes, nil
}

// number parses a price, a quality or a weight: a finite number
// (ParseFloat also takes NaN and Inf, which JSON cannot carry).
func number(s string) (float64, bool) {
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil && !math.IsNaN(v) && !math.IsInf(v, 0)
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
