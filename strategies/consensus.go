package strategies

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/tidwall/gjson"
)

func init() {
	caddy.RegisterModule(Consensus{})
}

// Consensus is a strategy that asks several models the same question at
// once and answers with the one they agree on. The voters are the first
// `voters` models in order of quality (each model's providers are
// fallbacks within its call). The answer is chosen
//
//   - by `majority` (default): the answers' final values, extracted and
//     normalised, are counted, and the most frequent wins;
//   - by `judge`: a judge model scores every answer, the highest wins;
//   - by `agreement`: the answer whose words agree most with the others'
//     wins.
//
// Ties go to the model of higher quality. The handler makes the calls
// and returns the winner in the client's format (a stream is sent once
// the vote is done); usage, limits and cost count every call.
type Consensus struct {
	// How many models answer. Default: 3.
	Voters int `json:"voters,omitempty"`

	// How the answer is chosen: majority, judge or agreement. Default:
	// majority.
	Mode string `json:"mode,omitempty"`

	// What majority compares of each answer: `text` (the whole text,
	// normalised: case, spaces and trailing punctuation), `last_number`,
	// `regex` (Pattern's first group, or its whole match; the last
	// match) or `json` (the value at the gjson path Pattern). Default:
	// text.
	Extract string `json:"extract,omitempty"`

	// The regular expression or gjson path of Extract.
	Pattern string `json:"pattern,omitempty"`

	// The judge of mode judge.
	Judge *Judge `json:"judge,omitempty"`

	pattern *regexp.Regexp
}

// DefaultVoters is how many models answer by default.
const DefaultVoters = 3

// CaddyModule returns the Caddy module information.
func (Consensus) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".consensus",
		New: func() caddy.Module { return new(Consensus) },
	}
}

// Provision sets the defaults and compiles the pattern.
func (c *Consensus) Provision(_ caddy.Context) error {
	if c.Voters == 0 {
		c.Voters = DefaultVoters
	}
	if c.Mode == "" {
		c.Mode = "majority"
	}
	if c.Extract == "" {
		c.Extract = "text"
	}
	if c.Extract == "regex" {
		c.pattern, _ = regexp.Compile(c.Pattern) // (Validate reports an error)
	}
	if c.Judge != nil {
		c.Judge.Provision()
	}
	return nil
}

// Validate checks the values.
func (c *Consensus) Validate() error {
	if c.Voters < 0 || c.Voters == 1 {
		return fmt.Errorf("consensus: voters must be at least 2, got %d", c.Voters)
	}
	switch c.Mode {
	case "", "majority", "agreement":
	case "judge":
		if c.Judge == nil {
			return fmt.Errorf("consensus: mode judge needs a judge")
		}
	default:
		return fmt.Errorf("consensus: unknown mode %q (want majority, judge or agreement)", c.Mode)
	}
	switch c.Extract {
	case "", "text", "last_number":
		if c.Pattern != "" {
			return fmt.Errorf("consensus: a pattern needs extract regex or json")
		}
	case "regex":
		if _, err := regexp.Compile(c.Pattern); err != nil || c.Pattern == "" {
			return fmt.Errorf("consensus: extract regex needs a valid pattern (%v)", err)
		}
	case "json":
		if c.Pattern == "" {
			return fmt.Errorf("consensus: extract json needs a gjson path as pattern")
		}
	default:
		return fmt.Errorf("consensus: unknown extract %q (want text, last_number, regex or json)", c.Extract)
	}
	if c.Judge != nil {
		return c.Judge.Validate()
	}
	return nil
}

// Select sorts cands by descending quality, unknown last, then by
// ascending cost, stable: the voters are the first models.
func (c Consensus) Select(req *Request, cands []Candidate) Decision {
	BestQuality{}.Select(req, cands)
	return Decision{Reason: "consensus"}
}

// VoterCount is how many models answer.
func (c *Consensus) VoterCount() int { return orDefault(c.Voters, DefaultVoters) }

// Key is what majority compares of an answer: its extracted final
// value, normalised; "" when there is none (the answer does not vote).
// An answer that did not finish (cut by the output cap, or stopped by a
// content filter or a refusal) has no final value: the last number of
// a reasoning cut halfway is one of its steps.
func (c *Consensus) Key(a Answer) string {
	switch a.Finish {
	case "length", "content_filter", "refusal":
		return ""
	}
	if a.ToolCalls != "" && strings.TrimSpace(a.Text) == "" {
		return "tool:" + a.ToolCalls
	}
	switch c.Extract {
	case "last_number":
		m := numbers.FindAllString(a.Text, -1)
		if len(m) == 0 {
			return ""
		}
		return normalNumber(m[len(m)-1])
	case "regex":
		re := c.pattern
		if re == nil {
			return ""
		}
		all := re.FindAllStringSubmatch(a.Text, -1)
		if len(all) == 0 {
			return ""
		}
		m := all[len(all)-1]
		if len(m) > 1 {
			return normalText(m[1])
		}
		return normalText(m[0])
	case "json":
		v := gjson.Get(strings.TrimSpace(a.Text), c.Pattern)
		if !v.Exists() {
			return ""
		}
		if v.Type == gjson.String {
			return normalText(v.Str)
		}
		if v.Type == gjson.Number {
			return normalNumber(v.Raw)
		}
		return v.Raw
	}
	return normalText(a.Text)
}

