package llmroute

import (
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-llm-route/llmroute/limits"
	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// This file makes "unrecognized subdirective" errors of the llm_route
// Caddyfile say what to do: a subdirective written at the wrong nesting
// level (cooldown inside a provider, price at the top) is named with the
// block it belongs in, and a misspelled one with the name it is likely
// to be.

// blockDirectives are the subdirectives each block of llm_route reads
// itself (limits aside: see limits.Directives, read by provider, model,
// route and key alike). A provider block passes the names it does not
// read to reverse_proxy.
var blockDirectives = map[string][]string{
	"llm_route": {"name", "list_models", "model_key", "client_models", "strategy_header",
		"model_to_header", "provider_header", "forward_headers", "enable_on_path_suffix",
		"max_body", "max_depth", "first_byte_timeout", "stream_idle_timeout",
		"read_body_timeout", "retry_on", "max_attempts", "retries", "max_retry_wait",
		"fallback_on", "rescue", "cooldown", "fail_threshold", "probe_interval", "ramp",
		"reset_tz", "state", "decision_log", "feedback_path", "key", "provider", "model", "route"},
	"provider": upstreams.ProviderDirectives,
	"model": {"provider", "upstream_name", "price", "quality", "context", "capabilities",
		"cache_price", "max_output"},
	"route": {"models", "target", "strategy", "fallback", "max_price", "retry_on", "rescue",
		"on_exhausted", "hedge"},
	"key": {"secret", "secret_file", "models"},
}

// hintBlocks is the order in which blocks are offered as the home of a
// misplaced subdirective.
var hintBlocks = []string{"llm_route", "provider", "model", "route", "key"}

// unrecognized is the error for an unknown subdirective dir in block
// (one of blockDirectives' keys); prefix names the block's instance
// ("model m: "), if any.
func unrecognized(d *caddyfile.Dispenser, block, prefix, dir string) error {
	return d.Errf("%sunrecognized subdirective: %s%s", prefix, dir, subdirectiveHint(block, dir))
}

// subdirectiveHint suggests where dir belongs, or what it may be a typo
// of; "" if nothing fits.
func subdirectiveHint(block, dir string) string {
	if limits.Directives[dir] {
		return fmt.Sprintf(" (%s is a limit: it belongs in a provider, model, route or key block)", dir)
	}
	var homes []string
	for _, b := range hintBlocks {
		if b != block && slices.Contains(blockDirectives[b], dir) {
			homes = append(homes, b)
		}
	}
	if len(homes) > 0 {
		where := make([]string, len(homes))
		for i, h := range homes {
			where[i] = "a " + h + " block"
			if h == "llm_route" {
				where[i] = "the llm_route block itself"
			}
		}
		return fmt.Sprintf(" (%s belongs in %s)", dir, strings.Join(where, " or "))
	}
	best, bestDist := "", 3 // at most two edits away
	for _, name := range blockDirectives[block] {
		if dist := editDistance(dir, name); dist < bestDist {
			best, bestDist = name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %s?)", best)
	}
	return ""
}

// misplacedInProvider returns an error for the first line of a provider
// block (seg, positioned before the provider's tokens) whose subdirective
// belongs to another llm_route block: reverse_proxy, which reads the
// names the provider does not, would only call it unrecognized.
func misplacedInProvider(seg *caddyfile.Dispenser) error {
	seg.Next()
	var name string
	if args := seg.RemainingArgs(); len(args) > 0 {
		name = args[0]
	}
	for nesting := seg.Nesting(); seg.NextBlock(nesting); {
		if seg.Nesting() != 1 {
			continue
		}
		dir := seg.Val()
		if !slices.Contains(blockDirectives["provider"], dir) {
			if hint := subdirectiveHint("provider", dir); strings.HasPrefix(hint, " ("+dir+" belongs") {
				return unrecognized(seg, "provider", "provider "+name+": ", dir)
			}
		}
		seg.RemainingArgs()
	}
	return nil
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// strategyOptionHint names the strategies that take the option a
// strategy block (seg: the strategy's name, arguments and block) has
// but the strategy refused as unrecognized: an option written for
// another strategy ("threshold" under cheapest). Each strategy's own
// parser is asked, so that no list of options is kept here.
func strategyOptionHint(name string, seg caddyfile.Segment) string {
	d := caddyfile.NewDispenser(seg)
	d.Next()
	d.RemainingArgs()
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Nesting() != 1 {
			continue
		}
		line := append([]string{d.Val()}, d.RemainingArgs()...)
		if strategyTakes(name, line) {
			continue
		}
		var others []string
		for _, mi := range caddy.GetModules(strategies.Namespace) {
			if other := mi.ID.Name(); other != name && strategyTakes(other, line) {
				others = append(others, other)
			}
		}
		if len(others) == 0 {
			return ""
		}
		return fmt.Sprintf(" (%s is an option of strategy %s)", line[0], strings.Join(others, ", "))
	}
	return ""
}

// strategyTakes reports whether the named strategy's Caddyfile parser
// knows the option line (its name and arguments) at the top of its block.
func strategyTakes(name string, line []string) bool {
	toks := []caddyfile.Token{{Text: name}, {Text: "{"}}
	for _, a := range line {
		toks = append(toks, caddyfile.Token{Text: a, Line: 1})
	}
	toks = append(toks, caddyfile.Token{Text: "}", Line: 2})
	d := caddyfile.NewDispenser(toks)
	d.Next()
	_, err := caddyfile.UnmarshalModule(d, strategies.Namespace+"."+name)
	return err == nil || !strings.Contains(err.Error(), "unrecognized")
}
