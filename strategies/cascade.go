package strategies

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/tidwall/gjson"
)

func init() {
	caddy.RegisterModule(Cascade{})
}

// Cascade is a strategy that asks the cheapest model first and escalates
// to the next tier when a check on its answer fails. A tier is one model
// (its providers are fallbacks within the tier); tiers go by the
// estimated cost of the request, as with cheapest. The handler makes the
// calls: each tier's answer is held, checked, and either returned or
// dropped for the next tier's, whose answer is returned unchecked when
// it is the last. Every call counts in the usage, the limits and the
// cost.
//
// The checks, in order: `empty` (no text and no tool call), `refusal`
// (an explicit refusal, a content filter, or text matching a refusal
// pattern), `length` (cut by the output cap), `short` (fewer than
// min_length characters), `json` (the request asked for JSON and the
// answer is not), `schema` (it asked for a JSON schema and the answer
// does not match it) and `judge` (the judge's score is under its
// threshold; asked only when the other checks pass).
//
// Streams are served as with cheapest (the first tier, falling back on
// errors only) unless `streams` is set: then the answers are held like
// any other, and the chosen one is sent as one stream.
type Cascade struct {
	// The output tokens assumed for the cost estimate; the client's
	// max_tokens lowers it. Default: 256.
	ExpectedOutput int `json:"expected_output,omitempty"`

	// Answers shorter than this many characters fail the `short` check.
	// Default: 0 (no check).
	MinLength int `json:"min_length,omitempty"`

	// Regular expressions an answer's text is refused by (the `refusal`
	// check). Default: DefaultRefusalPatterns.
	RefusalPatterns []string `json:"refusal_patterns,omitempty"`

	// A judge model scoring each answer but the last tier's.
	Judge *Judge `json:"judge,omitempty"`

	// Cascade stream requests too, holding each tier's answer.
	Streams bool `json:"streams,omitempty"`

	refusals []*regexp.Regexp
}

// DefaultRefusalPatterns match the usual openings of a refusal.
var DefaultRefusalPatterns = []string{
	`(?i)^\W*(i'm|i am) sorry,? but i (can't|cannot|can not|won't|am unable to|'m unable to)\b`,
	`(?i)^\W*i (can't|cannot|can not|won't|am unable to|'m unable to|am not able to) (help|assist|comply|do that|provide)`,
	`(?i)^\W*sorry,? (but )?i (can't|cannot|can not|won't)\b`,
}

// CaddyModule returns the Caddy module information.
func (Cascade) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".cascade",
		New: func() caddy.Module { return new(Cascade) },
	}
}

// Provision compiles the patterns.
func (c *Cascade) Provision(_ caddy.Context) error {
	if c.ExpectedOutput == 0 {
		c.ExpectedOutput = DefaultExpectedOutput
	}
	patterns := c.RefusalPatterns
	if len(patterns) == 0 {
		patterns = DefaultRefusalPatterns
	}
	c.refusals = make([]*regexp.Regexp, 0, len(patterns))
	for _, p := range patterns {
		if re, err := regexp.Compile(p); err == nil { // (Validate reports an error)
			c.refusals = append(c.refusals, re)
		}
	}
	if c.Judge != nil {
		c.Judge.Provision()
	}
	return nil
}

// Validate checks the values.
func (c *Cascade) Validate() error {
	if err := checkNotNegative("cascade: expected_output", c.ExpectedOutput); err != nil {
		return err
	}
	if err := checkNotNegative("cascade: min_length", c.MinLength); err != nil {
		return err
	}
	for _, p := range c.RefusalPatterns {
		if _, err := regexp.Compile(p); err != nil {
			return fmt.Errorf("cascade: refusal pattern %q: %v", p, err)
		}
	}
	if c.Judge != nil {
		return c.Judge.Validate()
	}
	return nil
}

// Select sorts cands by ascending estimated cost, unpriced last, then
// by descending quality, stable: the tiers in the order they are tried.
func (c Cascade) Select(req *Request, cands []Candidate) Decision {
	out := orDefault(c.ExpectedOutput, DefaultExpectedOutput)
	sortBy(cands, func(cand *Candidate) (float64, float64) {
		return costKey(req, cand, out), -knownQuality(cand)
	})
	return Decision{Reason: "cascade"}
}

