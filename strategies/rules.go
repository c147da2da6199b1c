package strategies

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"net/http"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
	"unsafe"

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

	foldConv bool // some condition folds the conversation
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

	scope   ruleScope
	kwAny   []ruleLit
	kwAll   []ruleLit
	re      *regexp.Regexp
	reLits  []ruleLit // the text has one of these when re matches; nil: unknown
	headers []ruleHeader
	fields  []ruleField
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
	ruleFoldTable() // build it now rather than in a request
	r.foldConv = false
	for i, rl := range r.Rules {
		if rl == nil {
			return fmt.Errorf("rule #%d is empty", i+1)
		}
		rl.reason = "rule=" + rl.Name
		if rl.When == nil {
			continue
		}
		if err := rl.When.provision(ruleScopeLastUser); err != nil {
			return fmt.Errorf("rule %s: %v", rl.label(i), err)
		}
		r.foldConv = r.foldConv || rl.When.foldsScope(ruleScopeConversation)
	}
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
		if err := checkRuleModels(rl.Models); err != nil {
			return fmt.Errorf("rule %s: %v", rl.Name, err)
		}
		if err := checkRuleParams(rl.Params); err != nil {
			return fmt.Errorf("rule %s: %v", rl.Name, err)
		}
	}
	if d := r.Default; d != nil {
		if len(d.Models) == 0 && len(d.Params) == 0 {
			return errors.New("default has neither models nor params")
		}
		if err := checkRuleModels(d.Models); err != nil {
			return fmt.Errorf("default: %v", err)
		}
		if err := checkRuleParams(d.Params); err != nil {
			return fmt.Errorf("default: %v", err)
		}
	}
	return nil
}

