package strategies

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

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
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "rule":
			rl, err := parseRule(d)
			if err != nil {
				return err
			}
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
		if c.Scope != "" && c.Scope != s {
			return true, d.Errf("scope already set to %s", c.Scope)
		}
		c.Scope = s

	case "min_tokens", "max_tokens":
		p := &c.MinTokens
		if name == "max_tokens" {
			p = &c.MaxTokens
		}
		if *p != 0 {
			return true, d.Errf("%s already set", name)
		}
		return true, intArg(d, p)

	case "tools":
		return true, ruleFlagArg(d, &c.Tools)
	case "images":
		return true, ruleFlagArg(d, &c.Images)
	case "json_mode":
		return true, ruleFlagArg(d, &c.JSONMode)

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

// ruleFlagArg parses the optional argument of a flag test, `true` (the
// default) or `false`, into dst.
func ruleFlagArg(d *caddyfile.Dispenser, dst **bool) error {
	name := d.Val()
	v := true
	if d.NextArg() {
		var err error
		if v, err = strconv.ParseBool(d.Val()); err != nil {
			return d.Errf("invalid %s value '%s': want true or false", name, d.Val())
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	*dst = &v
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

// empty reports whether c sets no test.
func (c *RuleCondition) empty() bool {
	return c.Scope == "" && len(c.Keywords) == 0 && len(c.KeywordsAll) == 0 &&
		c.Regex == "" && c.MinTokens == 0 && c.MaxTokens == 0 &&
		c.Tools == nil && c.Images == nil && c.JSONMode == nil &&
		len(c.Header) == 0 && len(c.HeaderRegex) == 0 && len(c.Fields) == 0 &&
		len(c.And) == 0 && len(c.Or) == 0 && c.Not == nil
}