// Check returns the checks a's answer to req fails (but the judge),
// in order; none when it passes.
func (c *Cascade) Check(req *Request, a Answer) []string {
	var failed []string
	text := strings.TrimSpace(a.Text)
	if text == "" && a.ToolCalls == "" && a.Refusal == "" {
		failed = append(failed, "empty")
	}
	if c.refused(a) {
		failed = append(failed, "refusal")
	}
	if a.Finish == "length" {
		failed = append(failed, "length")
	}
	if c.MinLength > 0 && a.ToolCalls == "" && len([]rune(text+a.Refusal)) < c.MinLength {
		failed = append(failed, "short")
	}
	if want, schema := RequestedJSON(req.Body); want && a.ToolCalls == "" {
		switch {
		case !gjson.Valid(text) || !strings.HasPrefix(text, "{") && !strings.HasPrefix(text, "["):
			failed = append(failed, "json")
		case schema.Exists():
			if err := MatchSchema(schema, gjson.Parse(text)); err != nil {
				failed = append(failed, "schema")
			}
		}
	}
	return failed
}

// refused reports whether a is a refusal.
func (c *Cascade) refused(a Answer) bool {
	if a.Refusal != "" || a.Finish == "refusal" || a.Finish == "content_filter" {
		return true
	}
	refusals := c.refusals
	if refusals == nil {
		refusals = defaultRefusals
	}
	for _, re := range refusals {
		if re.MatchString(a.Text) {
			return true
		}
	}
	return false
}

var defaultRefusals = func() []*regexp.Regexp {
	var res []*regexp.Regexp
	for _, p := range DefaultRefusalPatterns {
		res = append(res, regexp.MustCompile(p))
	}
	return res
}()

// RequestedJSON reports whether a request body asks for a JSON answer
// (response_format json_object or json_schema in chat completions,
// text.format in the Responses API, output_format or
// output_config.format in Messages), and the schema it asks for, if any.
func RequestedJSON(body []byte) (bool, gjson.Result) {
	for _, f := range []string{"response_format", "text.format", "output_format", "output_config.format"} {
		v := gjson.GetBytes(body, f)
		switch v.Get("type").Str {
		case "json_object":
			return true, gjson.Result{}
		case "json_schema":
			if s := v.Get("json_schema.schema"); s.IsObject() {
				return true, s // chat completions
			}
			return true, v.Get("schema") // responses, messages
		}
	}
	return false, gjson.Result{}
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	cascade {
//		expected_output <tokens>
//		min_length      <characters>
//		refusal_pattern <regexp>
//		judge <model> {
//			prompt     <template>
//			score      <regexp>
//			scale      <max>
//			threshold  <0..1>
//			max_tokens <n>
//		}
//		streams
//	}
//
// refusal_pattern may be repeated.
func (c *Cascade) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume strategy name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "expected_output":
			if err := intArg(d, &c.ExpectedOutput); err != nil {
				return err
			}
		case "min_length":
			if err := intArg(d, &c.MinLength); err != nil {
				return err
			}
		case "refusal_pattern":
			var p string
			if !d.AllArgs(&p) {
				return d.ArgErr()
			}
			c.RefusalPatterns = append(c.RefusalPatterns, p)
		case "judge":
			if c.Judge != nil {
				return d.Err("judge set twice")
			}
			j, err := unmarshalJudge(d)
			if err != nil {
				return err
			}
			c.Judge = j
		case "streams":
			if d.NextArg() {
				return d.ArgErr()
			}
			c.Streams = true
		default:
			return d.Errf("unrecognized subdirective: %s", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ Strategy              = (*Cascade)(nil)
	_ caddy.Provisioner     = (*Cascade)(nil)
	_ caddy.Validator       = (*Cascade)(nil)
	_ caddyfile.Unmarshaler = (*Cascade)(nil)
)
