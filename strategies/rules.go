package strategies

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(Rules{})
}

// Rules is a strategy that routes by rules. The rules are tried in
// order; the first one whose condition holds and one of whose models is
// among the candidates wins: its models' candidates are moved to the
// front (in the order of its models, the others follow as fallbacks),
// its params are set on the request, and the reason is `rule=<name>`.
// When no rule applies, the default action does (reason `rule=default`);
// without one the order stays as it is (reason `rules:no_match`).
type Rules struct {
	// Rules are the rules, tried in order.
	Rules []*Rule `json:"rules,omitempty"`
	// Default is the action taken when no rule applies.
	Default *RuleAction `json:"default,omitempty"`

	keywords *ruleKeywords // the keywords of all conditions, compiled by Provision
}

// Rule is a condition and what to do when it holds.
type Rule struct {
	// Name names the rule in the decision's reason, `rule=<name>`. It
	// is required, unique among the rules, and has no spaces.
	Name string `json:"name"`
	// When is the condition; a rule without one always holds.
	When *RuleCondition `json:"when,omitempty"`
	// Models are the models to prefer, best first; at least one is
	// required. If none of them is among the candidates the rule does
	// not apply and the next one is tried.
	Models []string `json:"models"`
	// Params are body parameters to set on every attempt, by sjson path,
	// e.g. {"temperature": 0.3, "max_tokens": 100}.
	Params map[string]json.RawMessage `json:"params,omitempty"`

	reason string
}

// RuleAction is the default action of the rules strategy.
type RuleAction struct {
	// Models are the models to prefer, best first. Models not among
	// the candidates are skipped.
	Models []string `json:"models,omitempty"`
	// Params are body parameters to set on every attempt, by sjson path.
	Params map[string]json.RawMessage `json:"params,omitempty"`
}

// RuleCondition is a condition on the request. Every test it sets must
// pass (AND); an empty condition always holds. The text tests
// (keywords, regex and token bounds) look at the text of the scope.
type RuleCondition struct {
	// Scope is the text the text tests look at: `last_user` (the last
	// user message), `conversation` (the system prompt and all
	// messages) or `system` (the system prompt). Nested conditions
	// inherit it; the default is `last_user`.
	Scope string `json:"scope,omitempty"`
	// Keywords holds when the text contains any of these words or
	// phrases, in any letter case. It is a substring match, so that
	// Chinese and other unspaced scripts work, and "hi" also matches
	// "this"; use Regex with \b for whole words.
	Keywords []string `json:"keywords,omitempty"`
	// KeywordsAll holds when the text contains all of these words or
	// phrases, in any letter case.
	KeywordsAll []string `json:"keywords_all,omitempty"`
	// Regex holds when the text matches this regular expression (Go
	// RE2 syntax; case-sensitive unless it starts with `(?i)`).
	Regex string `json:"regex,omitempty"`
	// MinTokens and MaxTokens bound the estimated tokens of the text,
	// inclusive; 0 means no bound. For the `conversation` scope the
	// count is the request's prompt estimate, tool definitions and
	// per-message overhead included.
	MinTokens int `json:"min_tokens,omitempty"`
	MaxTokens int `json:"max_tokens,omitempty"`
	// Tools, when set, holds when the request carries tools (true) or
	// carries none (false).
	Tools *bool `json:"tools,omitempty"`
	// Images, when set, holds when the request carries image inputs
	// (true) or carries none (false).
	Images *bool `json:"images,omitempty"`
	// JSONMode, when set, holds when the request asks for JSON or
	// structured output (true) or does not (false).
	JSONMode *bool `json:"json_mode,omitempty"`
	// Header holds when, for every field listed, the request header
	// has a value equal to one of the values listed.
	Header map[string][]string `json:"header,omitempty"`
	// HeaderRegex holds when, for every field listed, a value of the
	// request header matches the regular expression.
	HeaderRegex map[string]string `json:"header_regex,omitempty"`
	// Fields tests body fields by gjson path with Portkey-style
	// operators: {"metadata.tier": {"$in": ["gold", "platinum"]}}.
	// The operators are $eq, $ne, $gt, $gte, $lt, $lte (numbers compare
	// as numbers, strings lexically; other types never compare), $in
	// and $nin (a list of values) and $regex (a pattern, matched
	// against a scalar's text). A missing field fails every operator
	// except $ne and $nin.
	Fields map[string]map[string]json.RawMessage `json:"fields,omitempty"`
	// And holds when all of these conditions hold.
	And []*RuleCondition `json:"and,omitempty"`
	// Or holds when any of these conditions holds.
	Or []*RuleCondition `json:"or,omitempty"`
	// Not holds when this condition does not.
	Not *RuleCondition `json:"not,omitempty"`

	// compiled by Provision
	scope    ruleScope      // Scope, or the one inherited
	kwAny    []int          // Keywords, as ids in ruleKeywords
	kwAll    []int          // KeywordsAll, as ids in ruleKeywords
	tokLimit int            // the estimate up to which MinTokens and MaxTokens need it
	re       *regexp.Regexp // Regex
	headers  []ruleHeader   // Header and HeaderRegex
	fields   []ruleField    // Fields
}

