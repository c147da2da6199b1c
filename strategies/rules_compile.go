package strategies

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
)

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

// compile compiles c and the conditions in it, which Validate has
// checked; parent is the scope it inherits, and kw collects the
// keywords.
func (c *RuleCondition) compile(parent ruleScope, kw *ruleKeywords) error {
	c.scope = parent
	if c.Scope != "" {
		s, err := parseRuleScope(c.Scope)
		if err != nil {
			return err
		}
		c.scope = s
	}
	c.kwAny = kw.add(c.Keywords, c.scope)
	c.kwAll = kw.add(c.KeywordsAll, c.scope)

	var err error
	c.re = nil
	if c.Regex != "" {
		if c.re, err = regexp.Compile(c.Regex); err != nil {
			return err
		}
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
		c.headers = append(c.headers, ruleHeader{name: http.CanonicalHeaderKey(name), values: vals})
	}
	for name, pat := range c.HeaderRegex {
		re, err := regexp.Compile(pat)
		if err != nil {
			return err
		}
		c.headers = append(c.headers, ruleHeader{name: http.CanonicalHeaderKey(name), re: re})
	}

	c.fields = nil
	for path, ops := range c.Fields {
		f := ruleField{path: path}
		for _, op := range slices.Sorted(maps.Keys(ops)) {
			fo, err := newRuleFieldOp(op, ops[op])
			if err != nil {
				return err
			}
			f.ops = append(f.ops, fo)
		}
		c.fields = append(c.fields, f)
	}

	for _, sub := range c.And {
		if err := sub.compile(c.scope, kw); err != nil {
			return err
		}
	}
	for _, sub := range c.Or {
		if err := sub.compile(c.scope, kw); err != nil {
			return err
		}
	}
	if c.Not != nil {
		return c.Not.compile(c.scope, kw)
	}
	return nil
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
func (kw *ruleKeywords) add(kws []string, s ruleScope) []int {
	var ids []int
	for _, k := range kws {
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
	return ids
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