var numbers = regexp.MustCompile(`-?\d[\d,]*(?:\.\d+)?`)

// normalNumber writes a number the same way however it was written:
// 1,000.50 and 1000.5 are both 1000.5.
func normalNumber(s string) string {
	s = strings.ReplaceAll(s, ",", "")
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return s
}

// normalText folds case and spaces and drops punctuation at the ends.
func normalText(s string) string {
	s = strings.Join(strings.Fields(strings.ToLower(s)), " ")
	return strings.TrimFunc(s, func(r rune) bool { return unicode.IsPunct(r) || unicode.IsSpace(r) })
}

// Vote picks the winner among answers by majority of keys ("" votes
// for nothing). The largest group wins; between equal groups, the one
// holding the highest quality; within the group, the highest quality
// answer, then the first. It returns the winner's index and its votes;
// with no key at all, the highest quality answer wins with 0 votes.
func Vote(keys []string, quality []float64) (winner, votes int) {
	count := make(map[string]int, len(keys))
	for _, k := range keys {
		if k != "" {
			count[k]++
		}
	}
	winner = -1
	for i, k := range keys {
		n := count[k]
		if k == "" {
			n = 0
		}
		if winner < 0 || n > votes || n == votes && quality[i] > quality[winner] {
			winner, votes = i, n
		}
	}
	return winner, votes
}

// Agreement picks the answer whose words agree most with the others':
// each answer's score is its mean word-set similarity (Jaccard) to the
// others. An answer without words agrees with nothing, not even another
// empty one: two voters that answered nothing (a content filter, a
// reasoning model out of tokens) must not outvote one that answered.
// Ties go to the higher quality. It returns the winner and its score in
// 0..1.
func Agreement(texts []string, quality []float64) (winner int, score float64) {
	sets := make([]map[string]bool, len(texts))
	for i, t := range texts {
		sets[i] = wordSet(t)
	}
	winner = -1
	for i := range texts {
		var sum float64
		for j := range texts {
			if i != j {
				sum += jaccard(sets[i], sets[j])
			}
		}
		s := 0.0
		switch {
		case len(sets[i]) == 0:
			s = -1 // wins only when no answer has words
		case len(texts) > 1:
			s = sum / float64(len(texts)-1)
		}
		if winner < 0 || s > score || s == score && quality[i] > quality[winner] {
			winner, score = i, s
		}
	}
	return winner, max(score, 0)
}

func wordSet(s string) map[string]bool {
	set := make(map[string]bool)
	for _, w := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsNumber(r)
	}) {
		set[w] = true
	}
	return set
}

func jaccard(a, b map[string]bool) float64 {
	if len(a) == 0 || len(b) == 0 {
		return 0
	}
	inter := 0
	for w := range a {
		if b[w] {
			inter++
		}
	}
	return float64(inter) / float64(len(a)+len(b)-inter)
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	consensus {
//		voters  <n>
//		mode    majority|judge|agreement
//		extract text|last_number|regex <regexp>|json <path>
//		judge <model> {
//			prompt     <template>
//			score      <regexp>
//			scale      <max>
//			max_tokens <n>
//		}
//	}
func (c *Consensus) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume strategy name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "voters":
			if err := intArg(d, &c.Voters); err != nil {
				return err
			}
			if c.Voters == 0 {
				return d.Err("voters: 0 is not allowed (it would mean the default, 3; leave voters out for that)")
			}
		case "mode":
			if !d.AllArgs(&c.Mode) {
				return d.ArgErr()
			}
		case "extract":
			if !d.NextArg() {
				return d.ArgErr()
			}
			c.Extract = d.Val()
			if d.NextArg() {
				c.Pattern = d.Val()
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "judge":
			if c.Judge != nil {
				return d.Err("judge set twice")
			}
			j, err := unmarshalJudge(d)
			if err != nil {
				return err
			}
			c.Judge = j
		default:
			return d.Errf("unrecognized subdirective: %s", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ Strategy              = (*Consensus)(nil)
	_ caddy.Provisioner     = (*Consensus)(nil)
	_ caddy.Validator       = (*Consensus)(nil)
	_ caddyfile.Unmarshaler = (*Consensus)(nil)
)
