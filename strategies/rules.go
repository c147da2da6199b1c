package strategies

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/tokens"
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

// Provision compiles the conditions.
func (r *Rules) Provision(_ caddy.Context) error {
	kw := &ruleKeywords{ids: make(map[string]int)}
	for i, rl := range r.Rules {
		if rl == nil {
			return fmt.Errorf("rule #%d is empty", i+1)
		}
		rl.reason = "rule=" + rl.Name
		if rl.When == nil {
			continue
		}
		if err := rl.When.provision(ruleScopeLastUser, kw); err != nil {
			return fmt.Errorf("rule %s: %v", cmp.Or(rl.Name, "#"+strconv.Itoa(i+1)), err)
		}
	}
	if err := kw.compile(); err != nil {
		return err
	}
	r.keywords = kw
	return nil
}

// Validate checks the rules: names, models and params.
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

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	rules {
//		rule <name> {
//			# conditions, all must hold
//			keywords     <words...>
//			keywords_all <words...>
//			regex        <pattern>
//			scope        last_user|conversation|system
//			min_tokens   <n>
//			max_tokens   <n>
//			tools        [true|false]
//			images       [true|false]
//			json_mode    [true|false]
//			header       <field> <values...>
//			header_regex <field> <pattern>
//			field        <path> [<operator>] <values...>
//			and {
//				<conditions...>
//			}
//			or {
//				<conditions...>
//			}
//			not {
//				<conditions...>
//			}
//
//			# action
//			models <models...>
//			set    <path> <value>
//		}
//		default [<models...>] {
//			models <models...>
//			set    <path> <value>
//		}
//	}
//
// In an `or` block each line is one alternative (use an `and` block for
// an alternative of several tests); `and` and `not` blocks hold (or, for
// `not`, fail) when all their lines hold. A `scope` line applies to the
// whole block it is in, nested blocks included. `header_regexp` is
// accepted for `header_regex`. The operators of `field` are $eq (the
// default), $ne, $gt, $gte, $lt, $lte, $in, $nin and $regex; $in and
// $nin take several values or one JSON array without spaces. A value of
// `field` or `set` is read as JSON when it is valid JSON and not in
// double quotes, else as a string: `set temperature 0.3` sets a number,
// `set user "42"` a string.
func (r *Rules) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume strategy name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "rule":
			rl, err := parseRule(d)
			if err != nil {
				return err
			}
			if seen[rl.Name] {
				return d.Errf("duplicate rule name '%s'", rl.Name)
			}
			seen[rl.Name] = true
			r.Rules = append(r.Rules, rl)

		case "default":
			if r.Default != nil {
				return d.Err("default already specified")
			}
			act := &RuleAction{Models: d.RemainingArgs()}
			for n := d.Nesting(); d.NextBlock(n); {
				if err := parseRuleAction(d, &act.Models, &act.Params); err != nil {
					return err
				}
			}
			if len(act.Models) == 0 && len(act.Params) == 0 {
				return d.Err("default needs models or params")
			}
			r.Default = act

		default:
			return d.Errf("unrecognized subdirective: %s", d.Val())
		}
	}
	return nil
}

