package mock

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	llm_mock [<matcher>] {
//	    name               <name>
//	    model              <model>
//	    models             <ids...>
//	    latency            <duration>
//	    ttft               <duration>
//	    ttft_tail          <share> [<factor>]
//	    tokens_per_second  <rate>
//	    text               <text...>
//	    api_key            <key>
//	    cached_tokens      <n>
//	    cache_write_tokens <n>
//	    fault_header       <field>
//	    prefill            continue|ignore|refuse
//	    fault              <kind>[,<key>=<value>...]
//	    reply              <match> <text...>
//	    refuse             <match> <text...>
//	}
//
// The fault subdirective may be repeated; each takes one fault spec
// without spaces, such as status,code=503,count=2. reply and refuse
// may be repeated: each scripts the answer (refuse: a refusal) to the
// requests whose text contains match, the first match winning.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}

	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "name":
			if !d.AllArgs(&h.Name) {
				return d.ArgErr()
			}
		case "model":
			if !d.AllArgs(&h.Model) {
				return d.ArgErr()
			}
		case "models":
			ids := d.RemainingArgs()
			if len(ids) == 0 {
				return d.ArgErr()
			}
			h.Models = append(h.Models, ids...)
		case "latency":
			dur, err := parseDurationArg(d)
			if err != nil {
				return err
			}
			h.Latency = dur
		case "ttft":
			dur, err := parseDurationArg(d)
			if err != nil {
				return err
			}
			h.TTFT = dur
		case "ttft_tail":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			v, err := strconv.ParseFloat(args[0], 64)
			if err != nil {
				return d.Errf("bad ttft_tail share '%s'", args[0])
			}
			h.TTFTTail = v
			if len(args) == 2 {
				if h.TTFTTailFactor, err = strconv.ParseFloat(args[1], 64); err != nil {
					return d.Errf("bad ttft_tail factor '%s'", args[1])
				}
			}
		case "tokens_per_second":
			var val string
			if !d.AllArgs(&val) {
				return d.ArgErr()
			}
			rate, err := strconv.ParseFloat(val, 64)
			if err != nil || rate < 0 {
				return d.Errf("bad tokens_per_second value '%s': must be a number, at least 0", val)
			}
			h.TokensPerSecond = rate
		case "text":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Text = strings.Join(args, " ")
		case "api_key":
			if !d.AllArgs(&h.APIKey) {
				return d.ArgErr()
			}
		case "cached_tokens", "cache_write_tokens":
			subdir := d.Val()
			var val string
			if !d.AllArgs(&val) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return d.Errf("bad %s value '%s': must be an integer, at least 0", subdir, val)
			}
			if subdir == "cached_tokens" {
				h.CachedTokens = n
			} else {
				h.CacheWriteTokens = n
			}
		case "prefill":
			if !d.AllArgs(&h.Prefill) {
				return d.ArgErr()
			}
		case "fault_header":
			if !d.AllArgs(&h.FaultHeader) {
				return d.ArgErr()
			}
		case "fault":
			var spec string
			if !d.AllArgs(&spec) {
				return d.Errf("fault takes a single spec without spaces, such as status,code=503,count=2")
			}
			if _, err := parseConfigFault(spec); err != nil {
				return d.Errf("invalid fault '%s': %v", spec, err)
			}
			h.Faults = append(h.Faults, spec)
		case "reply", "refuse":
			refusal := d.Val() == "refuse"
			args := d.RemainingArgs()
			if len(args) < 2 || args[0] == "" {
				return d.ArgErr()
			}
			h.Replies = append(h.Replies, Reply{Match: args[0], Text: strings.Join(args[1:], " "), Refusal: refusal})
		default:
			return d.Errf("unrecognized subdirective: %s", d.Val())
		}
	}
	return nil
}

// parseDurationArg parses the single duration argument of the
// current subdirective.
func parseDurationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	subdir := d.Val()
	var val string
	if !d.AllArgs(&val) {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(val)
	if err != nil {
		return 0, d.Errf("bad %s value '%s': %v", subdir, val, err)
	}
	if dur < 0 {
		return 0, d.Errf("%s must not be negative", subdir)
	}
	return caddy.Duration(dur), nil
}