// CaddyModule returns the Caddy module information.
func (Rules) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".rules",
		New: func() caddy.Module { return new(Rules) },
	}
}

// Provision compiles the conditions. It validates r first: values that
// Validate rejects cannot be compiled, and Caddy validates a module only
// after provisioning it.
func (r *Rules) Provision(_ caddy.Context) error {
	if err := r.Validate(); err != nil {
		return err
	}
	kw := &ruleKeywords{ids: make(map[string]int)}
	for _, rl := range r.Rules {
		rl.reason = "rule=" + rl.Name
		if rl.When == nil {
			continue
		}
		if err := rl.When.compile(ruleScopeLastUser, kw); err != nil {
			return fmt.Errorf("rule %s: %v", rl.Name, err)
		}
	}
	if err := kw.compile(); err != nil {
		return err
	}
	r.keywords = kw
	return nil
}

// Validate checks every value of r: the names, models and params of
// the rules and of the default, and the conditions.
func (r *Rules) Validate() error {
	seen := make(map[string]bool, len(r.Rules))
	for i, rl := range r.Rules {
		if rl == nil {
			return fmt.Errorf("rule #%d is empty", i+1)
		}
		if err := checkRuleName(rl.Name); err != nil {
			return fmt.Errorf("rule #%d: %v", i+1, err)
		}
		if seen[rl.Name] {
			return fmt.Errorf("duplicate rule name '%s'", rl.Name)
		}
		seen[rl.Name] = true
		if len(rl.Models) == 0 {
			return fmt.Errorf("rule %s has no models", rl.Name)
		}
		if err := checkRuleAction(rl.Models, rl.Params); err != nil {
			return fmt.Errorf("rule %s: %v", rl.Name, err)
		}
		if rl.When != nil {
			if err := rl.When.validate(); err != nil {
				return fmt.Errorf("rule %s: %v", rl.Name, err)
			}
		}
	}
	if d := r.Default; d != nil {
		if len(d.Models) == 0 && len(d.Params) == 0 {
			return errors.New("default has neither models nor params")
		}
		if err := checkRuleAction(d.Models, d.Params); err != nil {
			return fmt.Errorf("default: %v", err)
		}
	}
	return nil
}

// Select moves the candidates of the first applicable rule's models to
// the front.
func (r *Rules) Select(req *Request, cands []Candidate) Decision {
	e := ruleEval{req: req, kw: r.keywords}
	for _, rl := range r.Rules {
		if ruleHasModel(cands, rl.Models) && (rl.When == nil || rl.When.match(&e)) {
			Prefer(cands, rl.Models)
			return Decision{Reason: rl.reason, Params: ruleParams(rl.Params)}
		}
	}
	if d := r.Default; d != nil {
		Prefer(cands, d.Models)
		return Decision{Reason: "rule=default", Params: ruleParams(d.Params)}
	}
	return Decision{Reason: "rules:no_match"}
}

// checkRuleName checks a rule name.
func checkRuleName(name string) error {
	switch {
	case name == "":
		return errors.New("a rule needs a name")
	case name == "default":
		return errors.New("the name 'default' is reserved for the default action")
	case strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("rule name '%s' has spaces or control characters", name)
	}
	return nil
}

