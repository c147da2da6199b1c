package strategies

import (
	"bytes"
	"cmp"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/tokens"
)

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