// parseRule parses a `rule <name> { ... }` block.
func parseRule(d *caddyfile.Dispenser) (*Rule, error) {
	rl := new(Rule)
	if !d.AllArgs(&rl.Name) {
		return nil, d.ArgErr()
	}
	if err := checkRuleName(rl.Name); err != nil {
		return nil, d.Errf("rule '%s': %v", rl.Name, err)
	}
	cond := new(RuleCondition)
	for n := d.Nesting(); d.NextBlock(n); {
		ok, err := parseRuleCondition(d, cond)
		if !ok {
			err = parseRuleAction(d, &rl.Models, &rl.Params)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(rl.Models) == 0 {
		return nil, d.Errf("rule %s has no models", rl.Name)
	}
	if !cond.empty() {
		rl.When = cond
	}
	return rl, nil
}

// parseRuleAction parses an action line, `models` or `set`.
func parseRuleAction(d *caddyfile.Dispenser, models *[]string, params *map[string]json.RawMessage) error {
	switch d.Val() {
	case "models":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		*models = append(*models, args...)
	case "set":
		var path, val string
		if !d.AllArgs(&path, &val) {
			return d.ArgErr()
		}
		if _, dup := (*params)[path]; dup {
			return d.Errf("param '%s' set twice", path)
		}
		if *params == nil {
			*params = make(map[string]json.RawMessage)
		}
		(*params)[path] = ruleTokenJSON(d)
	default:
		return d.Errf("unrecognized subdirective: %s", d.Val())
	}
	return nil
}

// parseRuleCondition parses the condition line at the cursor into c and
// reports whether it was one.
func parseRuleCondition(d *caddyfile.Dispenser, c *RuleCondition) (bool, error) {
	name := d.Val()
	switch name {
	case "keywords", "keywords_all":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return true, d.ArgErr()
		}
		if slices.ContainsFunc(args, func(a string) bool { return strings.TrimSpace(a) == "" }) {
			return true, d.Errf("%s: empty keyword", name)
		}
		if name == "keywords" {
			c.Keywords = append(c.Keywords, args...)
		} else {
			c.KeywordsAll = append(c.KeywordsAll, args...)
		}

	case "regex":
		var pat string
		if !d.AllArgs(&pat) {
			return true, d.ArgErr()
		}
		if _, err := regexp.Compile(pat); err != nil {
			return true, d.Errf("invalid regex '%s': %v", pat, err)
		}
		if c.Regex == "" {
			c.Regex = pat
		} else {
			c.And = append(c.And, &RuleCondition{Regex: pat})
		}

	case "scope":
		var s string
		if !d.AllArgs(&s) {
			return true, d.ArgErr()
		}
		if _, err := parseRuleScope(s); err != nil {
			return true, d.Err(err.Error())
		}
		if c.Scope != "" && c.Scope != s {
			return true, d.Errf("scope already set to %s", c.Scope)
		}
		c.Scope = s

	case "min_tokens", "max_tokens":
		v, err := intArg(d)
		if err != nil {
			return true, err
		}
		p := &c.MinTokens
		if name == "max_tokens" {
			p = &c.MaxTokens
		}
		if *p != 0 {
			return true, d.Errf("%s already set", name)
		}
		*p = v

	case "tools", "images", "json_mode":
		v := true
		if d.NextArg() {
			b, err := strconv.ParseBool(d.Val())
			if err != nil {
				return true, d.Errf("invalid %s value '%s': want true or false", name, d.Val())
			}
			if d.NextArg() {
				return true, d.ArgErr()
			}
			v = b
		}
		switch name {
		case "tools":
			c.Tools = &v
		case "images":
			c.Images = &v
		default:
			c.JSONMode = &v
		}

	case "header":
		args := d.RemainingArgs()
		if len(args) < 2 {
			return true, d.ArgErr()
		}
		if c.Header == nil {
			c.Header = make(map[string][]string)
		}
		field := http.CanonicalHeaderKey(args[0])
		c.Header[field] = append(c.Header[field], args[1:]...)

	case "header_regex", "header_regexp":
		var field, pat string
		if !d.AllArgs(&field, &pat) {
			return true, d.ArgErr()
		}
		if _, err := regexp.Compile(pat); err != nil {
			return true, d.Errf("invalid regex '%s': %v", pat, err)
		}
		field = http.CanonicalHeaderKey(field)
		if _, dup := c.HeaderRegex[field]; dup {
			return true, d.Errf("header_regex for %s already set", field)
		}
		if c.HeaderRegex == nil {
			c.HeaderRegex = make(map[string]string)
		}
		c.HeaderRegex[field] = pat

	case "field":
		return true, parseRuleField(d, c)

	case "and":
		sub, err := parseRuleConditionBlock(d)
		if err != nil {
			return true, err
		}
		c.And = append(c.And, sub)

	case "not":
		sub, err := parseRuleConditionBlock(d)
		if err != nil {
			return true, err
		}
		if c.Not == nil {
			c.Not = sub
		} else {
			c.And = append(c.And, &RuleCondition{Not: sub})
		}

	case "or":
		if d.NextArg() {
			return true, d.ArgErr()
		}
		group := new(RuleCondition) // the scope of the block, and its lines as alternatives
		for n := d.Nesting(); d.NextBlock(n); {
			var alt *RuleCondition
			var err error
			switch d.Val() {
			case "scope":
				_, err = parseRuleCondition(d, group)
			case "and":
				alt, err = parseRuleConditionBlock(d)
			default:
				alt = new(RuleCondition)
				var ok bool
				if ok, err = parseRuleCondition(d, alt); !ok {
					err = d.Errf("unrecognized condition: %s", d.Val())
				}
			}
			if err != nil {
				return true, err
			}
			if alt != nil {
				group.Or = append(group.Or, alt)
			}
		}
		if len(group.Or) == 0 {
			return true, d.Err("or block has no conditions")
		}
		if group.Scope == "" && c.Or == nil {
			c.Or = group.Or
		} else {
			c.And = append(c.And, group)
		}

	default:
		return false, nil
	}
	return true, nil
}

// parseRuleConditionBlock parses the block of an `and` or `not` line.
func parseRuleConditionBlock(d *caddyfile.Dispenser) (*RuleCondition, error) {
	name := d.Val()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := new(RuleCondition)
	for n := d.Nesting(); d.NextBlock(n); {
		ok, err := parseRuleCondition(d, c)
		if !ok {
			err = d.Errf("unrecognized condition: %s", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	if c.empty() {
		return nil, d.Errf("%s block has no conditions", name)
	}
	return c, nil
}

// parseRuleField parses `field <path> [<operator>] <values...>` into c.
func parseRuleField(d *caddyfile.Dispenser, c *RuleCondition) error {
	var path, op string
	if !d.Args(&path, &op) {
		return d.ArgErr()
	}
	if !strings.HasPrefix(op, "$") || d.Token().Quoted() {
		d.Prev() // no operator: $eq
		op = "$eq"
	}
	if !slices.Contains(ruleOps, op) {
		return d.Errf("field %s: unknown operator '%s' (want %s)", path, op, ruleOpNames)
	}
	var val json.RawMessage
	switch op {
	case "$in", "$nin":
		var elems [][]byte
		for d.NextArg() {
			if strings.HasPrefix(d.Val(), "[") && !d.Token().Quoted() && !json.Valid([]byte(d.Val())) {
				return d.Errf("field %s: %s takes a list of values: '%s' is not a JSON array", path, op, d.Val())
			}
			elems = append(elems, ruleTokenJSON(d))
		}
		switch {
		case len(elems) == 0:
			return d.ArgErr()
		case len(elems) == 1 && elems[0][0] == '[':
			val = elems[0]
		default:
			val = slices.Concat([]byte{'['}, bytes.Join(elems, []byte{','}), []byte{']'})
		}
	case "$regex":
		var pat string
		if !d.AllArgs(&pat) {
			return d.ArgErr()
		}
		val = ruleJSONString(pat)
	default:
		var s string
		if !d.AllArgs(&s) {
			return d.ArgErr()
		}
		val = ruleTokenJSON(d)
	}
	if _, err := newRuleFieldOp(op, val); err != nil {
		return d.Errf("field %s: %v", path, err)
	}
	if _, dup := c.Fields[path][op]; dup {
		return d.Errf("field %s: operator %s given twice", path, op)
	}
	if c.Fields == nil {
		c.Fields = make(map[string]map[string]json.RawMessage)
	}
	if c.Fields[path] == nil {
		c.Fields[path] = make(map[string]json.RawMessage)
	}
	c.Fields[path][op] = val
	return nil
}

// ruleTokenJSON returns the value of the current token as JSON: the
// token itself when it is valid JSON and not in double quotes, else the
// token as a JSON string.
func ruleTokenJSON(d *caddyfile.Dispenser) json.RawMessage {
	if !strings.HasPrefix(d.ValRaw(), `"`) {
		var buf bytes.Buffer
		if json.Compact(&buf, []byte(d.Val())) == nil {
			return buf.Bytes()
		}
	}
	return ruleJSONString(d.Val())
}

// ruleJSONString returns s as a JSON string, without escaping HTML.
func ruleJSONString(s string) json.RawMessage {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
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

// ruleScope is the text a condition looks at.
type ruleScope int

const (
	ruleScopeLastUser ruleScope = iota
	ruleScopeConversation
	ruleScopeSystem
	ruleScopes // the number of scopes
)

func parseRuleScope(s string) (ruleScope, error) {
	switch s {
	case "last_user":
		return ruleScopeLastUser, nil
	case "conversation":
		return ruleScopeConversation, nil
	case "system":
		return ruleScopeSystem, nil
	}
	return 0, fmt.Errorf("unknown scope '%s' (want last_user, conversation or system)", s)
}

// empty reports whether c sets no test.
func (c *RuleCondition) empty() bool {
	return c.Scope == "" && len(c.Keywords) == 0 && len(c.KeywordsAll) == 0 &&
		c.Regex == "" && c.MinTokens == 0 && c.MaxTokens == 0 &&
		c.Tools == nil && c.Images == nil && c.JSONMode == nil &&
		len(c.Header) == 0 && len(c.HeaderRegex) == 0 && len(c.Fields) == 0 &&
		len(c.And) == 0 && len(c.Or) == 0 && c.Not == nil
}

// provision checks and compiles c and the conditions in it; parent is
// the scope it inherits, and kw collects the keywords.
func (c *RuleCondition) provision(parent ruleScope, kw *ruleKeywords) error {
	c.scope = parent
	if c.Scope != "" {
		s, err := parseRuleScope(c.Scope)
		if err != nil {
			return err
		}
		c.scope = s
	}

	var err error
	if c.kwAny, err = kw.add(c.Keywords, c.scope); err != nil {
		return fmt.Errorf("keywords: %v", err)
	}
	if c.kwAll, err = kw.add(c.KeywordsAll, c.scope); err != nil {
		return fmt.Errorf("keywords_all: %v", err)
	}

	c.re = nil
	if c.Regex != "" {
		if c.re, err = regexp.Compile(c.Regex); err != nil {
			return fmt.Errorf("invalid regex '%s': %v", c.Regex, err)
		}
	}

	if c.MinTokens < 0 || c.MaxTokens < 0 {
		return errors.New("token bounds must not be negative")
	}
	if c.MaxTokens > 0 && c.MinTokens > c.MaxTokens {
		return fmt.Errorf("min_tokens %d exceeds max_tokens %d", c.MinTokens, c.MaxTokens)
	}
	// An estimate capped at tokLimit tells both bounds: whether it
	// reaches MinTokens and whether it exceeds MaxTokens.
	c.tokLimit = c.MinTokens
	if c.MaxTokens > 0 {
		c.tokLimit = max(c.tokLimit, c.MaxTokens+1)
		if c.MaxTokens == math.MaxInt {
			c.tokLimit = math.MaxInt
		}
	}

	c.headers = nil
	for name, vals := range c.Header {
		if name == "" {
			return errors.New("header with an empty field name")
		}
		if len(vals) == 0 {
			return fmt.Errorf("header %s: no values", name)
		}
		c.headers = append(c.headers, ruleHeader{name: http.CanonicalHeaderKey(name), values: vals})
	}
	for name, pat := range c.HeaderRegex {
		if name == "" {
			return errors.New("header_regex with an empty field name")
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			return fmt.Errorf("header_regex %s: invalid regex '%s': %v", name, pat, err)
		}
		c.headers = append(c.headers, ruleHeader{name: http.CanonicalHeaderKey(name), re: re})
	}

	c.fields = nil
	for path, ops := range c.Fields {
		if path == "" {
			return errors.New("field with an empty path")
		}
		if len(ops) == 0 {
			return fmt.Errorf("field %s: no operators", path)
		}
		f := ruleField{path: path}
		for _, op := range slices.Sorted(maps.Keys(ops)) {
			fo, err := newRuleFieldOp(op, ops[op])
			if err != nil {
				return fmt.Errorf("field %s: %v", path, err)
			}
			f.ops = append(f.ops, fo)
		}
		c.fields = append(c.fields, f)
	}

	for i, sub := range c.And {
		if sub == nil {
			return fmt.Errorf("and: condition #%d is empty", i+1)
		}
		if err := sub.provision(c.scope, kw); err != nil {
			return err
		}
	}
	for i, sub := range c.Or {
		if sub == nil {
			return fmt.Errorf("or: condition #%d is empty", i+1)
		}
		if err := sub.provision(c.scope, kw); err != nil {
			return err
		}
	}
	if c.Not != nil {
		return c.Not.provision(c.scope, kw)
	}
	return nil
}

// match reports whether c holds for the request of e. The cheap tests
// go first, the regex last.
func (c *RuleCondition) match(e *ruleEval) bool {
	req := e.req
	if c.Tools != nil && *c.Tools != req.HasTools ||
		c.Images != nil && *c.Images != req.HasImages ||
		c.JSONMode != nil && *c.JSONMode != req.JSONMode {
		return false
	}
	for i := range c.headers {
		if !c.headers[i].match(req.Header) {
			return false
		}
	}
	for i := range c.fields {
		if !c.fields[i].match(req.Body) {
			return false
		}
	}
	for _, id := range c.kwAll {
		if !e.has(c.scope, id) {
			return false
		}
	}
	if len(c.kwAny) > 0 && !slices.ContainsFunc(c.kwAny, func(id int) bool { return e.has(c.scope, id) }) {
		return false
	}
	if c.tokLimit > 0 {
		n := e.tokens(c.scope, c.tokLimit)
		if n < c.MinTokens || c.MaxTokens > 0 && n > c.MaxTokens {
			return false
		}
	}
	if c.re != nil && !c.re.MatchString(e.text(c.scope)) {
		return false
	}
	for _, sub := range c.And {
		if !sub.match(e) {
			return false
		}
	}
	if len(c.Or) > 0 && !slices.ContainsFunc(c.Or, e.holds) {
		return false
	}
	return c.Not == nil || !c.Not.match(e)
}

// ruleKeywords are the keywords of the conditions of a Rules strategy,
// each once, in lower case, and the matcher that finds them all in one
// pass over a text.
type ruleKeywords struct {
	texts  []string         // id → keyword in lower case
	scoped [ruleScopes]bool // the scopes with keyword tests
	ids    map[string]int   // keyword → id, while provisioning
	m      *foldMatcher     // finds texts, by id
}

// add adds the keywords kws of a test on scope s and returns their ids.
func (kw *ruleKeywords) add(kws []string, s ruleScope) ([]int, error) {
	var ids []int
	for _, k := range kws {
		if strings.TrimSpace(k) == "" {
			return nil, errors.New("empty keyword")
		}
		k = strings.ToLower(k)
		id, ok := kw.ids[k]
		if !ok {
			id = len(kw.texts)
			kw.ids[k] = id
			kw.texts = append(kw.texts, k)
		}
		ids = append(ids, id)
		kw.scoped[s] = true
	}
	return ids, nil
}

// compile builds the matcher of the keywords added.
func (kw *ruleKeywords) compile() error {
	pats := make([]matchPattern, len(kw.texts))
	for i, k := range kw.texts {
		pats[i] = matchPattern{text: k}
	}
	m, err := newFoldMatcher(pats)
	if err != nil {
		return fmt.Errorf("keywords: %v", err)
	}
	kw.m, kw.ids = m, nil
	return nil
}

// ruleEvalWords is the words of the sets of keywords a ruleEval holds
// without allocating: 128 keywords.
const ruleEvalWords = 2

// ruleEval is the state of one Select call: the request, and what each
// scope's text holds, worked out on first use: which keywords it holds,
// and its token estimate.
type ruleEval struct {
	req *Request
	kw  *ruleKeywords
	// The keywords of scope s are in sets(scans[s]-1) (scans[s] is 0
	// until the scope is scanned): in the set of those found, or, if
	// late[s], in the set of those that start in the last piece scanned.
	scans [ruleScopes]int
	late  [ruleScopes]bool
	// toks[s] is min(estimate, tokLimit[s]); tokLimit[s] is 0 until the
	// text is estimated.
	toks     [ruleScopes]int
	tokLimit [ruleScopes]int
	// The sets of the scans: in buf when the keywords fit, else in more.
	// (A slice of buf kept in e would make e escape to the heap.)
	buf  [ruleScopes][2][ruleEvalWords]uint64
	more [ruleScopes][2][]uint64
}

// holds reports whether c holds for the request.
func (e *ruleEval) holds(c *RuleCondition) bool {
	return c.match(e)
}

// text is the text of scope s.
func (e *ruleEval) text(s ruleScope) string {
	switch s {
	case ruleScopeConversation:
		return e.req.Conversation
	case ruleScopeSystem:
		return e.req.System
	}
	return e.req.LastUser
}

// has reports whether the text of scope s contains keyword id, in any
// letter case.
func (e *ruleEval) has(s ruleScope, id int) bool {
	if e.scans[s] == 0 {
		e.scan(s)
	}
	found, late := e.sets(e.scans[s] - 1)
	if e.late[s] {
		return hasBit(late, id)
	}
	return hasBit(found, id)
}

// sets returns the sets of keywords of scan i: found, and late.
func (e *ruleEval) sets(i int) (found, late []uint64) {
	if e.more[i][0] != nil {
		return e.more[i][0], e.more[i][1]
	}
	n := bitWords(len(e.kw.texts))
	return e.buf[i][0][:n], e.buf[i][1][:n]
}

// scan finds the keywords in the text of scope s. A conversation that
// ends with the last user message, as it mostly does, is scanned in two
// pieces, the rest and the last user message, and the scan serves both
// scopes: the last user message holds the keywords that start in its
// piece. So when both scopes have keyword tests, the last user message
// is read once (and the rest of the conversation is read even if no
// test on it is reached).
func (e *ruleEval) scan(s ruleScope) {
	i := int(s) // each scope is scanned at most once: its own sets will do
	if n := bitWords(len(e.kw.texts)); n > ruleEvalWords {
		e.more[i] = [2][]uint64{make([]uint64, n), make([]uint64, n)}
	}
	found, late := e.sets(i)
	sc := e.kw.m.newScan(found, late)
	conv, last := e.req.Conversation, e.req.LastUser
	switch {
	case s == ruleScopeSystem:
		sc.feed(e.req.System)
	case (s == ruleScopeConversation || e.kw.scoped[ruleScopeConversation]) && strings.HasSuffix(conv, last):
		k := len(conv) - len(last)
		sc.feed(conv[:k])
		sc.startLate()
		sc.feed(last)
		e.scans[ruleScopeConversation] = i + 1
		e.scans[ruleScopeLastUser] = i + 1
		e.late[ruleScopeLastUser] = true
	default:
		sc.feed(e.text(s))
	}
	sc.end()
	e.scans[s] = i + 1
}

// tokens is the estimated tokens of scope s, or limit if that is less:
// for the conversation, the request's prompt estimate.
func (e *ruleEval) tokens(s ruleScope, limit int) int {
	if s == ruleScopeConversation {
		return e.req.PromptTokens
	}
	// An estimate capped at a lower limit that reached it is not enough.
	if limit > e.tokLimit[s] && e.toks[s] >= e.tokLimit[s] {
		e.toks[s] = tokens.EstimateUpTo(e.text(s), limit)
		e.tokLimit[s] = limit
	}
	return min(e.toks[s], limit)
}

// ruleHeader tests a request header field: one of its values equals one
// of values, or matches re.
type ruleHeader struct {
	name   string
	values []string
	re     *regexp.Regexp
}

func (h *ruleHeader) match(hdr http.Header) bool {
	for _, v := range hdr[h.name] {
		if h.re != nil && h.re.MatchString(v) || h.re == nil && slices.Contains(h.values, v) {
			return true
		}
	}
	return false
}

// ruleOps are the operators of field tests.
var ruleOps = []string{"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$regex"}

const ruleOpNames = "$eq, $ne, $gt, $gte, $lt, $lte, $in, $nin or $regex"

// ruleField tests a body field with one or more operators.
type ruleField struct {
	path string
	ops  []ruleFieldOp
}

func (f *ruleField) match(body []byte) bool {
	v := gjson.GetBytes(body, f.path)
	for i := range f.ops {
		if !f.ops[i].match(v) {
			return false
		}
	}
	return true
}

// ruleFieldOp is an operator and its operand: val, in compact JSON, the
// elements of val for $in and $nin, the compiled pattern for $regex.
type ruleFieldOp struct {
	op   string
	val  gjson.Result
	list []gjson.Result
	re   *regexp.Regexp
}

// newRuleFieldOp compiles operator op with the JSON operand raw.
func newRuleFieldOp(op string, raw json.RawMessage) (ruleFieldOp, error) {
	if !slices.Contains(ruleOps, op) {
		return ruleFieldOp{}, fmt.Errorf("unknown operator '%s' (want %s)", op, ruleOpNames)
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return ruleFieldOp{}, fmt.Errorf("%s: invalid JSON value", op)
	}
	fo := ruleFieldOp{op: op, val: gjson.Parse(buf.String())}
	var err error
	switch t := fo.val.Type; op {
	case "$in", "$nin":
		if !fo.val.IsArray() {
			return fo, fmt.Errorf("%s takes a list of values, got %s", op, raw)
		}
		fo.list = fo.val.Array()
	case "$regex":
		if t != gjson.String {
			return fo, fmt.Errorf("%s takes a pattern string, got %s", op, raw)
		}
		if fo.re, err = regexp.Compile(fo.val.Str); err != nil {
			return fo, fmt.Errorf("invalid regex '%s': %v", fo.val.Str, err)
		}
	case "$gt", "$gte", "$lt", "$lte":
		if t != gjson.Number && t != gjson.String {
			return fo, fmt.Errorf("%s takes a number or a string, got %s", op, raw)
		}
	}
	return fo, nil
}

// match applies the operator to the field's value v.
func (o *ruleFieldOp) match(v gjson.Result) bool {
	if !v.Exists() {
		return o.op == "$ne" || o.op == "$nin"
	}
	switch o.op {
	case "$eq":
		return ruleEqual(o.val, v)
	case "$ne":
		return !ruleEqual(o.val, v)
	case "$in":
		return slices.ContainsFunc(o.list, func(x gjson.Result) bool { return ruleEqual(x, v) })
	case "$nin":
		return !slices.ContainsFunc(o.list, func(x gjson.Result) bool { return ruleEqual(x, v) })
	case "$regex":
		switch v.Type {
		case gjson.String:
			return o.re.MatchString(v.Str)
		case gjson.Number, gjson.True, gjson.False:
			return o.re.MatchString(v.Raw)
		}
		return false
	}
	// $gt, $gte, $lt, $lte: numbers compare as numbers, strings lexically
	var c int
	switch {
	case v.Type == gjson.Number && o.val.Type == gjson.Number:
		c = cmp.Compare(v.Num, o.val.Num)
	case v.Type == gjson.String && o.val.Type == gjson.String:
		c = strings.Compare(v.Str, o.val.Str)
	default:
		return false
	}
	return o.op == "$gt" && c > 0 || o.op == "$gte" && c >= 0 ||
		o.op == "$lt" && c < 0 || o.op == "$lte" && c <= 0
}

// ruleEqual reports whether the operand x and the field's value v are
// the same JSON value: same type, and same number or string, or, for
// objects and arrays, the same compact text.
func ruleEqual(x, v gjson.Result) bool {
	if x.Type != v.Type {
		return false
	}
	switch x.Type {
	case gjson.String:
		return x.Str == v.Str
	case gjson.Number:
		return x.Num == v.Num
	case gjson.JSON:
		var buf bytes.Buffer
		return json.Compact(&buf, []byte(v.Raw)) == nil && buf.String() == x.Raw
	}
	return true // null, true, false
}

// Interface guards
var (
	_ Strategy              = (*Rules)(nil)
	_ caddy.Provisioner     = (*Rules)(nil)
	_ caddy.Validator       = (*Rules)(nil)
	_ caddyfile.Unmarshaler = (*Rules)(nil)
)