// checkRuleAction checks the models and params of an action.
func checkRuleAction(models []string, params map[string]json.RawMessage) error {
	if slices.Contains(models, "") {
		return errors.New("empty model name")
	}
	for path, v := range params {
		if path == "" {
			return errors.New("param with an empty path")
		}
		if !json.Valid(v) {
			return fmt.Errorf("param %s: invalid JSON value", path)
		}
	}
	return nil
}

// validate checks the values of c and of the conditions in it.
func (c *RuleCondition) validate() error {
	if c.Scope != "" {
		if _, err := parseRuleScope(c.Scope); err != nil {
			return err
		}
	}
	for _, kws := range []struct {
		name string
		list []string
	}{{"keywords", c.Keywords}, {"keywords_all", c.KeywordsAll}} {
		if slices.ContainsFunc(kws.list, func(k string) bool { return strings.TrimSpace(k) == "" }) {
			return fmt.Errorf("%s: empty keyword", kws.name)
		}
	}
	if c.Regex != "" {
		if _, err := regexp.Compile(c.Regex); err != nil {
			return fmt.Errorf("invalid regex '%s': %v", c.Regex, err)
		}
	}
	if err := checkNotNegative("min_tokens", c.MinTokens); err != nil {
		return err
	}
	if err := checkNotNegative("max_tokens", c.MaxTokens); err != nil {
		return err
	}
	if c.MaxTokens > 0 && c.MinTokens > c.MaxTokens {
		return fmt.Errorf("min_tokens %d exceeds max_tokens %d", c.MinTokens, c.MaxTokens)
	}
	for _, name := range slices.Sorted(maps.Keys(c.Header)) {
		switch {
		case name == "":
			return errors.New("header with an empty field name")
		case len(c.Header[name]) == 0:
			return fmt.Errorf("header %s: no values", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.HeaderRegex)) {
		if name == "" {
			return errors.New("header_regex with an empty field name")
		}
		pat := c.HeaderRegex[name]
		if _, err := regexp.Compile(pat); err != nil {
			return fmt.Errorf("header_regex %s: invalid regex '%s': %v", name, pat, err)
		}
	}
	for _, path := range slices.Sorted(maps.Keys(c.Fields)) {
		ops := c.Fields[path]
		switch {
		case path == "":
			return errors.New("field with an empty path")
		case len(ops) == 0:
			return fmt.Errorf("field %s: no operators", path)
		}
		for _, op := range slices.Sorted(maps.Keys(ops)) {
			if _, err := newRuleFieldOp(op, ops[op]); err != nil {
				return fmt.Errorf("field %s: %v", path, err)
			}
		}
	}
	if err := validateRuleConditions("and", c.And); err != nil {
		return err
	}
	if err := validateRuleConditions("or", c.Or); err != nil {
		return err
	}
	if c.Not != nil {
		return c.Not.validate()
	}
	return nil
}

// validateRuleConditions checks the conditions of an `and` or `or`.
func validateRuleConditions(name string, conds []*RuleCondition) error {
	for i, sub := range conds {
		if sub == nil {
			return fmt.Errorf("%s: condition #%d is empty", name, i+1)
		}
		if err := sub.validate(); err != nil {
			return err
		}
	}
	return nil
}

// ruleHasModel reports whether any of models is among cands.
func ruleHasModel(cands []Candidate, models []string) bool {
	for i := range cands {
		if slices.Contains(models, cands[i].Model) {
			return true
		}
	}
	return false
}

// ruleParams returns the params of a decision: nil when there are none.
// The map is shared and must not be modified.
func ruleParams(p map[string]json.RawMessage) map[string]json.RawMessage {
	if len(p) == 0 {
		return nil
	}
	return p
}

// Interface guards
var (
	_ Strategy              = (*Rules)(nil)
	_ caddy.Provisioner     = (*Rules)(nil)
	_ caddy.Validator       = (*Rules)(nil)
	_ caddyfile.Unmarshaler = (*Rules)(nil)
)