// Select moves the candidates of the first applicable rule's models to
// the front.
func (r *Rules) Select(req *Request, cands []Candidate) Decision {
	e := ruleEval{req: req, foldConv: r.foldConv}
	for _, rl := range r.Rules {
		if !ruleHasModel(cands, rl.Models) {
			continue
		}
		if rl.When != nil && !rl.When.match(&e) {
			continue
		}
		Prefer(cands, rl.Models)
		return Decision{Reason: rl.reason, Params: ruleParams(rl.Params)}
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
				ok, err := parseRuleAction(d, &act.Models, &act.Params)
				if err != nil {
					return err
				}
				if !ok {
					return d.Errf("unrecognized subdirective: %s", d.Val())
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
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	rl := &Rule{Name: d.Val()}
	if err := checkRuleName(rl.Name); err != nil {
		return nil, d.Errf("rule '%s': %v", rl.Name, err)
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	cond := new(RuleCondition)
	for n := d.Nesting(); d.NextBlock(n); {
		ok, err := parseRuleAction(d, &rl.Models, &rl.Params)
		if err != nil {
			return nil, err
		}
		if ok {
			continue
		}
		ok, err = parseRuleCondition(d, cond)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, d.Errf("unrecognized subdirective: %s", d.Val())
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

// parseRuleAction parses the action subdirective at the cursor, `models`
// or `set`, and reports whether it was one.
func parseRuleAction(d *caddyfile.Dispenser, models *[]string, params *map[string]json.RawMessage) (bool, error) {
	switch d.Val() {
	case "models":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return true, d.ArgErr()
		}
		*models = append(*models, args...)
	case "set":
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		path := d.Val()
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		val := ruleTokenJSON(d)
		if d.NextArg() {
			return true, d.ArgErr()
		}
		if *params == nil {
			*params = make(map[string]json.RawMessage)
		}
		if _, dup := (*params)[path]; dup {
			return true, d.Errf("param '%s' set twice", path)
		}
		(*params)[path] = val
	default:
		return false, nil
	}
	return true, nil
}

// parseRuleCondition parses the condition subdirective at the cursor
// into c and reports whether it was one.
func parseRuleCondition(d *caddyfile.Dispenser, c *RuleCondition) (bool, error) {
	name := d.Val()
	switch name {
	case "keywords", "keywords_all":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return true, d.ArgErr()
		}
		for _, a := range args {
			if strings.TrimSpace(a) == "" {
				return true, d.Errf("%s: empty keyword", name)
			}
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
		var s string
		if !d.AllArgs(&s) {
			return true, d.ArgErr()
		}
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return true, d.Errf("invalid %s value '%s': want a non-negative integer", name, s)
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
			v = b
			if d.NextArg() {
				return true, d.ArgErr()
			}
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
		if c.HeaderRegex == nil {
			c.HeaderRegex = make(map[string]string)
		}
		if _, dup := c.HeaderRegex[field]; dup {
			return true, d.Errf("header_regex for %s already set", field)
		}
		c.HeaderRegex[field] = pat

	case "field":
		if err := parseRuleField(d, c); err != nil {
			return true, err
		}

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
		group := new(RuleCondition)
		for n := d.Nesting(); d.NextBlock(n); {
			if d.Val() == "scope" {
				if _, err := parseRuleCondition(d, group); err != nil {
					return true, err
				}
				continue
			}
			var alt *RuleCondition
			if d.Val() == "and" {
				var err error
				if alt, err = parseRuleConditionBlock(d); err != nil {
					return true, err
				}
			} else {
				alt = new(RuleCondition)
				ok, err := parseRuleCondition(d, alt)
				if err != nil {
					return true, err
				}
				if !ok {
					return true, d.Errf("unrecognized condition: %s", d.Val())
				}
			}
			group.Or = append(group.Or, alt)
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

// parseRuleConditionBlock parses the block of an `and` or `not`
// subdirective.
func parseRuleConditionBlock(d *caddyfile.Dispenser) (*RuleCondition, error) {
	name := d.Val()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := new(RuleCondition)
	for n := d.Nesting(); d.NextBlock(n); {
		ok, err := parseRuleCondition(d, c)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, d.Errf("unrecognized condition: %s", d.Val())
		}
	}
	if c.empty() {
		return nil, d.Errf("%s block has no conditions", name)
	}
	return c, nil
}

// parseRuleField parses `field <path> <operator> <values...>` into c.
func parseRuleField(d *caddyfile.Dispenser, c *RuleCondition) error {
	var path, op string
	if !d.Args(&path, &op) {
		return d.ArgErr()
	}
	if !strings.HasPrefix(op, "$") || d.Token().Quoted() {
		// field <path> <value>: short for $eq
		d.Prev()
		op = "$eq"
	}
	kind, ok := ruleOps[op]
	if !ok {
		return d.Errf("field %s: unknown operator '%s' (want %s)", path, op, ruleOpNames)
	}
	var val json.RawMessage
	switch kind {
	case ruleOpIn, ruleOpNin:
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
	case ruleOpRegex:
		var pat string
		if !d.AllArgs(&pat) {
			return d.ArgErr()
		}
		val = ruleJSONString(pat)
	default:
		if !d.NextArg() {
			return d.ArgErr()
		}
		val = ruleTokenJSON(d)
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	if _, err := compileRuleFieldOp(op, val); err != nil {
		return d.Errf("field %s: %v", path, err)
	}
	if c.Fields == nil {
		c.Fields = make(map[string]map[string]json.RawMessage)
	}
	ops := c.Fields[path]
	if ops == nil {
		ops = make(map[string]json.RawMessage)
		c.Fields[path] = ops
	}
	if _, dup := ops[op]; dup {
		return d.Errf("field %s: operator %s given twice", path, op)
	}
	ops[op] = val
	return nil
}

// ruleTokenJSON returns the value of the current token as JSON: the
// token itself when it is valid JSON and not in double quotes, else the
// token as a JSON string.
func ruleTokenJSON(d *caddyfile.Dispenser) json.RawMessage {
	v := d.Val()
	if !strings.HasPrefix(d.ValRaw(), `"`) {
		var buf bytes.Buffer
		if json.Compact(&buf, []byte(v)) == nil {
			return buf.Bytes()
		}
	}
	return ruleJSONString(v)
}

// ruleJSONString returns s as a JSON string.
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

// checkRuleModels checks an action's models.
func checkRuleModels(models []string) error {
	if slices.Contains(models, "") {
		return errors.New("empty model name")
	}
	return nil
}

// checkRuleParams checks an action's params.
func checkRuleParams(params map[string]json.RawMessage) error {
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

// label names rule i in errors.
func (rl *Rule) label(i int) string {
	if rl.Name != "" {
		return rl.Name
	}
	return "#" + strconv.Itoa(i+1)
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
type ruleScope uint8

const (
	ruleScopeLastUser ruleScope = iota
	ruleScopeConversation
	ruleScopeSystem
	ruleScopes // number of scopes
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

// provision compiles c; parent is the scope it inherits.
func (c *RuleCondition) provision(parent ruleScope) error {
	c.scope = parent
	if c.Scope != "" {
		s, err := parseRuleScope(c.Scope)
		if err != nil {
			return err
		}
		c.scope = s
	}

	var err error
	if c.kwAny, err = ruleKeywords(c.Keywords); err != nil {
		return fmt.Errorf("keywords: %v", err)
	}
	if c.kwAll, err = ruleKeywords(c.KeywordsAll); err != nil {
		return fmt.Errorf("keywords_all: %v", err)
	}

	c.re, c.reLits = nil, nil
	if c.Regex != "" {
		if c.re, err = regexp.Compile(c.Regex); err != nil {
			return fmt.Errorf("invalid regex '%s': %v", c.Regex, err)
		}
		c.reLits = ruleRegexLits(c.Regex)
	}

	if c.MinTokens < 0 || c.MaxTokens < 0 {
		return errors.New("token bounds must not be negative")
	}
	if c.MaxTokens > 0 && c.MinTokens > c.MaxTokens {
		return fmt.Errorf("min_tokens %d exceeds max_tokens %d", c.MinTokens, c.MaxTokens)
	}

	c.headers = c.headers[:0]
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
	slices.SortFunc(c.headers, func(a, b ruleHeader) int { return cmp.Compare(a.name, b.name) })

	c.fields = c.fields[:0]
	for path, ops := range c.Fields {
		if path == "" {
			return errors.New("field with an empty path")
		}
		if len(ops) == 0 {
			return fmt.Errorf("field %s: no operators", path)
		}
		f := ruleField{path: path}
		for _, op := range slices.Sorted(maps.Keys(ops)) {
			fo, err := compileRuleFieldOp(op, ops[op])
			if err != nil {
				return fmt.Errorf("field %s: %v", path, err)
			}
			f.ops = append(f.ops, fo)
		}
		c.fields = append(c.fields, f)
	}
	slices.SortFunc(c.fields, func(a, b ruleField) int { return cmp.Compare(a.path, b.path) })

	for i, sub := range c.And {
		if sub == nil {
			return fmt.Errorf("and: condition #%d is empty", i+1)
		}
		if err := sub.provision(c.scope); err != nil {
			return err
		}
	}
	for i, sub := range c.Or {
		if sub == nil {
			return fmt.Errorf("or: condition #%d is empty", i+1)
		}
		if err := sub.provision(c.scope); err != nil {
			return err
		}
	}
	if c.Not != nil {
		if err := c.Not.provision(c.scope); err != nil {
			return err
		}
	}
	return nil
}

// ruleKeywords compiles keywords.
func ruleKeywords(kws []string) ([]ruleLit, error) {
	if len(kws) == 0 {
		return nil, nil
	}
	out := make([]ruleLit, len(kws))
	for i, kw := range kws {
		if strings.TrimSpace(kw) == "" {
			return nil, errors.New("empty keyword")
		}
		out[i] = newRuleLit(kw)
	}
	return out, nil
}

// foldsScope reports whether evaluating c may fold the text of scope s.
func (c *RuleCondition) foldsScope(s ruleScope) bool {
	if c.scope == s {
		for _, lits := range [][]ruleLit{c.kwAny, c.kwAll, c.reLits} {
			for _, l := range lits {
				if !l.caseless {
					return true
				}
			}
		}
	}
	for _, sub := range c.And {
		if sub.foldsScope(s) {
			return true
		}
	}
	for _, sub := range c.Or {
		if sub.foldsScope(s) {
			return true
		}
	}
	return c.Not != nil && c.Not.foldsScope(s)
}

// match reports whether c holds for the request of e. The cheap tests
// go first: flags, headers and the request's token estimate, then body
// fields and keywords, then token estimates of a part of the text, then
// the regex.
func (c *RuleCondition) match(e *ruleEval) bool {
	req := e.req
	if c.Tools != nil && *c.Tools != req.HasTools {
		return false
	}
	if c.Images != nil && *c.Images != req.HasImages {
		return false
	}
	if c.JSONMode != nil && *c.JSONMode != req.JSONMode {
		return false
	}
	for i := range c.headers {
		if !c.headers[i].match(req.Header) {
			return false
		}
	}
	bounded := c.MinTokens > 0 || c.MaxTokens > 0
	if bounded && c.scope == ruleScopeConversation && !c.inBounds(e) {
		return false // the request's estimate: free
	}
	if len(c.fields) > 0 {
		body := unsafe.String(unsafe.SliceData(req.Body), len(req.Body))
		for i := range c.fields {
			if !c.fields[i].match(body) {
				return false
			}
		}
	}
	for i := range c.kwAll {
		if !e.contains(c.scope, &c.kwAll[i]) {
			return false
		}
	}
	if len(c.kwAny) > 0 && !e.containsAny(c.scope, c.kwAny) {
		return false
	}
	if bounded && c.scope != ruleScopeConversation && !c.inBounds(e) {
		return false // an estimate of the text: after the cheaper tests
	}
	if c.re != nil {
		if c.reLits != nil && !e.containsAny(c.scope, c.reLits) {
			return false
		}
		if !c.re.MatchString(e.text(c.scope)) {
			return false
		}
	}
	for _, sub := range c.And {
		if !sub.match(e) {
			return false
		}
	}
	if len(c.Or) > 0 {
		found := false
		for _, sub := range c.Or {
			if sub.match(e) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if c.Not != nil && c.Not.match(e) {
		return false
	}
	return true
}

// inBounds reports whether the tokens of c's text are within its bounds.
func (c *RuleCondition) inBounds(e *ruleEval) bool {
	if c.scope != ruleScopeConversation && e.have[c.scope]&ruleHaveTokens == 0 {
		// tokens.Estimate never returns more than the length in bytes,
		// which may settle it without an estimate.
		l := len(e.text(c.scope))
		if l < c.MinTokens {
			return false
		}
		if c.MinTokens == 0 && l <= c.MaxTokens {
			return true
		}
	}
	n := e.tokens(c.scope)
	return n >= c.MinTokens && (c.MaxTokens == 0 || n <= c.MaxTokens)
}

// ruleEval is the state of one Select call: the request and what has
// been derived from its text so far, computed on first use.
type ruleEval struct {
	req *Request
	// foldConv: fold the conversation, and take the folded text of the
	// other scopes from it, rather than fold each scope on its own.
	foldConv bool
	lowers   [ruleScopes]string
	toks     [ruleScopes]int
	have     [ruleScopes]uint8
}

const (
	ruleHaveLower uint8 = 1 << iota
	ruleHaveTokens
	ruleAligned // the folded text has the offsets of the text
)

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

// contains reports whether the text of scope s contains lit.
func (e *ruleEval) contains(s ruleScope, lit *ruleLit) bool {
	if lit.caseless {
		return lit.in(e.text(s))
	}
	return lit.in(e.lower(s))
}

// containsAny reports whether the text of scope s contains any of lits.
func (e *ruleEval) containsAny(s ruleScope, lits []ruleLit) bool {
	for i := range lits {
		if e.contains(s, &lits[i]) {
			return true
		}
	}
	return false
}

// lower is the case-folded text of scope s, folded once per Select:
// the last user message and the system prompt are slices of the folded
// conversation when it is folded anyway (and folding kept the offsets),
// and scopes with the same text share it.
func (e *ruleEval) lower(s ruleScope) string {
	if e.have[s]&ruleHaveLower != 0 {
		return e.lowers[s]
	}
	text := e.text(s)
	lower, aligned, found := "", false, false
	if s != ruleScopeConversation && e.foldConv {
		conv := e.lower(ruleScopeConversation)
		if off, ok := ruleOffset(e.req.Conversation, text); ok && e.have[ruleScopeConversation]&ruleAligned != 0 {
			lower, aligned, found = conv[off:off+len(text)], true, true
		}
	}
	for o := range ruleScopes {
		if found {
			break
		}
		if o != s && e.have[o]&ruleHaveLower != 0 && sameString(e.text(o), text) {
			lower, aligned, found = e.lowers[o], e.have[o]&ruleAligned != 0, true
		}
	}
	if !found {
		lower, aligned = ruleLower(text)
	}
	e.lowers[s] = lower
	e.have[s] |= ruleHaveLower
	if aligned {
		e.have[s] |= ruleAligned
	}
	return lower
}

// tokens is the estimated tokens of scope s.
func (e *ruleEval) tokens(s ruleScope) int {
	if s == ruleScopeConversation {
		return e.req.PromptTokens
	}
	if e.have[s]&ruleHaveTokens == 0 {
		e.toks[s] = tokens.Estimate(e.text(s))
		e.have[s] |= ruleHaveTokens
	}
	return e.toks[s]
}

// sameString reports whether a and b are the same bytes in memory.
func sameString(a, b string) bool {
	return len(a) == len(b) && unsafe.StringData(a) == unsafe.StringData(b)
}

// ruleOffset returns the offset of part in whole when part is a slice of
// whole (as BuildRequest makes the last user message and the system
// prompt of the conversation).
func ruleOffset(whole, part string) (int, bool) {
	if len(part) == 0 {
		return 0, true
	}
	if len(whole) < len(part) {
		return 0, false
	}
	off := uintptr(unsafe.Pointer(unsafe.StringData(part))) - uintptr(unsafe.Pointer(unsafe.StringData(whole)))
	if off > uintptr(len(whole)-len(part)) {
		return 0, false
	}
	return int(off), true
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
		if h.re != nil {
			if h.re.MatchString(v) {
				return true
			}
		} else if slices.Contains(h.values, v) {
			return true
		}
	}
	return false
}

// ruleOp is a field operator.
type ruleOp uint8

const (
	ruleOpEq ruleOp = iota + 1
	ruleOpNe
	ruleOpGt
	ruleOpGte
	ruleOpLt
	ruleOpLte
	ruleOpIn
	ruleOpNin
	ruleOpRegex
)

var ruleOps = map[string]ruleOp{
	"$eq": ruleOpEq, "$ne": ruleOpNe,
	"$gt": ruleOpGt, "$gte": ruleOpGte, "$lt": ruleOpLt, "$lte": ruleOpLte,
	"$in": ruleOpIn, "$nin": ruleOpNin, "$regex": ruleOpRegex,
}

const ruleOpNames = "$eq, $ne, $gt, $gte, $lt, $lte, $in, $nin or $regex"

// ruleField tests a body field with one or more operators.
type ruleField struct {
	path string
	ops  []ruleFieldOp
}

// match looks the field up in body and applies the operators.
func (f *ruleField) match(body string) bool {
	r := gjson.Get(body, f.path)
	for i := range f.ops {
		if !f.ops[i].match(r) {
			return false
		}
	}
	return true
}

// ruleFieldOp is one compiled operator and its operand.
type ruleFieldOp struct {
	op   ruleOp
	val  ruleValue
	list []ruleValue
	re   *regexp.Regexp
}

// compileRuleFieldOp compiles operator op with the JSON operand raw.
func compileRuleFieldOp(op string, raw json.RawMessage) (ruleFieldOp, error) {
	kind, ok := ruleOps[op]
	if !ok {
		return ruleFieldOp{}, fmt.Errorf("unknown operator '%s' (want %s)", op, ruleOpNames)
	}
	if !json.Valid(raw) {
		return ruleFieldOp{}, fmt.Errorf("%s: invalid JSON value", op)
	}
	v := gjson.ParseBytes(raw)
	fo := ruleFieldOp{op: kind}
	switch kind {
	case ruleOpIn, ruleOpNin:
		if !v.IsArray() {
			return fo, fmt.Errorf("%s takes a list of values, got %s", op, raw)
		}
		v.ForEach(func(_, e gjson.Result) bool {
			fo.list = append(fo.list, newRuleValue(e))
			return true
		})
	case ruleOpRegex:
		if v.Type != gjson.String {
			return fo, fmt.Errorf("%s takes a pattern string, got %s", op, raw)
		}
		re, err := regexp.Compile(v.Str)
		if err != nil {
			return fo, fmt.Errorf("invalid regex '%s': %v", v.Str, err)
		}
		fo.re = re
	case ruleOpGt, ruleOpGte, ruleOpLt, ruleOpLte:
		if v.Type != gjson.Number && v.Type != gjson.String {
			return fo, fmt.Errorf("%s takes a number or a string, got %s", op, raw)
		}
		fo.val = newRuleValue(v)
	default:
		fo.val = newRuleValue(v)
	}
	return fo, nil
}

// match applies the operator to the field value r.
func (o *ruleFieldOp) match(r gjson.Result) bool {
	if !r.Exists() {
		return o.op == ruleOpNe || o.op == ruleOpNin
	}
	switch o.op {
	case ruleOpEq:
		return o.val.equal(r)
	case ruleOpNe:
		return !o.val.equal(r)
	case ruleOpIn, ruleOpNin:
		for i := range o.list {
			if o.list[i].equal(r) {
				return o.op == ruleOpIn
			}
		}
		return o.op == ruleOpNin
	case ruleOpRegex:
		switch r.Type {
		case gjson.String:
			return o.re.MatchString(r.Str)
		case gjson.Number, gjson.True, gjson.False:
			return o.re.MatchString(r.Raw)
		}
		return false
	}
	c, ok := o.val.compare(r)
	if !ok {
		return false
	}
	switch o.op {
	case ruleOpGt:
		return c > 0
	case ruleOpGte:
		return c >= 0
	case ruleOpLt:
		return c < 0
	default: // ruleOpLte
		return c <= 0
	}
}

// ruleValue is an operand: a JSON value.
type ruleValue struct {
	typ gjson.Type
	str string // a string, or the compact JSON of an object or array
	num float64
}

func newRuleValue(r gjson.Result) ruleValue {
	v := ruleValue{typ: r.Type, str: r.Str, num: r.Num}
	if r.Type == gjson.JSON {
		v.str = ruleCompact(r.Raw)
	}
	return v
}

// equal reports whether r is the same JSON value: same type, same
// number (numerically) or string; objects and arrays compare by their
// compact text.
func (v *ruleValue) equal(r gjson.Result) bool {
	if r.Type != v.typ {
		return false
	}
	switch v.typ {
	case gjson.String:
		return r.Str == v.str
	case gjson.Number:
		return r.Num == v.num
	case gjson.JSON:
		return ruleCompact(r.Raw) == v.str
	}
	return true // null, true, false
}

// compare compares r with v: numbers numerically, strings lexically;
// ok is false for other types or when the types differ.
func (v *ruleValue) compare(r gjson.Result) (c int, ok bool) {
	switch {
	case v.typ == gjson.Number && r.Type == gjson.Number:
		return cmp.Compare(r.Num, v.num), true
	case v.typ == gjson.String && r.Type == gjson.String:
		return strings.Compare(r.Str, v.str), true
	}
	return 0, false
}

// ruleCompact returns the compact form of the JSON text s.
func ruleCompact(s string) string {
	var buf bytes.Buffer
	if json.Compact(&buf, []byte(s)) != nil {
		return s
	}
	return buf.String()
}

// ruleLower folds the letter case of s: each letter becomes the lower
// case of its upper case (simple Unicode mappings), so that the case
// variants that a (?i) regex matches become one letter: k, K and the
// Kelvin sign become k, s, S and ſ become s, σ, Σ and ς become σ.
// Invalid UTF-8 is kept as it is. It is fast for ASCII (eight bytes at a
// time) and, with a table, for the rest of the Basic Multilingual Plane,
// and returns s itself when there is nothing to change. aligned reports
// whether every changed letter kept its length in bytes, so that offsets
// into s are offsets into the result.
func ruleLower(s string) (lower string, aligned bool) {
	tab := ruleFoldTable()
	i := ruleLowerPrefix(tab, s)
	if i == len(s) {
		return s, true
	}
	src := unsafe.Slice(unsafe.StringData(s), len(s))
	b := make([]byte, 0, len(s)+utf8.UTFMax)
	aligned = true
	start := 0 // s[start:i] is unchanged and not yet copied
	for i < len(s) {
		if i+8 <= len(s) {
			if w := ruleLoad64(src[i:]); w&ruleHigh == 0 {
				if m := ruleUpperMask(w); m != 0 {
					b = append(b, s[start:i]...)
					b = ruleAppend64(b, w|m>>2)
					start = i + 8
				}
				i += 8
				continue
			}
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				b = append(b, s[start:i]...)
				b = append(b, c+'a'-'A')
				start = i + 1
			}
			i++
			continue
		}
		if c >= 0xE1 && c <= 0xEF && c != 0xED && i+2 < len(s) {
			// a three-byte rune, the common case in Chinese text, inline
			c1, c2 := s[i+1], s[i+2]
			if c1&0xC0 == 0x80 && c2&0xC0 == 0x80 {
				r := uint(c&0x0F)<<12 | uint(c1&0x3F)<<6 | uint(c2&0x3F)
				if tab[r>>3]&(1<<(r&7)) == 0 {
					i += 3
					continue
				}
			}
		}
		r, n, fold := ruleRune(tab, s, i)
		if fold {
			l := ruleFold(r)
			b = append(b, s[start:i]...)
			b = utf8.AppendRune(b, l)
			if utf8.RuneLen(l) != n {
				aligned = false
			}
			start = i + n
		}
		i += n
	}
	b = append(b, s[start:]...)
	return unsafe.String(unsafe.SliceData(b), len(b)), aligned
}

// ruleLowerPrefix returns the length of the longest prefix of s that
// ruleLower leaves as it is.
func ruleLowerPrefix(tab *ruleFoldBits, s string) int {
	src := unsafe.Slice(unsafe.StringData(s), len(s))
	i := 0
	for i < len(s) {
		if i+8 <= len(s) {
			if w := ruleLoad64(src[i:]); w&ruleHigh == 0 {
				if m := ruleUpperMask(w); m != 0 {
					return i + bits.TrailingZeros64(m)/8
				}
				i += 8
				continue
			}
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				return i
			}
			i++
			continue
		}
		if c >= 0xE1 && c <= 0xEF && c != 0xED && i+2 < len(s) {
			// a three-byte rune, the common case in Chinese text, inline
			c1, c2 := s[i+1], s[i+2]
			if c1&0xC0 == 0x80 && c2&0xC0 == 0x80 {
				r := uint(c&0x0F)<<12 | uint(c1&0x3F)<<6 | uint(c2&0x3F)
				if tab[r>>3]&(1<<(r&7)) == 0 {
					i += 3
					continue
				}
			}
		}
		_, n, fold := ruleRune(tab, s, i)
		if fold {
			return i
		}
		i += n
	}
	return i
}

// ruleRune decodes the non-ASCII rune at s[i]: the rune, its length, and
// whether ruleFold changes it. Two- and three-byte runes are decoded
// inline and looked up in tab; a malformed sequence is one byte that
// does not change.
func ruleRune(tab *ruleFoldBits, s string, i int) (r rune, n int, fold bool) {
	c := s[i]
	switch {
	case c >= 0xC2 && c <= 0xDF && i+1 < len(s) && s[i+1]&0xC0 == 0x80:
		r, n = rune(c&0x1F)<<6|rune(s[i+1]&0x3F), 2
	case c >= 0xE1 && c <= 0xEC && i+2 < len(s) && s[i+1]&0xC0 == 0x80 && s[i+2]&0xC0 == 0x80:
		// E0 (overlong forms) and ED (surrogates) take the slow path.
		r, n = rune(c&0x0F)<<12|rune(s[i+1]&0x3F)<<6|rune(s[i+2]&0x3F), 3
	case c >= 0xEE && c <= 0xEF && i+2 < len(s) && s[i+1]&0xC0 == 0x80 && s[i+2]&0xC0 == 0x80:
		r, n = rune(c&0x0F)<<12|rune(s[i+1]&0x3F)<<6|rune(s[i+2]&0x3F), 3
	default:
		r, n = utf8.DecodeRuneInString(s[i:])
		return r, n, ruleFold(r) != r
	}
	return r, n, tab[r>>3]&(1<<(r&7)) != 0
}

// ruleFold is the case folding of ruleLower for one rune.
func ruleFold(r rune) rune {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return r
	}
	return unicode.ToLower(unicode.ToUpper(r))
}

// ruleFoldBits has a bit for each rune of the Basic Multilingual Plane
// that ruleFold changes.
type ruleFoldBits [1 << 13]byte

// ruleFoldTable builds the table once, at the first Provision.
var ruleFoldTable = sync.OnceValue(func() *ruleFoldBits {
	t := new(ruleFoldBits)
	for r := rune(0); r <= 0xFFFF; r++ {
		if ruleFold(r) != r {
			t[r>>3] |= 1 << (r & 7)
		}
	}
	return t
})

const (
	ruleHigh = 0x8080808080808080
	ruleOnes = 0x0101010101010101
)

// ruleUpperMask returns 0x80 in each byte of w (all ASCII) that is an
// upper-case letter: b+0x3f has the high bit set from 'A' up, b+0x25
// from 'Z'+1 up; no byte carries into the next.
func ruleUpperMask(w uint64) uint64 {
	return ((w + (0x80-'A')*ruleOnes) &^ (w + (0x80-'Z'-1)*ruleOnes)) & ruleHigh
}

func ruleLoad64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

func ruleAppend64(b []byte, w uint64) []byte {
	return append(b, byte(w), byte(w>>8), byte(w>>16), byte(w>>24),
		byte(w>>32), byte(w>>40), byte(w>>48), byte(w>>56))
}

// ruleLit is a string to look for in a text, case-insensitively.
type ruleLit struct {
	s string // case-folded by ruleLower
	// caseless: s has no letter with case, so it is in the text exactly
	// when it is in the folded text, and the text need not be folded.
	caseless bool
	rare     int // offset in s of its probably rarest byte
}

func newRuleLit(s string) ruleLit {
	l, _ := ruleLower(s)
	lit := ruleLit{s: strings.Clone(l), caseless: true}
	for _, r := range s {
		if ruleFold(r) != r || unicode.SimpleFold(r) != r {
			lit.caseless = false
			break
		}
	}
	for i := 1; i < len(lit.s); i++ {
		if ruleByteRank(lit.s[i]) < ruleByteRank(lit.s[lit.rare]) {
			lit.rare = i
		}
	}
	return lit
}

// in reports whether text contains l.s. Instead of the first byte, as
// strings.Index does, it looks for the rarest byte with IndexByte, which
// stops far less often in prose ("refactor" is looked for by its f, not
// its r): several times faster on a few kilobytes of text.
func (l *ruleLit) in(text string) bool {
	s, r := l.s, l.rare
	if len(s) <= 1 || len(text) < len(s) {
		return strings.Contains(text, s)
	}
	b := s[r]
	for i := r; i < len(text); {
		k := strings.IndexByte(text[i:], b)
		if k < 0 {
			return false
		}
		p := i + k - r // where s would start
		if p+len(s) > len(text) {
			return false
		}
		if text[p:p+len(s)] == s {
			return true
		}
		i += k + 1
	}
	return false
}

// ruleCommonBytes are the most frequent bytes of folded English prose,
// most frequent first.
const ruleCommonBytes = " etaoinsrhldcumfpgwyb,.vk\n'\"-x0j1q2z"

// ruleByteRank guesses how frequent b is in folded prompts, English or
// Chinese: the higher, the more frequent.
func ruleByteRank(b byte) int {
	if i := strings.IndexByte(ruleCommonBytes, b); i >= 0 {
		return 100 - i
	}
	switch {
	case b >= 0xE0 && b <= 0xEF: // lead bytes of CJK and other 3-byte runes
		return 90
	case b >= 0xC2 && b <= 0xDF: // lead bytes of 2-byte runes
		return 80
	case b >= 0x80 && b <= 0xBF: // continuation bytes: spread over 64 values
		return 40
	}
	return 0
}

// ruleRegexLits returns literals of which the folded text of every match
// of pattern contains one (RE2's prefilter idea, for the simple cases:
// literals, concatenations, alternations, groups and repetitions), or
// nil when there are none to tell. Go's regexp takes hundreds of
// nanoseconds per byte on patterns without a literal prefix; looking for
// the literals first skips it on most texts.
func ruleRegexLits(pattern string) []ruleLit {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil
	}
	lits, ok := ruleRequired(re.Simplify(), 0)
	if !ok {
		return nil
	}
	out := make([]ruleLit, len(lits))
	for i, l := range lits {
		out[i] = newRuleLit(l)
	}
	return out
}

// ruleMaxLits bounds the literals of a regex prefilter.
const ruleMaxLits = 16

// ruleRequired returns strings one of which every match of re contains,
// as the regex would match them (case-insensitively for (?i) literals).
func ruleRequired(re *syntax.Regexp, depth int) ([]string, bool) {
	if depth > 100 {
		return nil, false
	}
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			for _, r := range re.Rune {
				if !ruleFoldsAlike(r) {
					return nil, false
				}
			}
		}
		if len(re.Rune) == 0 || slices.Contains(re.Rune, utf8.RuneError) {
			return nil, false // the regex reads invalid UTF-8 as U+FFFD
		}
		return []string{string(re.Rune)}, true
	case syntax.OpCapture, syntax.OpPlus:
		return ruleRequired(re.Sub[0], depth+1)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return ruleRequired(re.Sub[0], depth+1)
		}
	case syntax.OpConcat:
		var best []string
		for _, sub := range re.Sub {
			if l, ok := ruleRequired(sub, depth+1); ok && ruleLitsScore(l) > ruleLitsScore(best) {
				best = l
			}
		}
		return best, best != nil
	case syntax.OpAlternate:
		var all []string
		for _, sub := range re.Sub {
			l, ok := ruleRequired(sub, depth+1)
			if !ok || len(all)+len(l) > ruleMaxLits {
				return nil, false
			}
			all = append(all, l...)
		}
		return all, true
	}
	return nil, false
}

// ruleFoldsAlike reports whether all the case variants of r that (?i)
// matches fold to the same rune.
func ruleFoldsAlike(r rune) bool {
	f := ruleFold(r)
	for o := unicode.SimpleFold(r); o != r; o = unicode.SimpleFold(o) {
		if ruleFold(o) != f {
			return false
		}
	}
	return true
}

// ruleLitsScore rates a prefilter: the longer its shortest literal, the
// fewer texts it lets through.
func ruleLitsScore(lits []string) int {
	if len(lits) == 0 {
		return -1
	}
	n := len(lits[0])
	for _, l := range lits[1:] {
		n = min(n, len(l))
	}
	return n
}

// Interface guards
var (
	_ Strategy              = (*Rules)(nil)
	_ caddy.Provisioner     = (*Rules)(nil)
	_ caddy.Validator       = (*Rules)(nil)
	_ caddyfile.Unmarshaler = (*Rules)(nil)
)
