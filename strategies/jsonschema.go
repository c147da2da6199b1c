package strategies

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
)

// maxSchemaDepth bounds how deep MatchSchema follows a schema (and
// $ref), so a schema that refers to itself cannot loop. maxSchemaWork
// bounds the work of one match, in bytes of schema and value read: the
// client writes the schema, and one whose anyOf branches refer back to
// it would otherwise take time exponential in the depth.
const (
	maxSchemaDepth = 64
	maxSchemaWork  = 32 << 20
	schemaStepWork = 128 // what a step costs besides the bytes it reads
)

// errSchemaCost: a match that would read more than maxSchemaWork bytes.
var errSchemaCost = fmt.Errorf("schema too costly to check (more than %d MiB read)", maxSchemaWork>>20)

// MatchSchema checks a JSON value against a JSON schema, in the subset
// structured outputs use: type (one or a list), enum, const,
// properties, required, additionalProperties, items, minItems,
// maxItems, minLength, maxLength, minimum, maximum, anyOf, oneOf,
// allOf and local $ref ("#/$defs/name"). Other keywords are ignored.
func MatchSchema(schema, v gjson.Result) error {
	sc := schemaCheck{root: schema, refs: make(map[string]gjson.Result)}
	err := sc.match(schema, v, "$", 0)
	if sc.work > maxSchemaWork {
		// (a failed branch of anyOf or oneOf may have hidden it)
		return errSchemaCost
	}
	return err
}

// schemaCheck is one match of a value against a schema.
type schemaCheck struct {
	root gjson.Result            // the whole schema, for $ref
	refs map[string]gjson.Result // the $refs resolved so far
	work int                     // bytes read so far
}

// spend counts n bytes read, and reports when the match read too many.
func (sc *schemaCheck) spend(n int) error {
	if sc.work += n + 1; sc.work > maxSchemaWork {
		return errSchemaCost
	}
	return nil
}

func (sc *schemaCheck) match(s, v gjson.Result, at string, depth int) error {
	if err := sc.spend(schemaStepWork + len(s.Raw)); err != nil {
		return err
	}
	if depth > maxSchemaDepth {
		return fmt.Errorf("%s: schema nested too deep", at)
	}
	if s.Type == gjson.True || !s.Exists() {
		return nil
	}
	if s.Type == gjson.False {
		return fmt.Errorf("%s: not allowed", at)
	}
	if ref := s.Get(`\$ref`).Str; ref != "" {
		path, ok := strings.CutPrefix(ref, "#/")
		if !ok && ref != "#" {
			return nil // not a local reference: not checked
		}
		target, seen := sc.refs[ref]
		if !seen {
			if err := sc.spend(len(sc.root.Raw)); err != nil {
				return err
			}
			target = sc.root
			if ok {
				target = sc.root.Get(strings.ReplaceAll(strings.ReplaceAll(path, ".", `\.`), "/", "."))
			}
			sc.refs[ref] = target
		}
		if err := sc.match(target, v, at, depth+1); err != nil {
			return err
		}
	}
	if t := s.Get("type"); t.Exists() {
		var types []string
		if t.IsArray() {
			for _, x := range t.Array() {
				types = append(types, x.Str)
			}
		} else {
			types = []string{t.Str}
		}
		if !slices.ContainsFunc(types, func(typ string) bool { return isType(v, typ) }) {
			return fmt.Errorf("%s: want %s", at, strings.Join(types, " or "))
		}
	}
	if e := s.Get("enum"); e.IsArray() {
		values := e.Array()
		if err := sc.spend(len(e.Raw) + len(values)*len(v.Raw)); err != nil {
			return err
		}
		if !slices.ContainsFunc(values, func(x gjson.Result) bool { return sameJSON(x, v) }) {
			return fmt.Errorf("%s: not one of the enum", at)
		}
	}
	if err := sc.spend(len(v.Raw)); err != nil { // (const, required, the items, a string's length)
		return err
	}
	if c := s.Get("const"); c.Exists() && !sameJSON(c, v) {
		return fmt.Errorf("%s: not the const", at)
	}
	switch {
	case v.IsObject():
		props := s.Get("properties")
		for _, name := range s.Get("required").Array() {
			if err := sc.spend(len(v.Raw)); err != nil {
				return err
			}
			if !v.Get(gjsonKey(name.Str)).Exists() {
				return fmt.Errorf("%s: %q is required", at, name.Str)
			}
		}
		ap := s.Get("additionalProperties")
		var err error
		v.ForEach(func(k, x gjson.Result) bool {
			if err = sc.spend(len(props.Raw)); err != nil {
				return false
			}
			if p := props.Get(gjsonKey(k.Str)); p.Exists() {
				err = sc.match(p, x, at+"."+k.Str, depth+1)
			} else if ap.Exists() {
				err = sc.match(ap, x, at+"."+k.Str, depth+1)
			}
			return err == nil
		})
		if err != nil {
			return err
		}
	case v.IsArray():
		items := v.Array()
		if n := s.Get("minItems"); n.Exists() && int64(len(items)) < n.Int() {
			return fmt.Errorf("%s: fewer than %d items", at, n.Int())
		}
		if n := s.Get("maxItems"); n.Exists() && int64(len(items)) > n.Int() {
			return fmt.Errorf("%s: more than %d items", at, n.Int())
		}
		if is := s.Get("items"); is.Exists() {
			for i, x := range items {
				if err := sc.match(is, x, fmt.Sprintf("%s[%d]", at, i), depth+1); err != nil {
					return err
				}
			}
		}
	case v.Type == gjson.String:
		n := int64(len([]rune(v.Str)))
		if m := s.Get("minLength"); m.Exists() && n < m.Int() {
			return fmt.Errorf("%s: shorter than %d", at, m.Int())
		}
		if m := s.Get("maxLength"); m.Exists() && n > m.Int() {
			return fmt.Errorf("%s: longer than %d", at, m.Int())
		}
	case v.Type == gjson.Number:
		if m := s.Get("minimum"); m.Exists() && v.Num < m.Num {
			return fmt.Errorf("%s: below %g", at, m.Num)
		}
		if m := s.Get("maximum"); m.Exists() && v.Num > m.Num {
			return fmt.Errorf("%s: above %g", at, m.Num)
		}
	}
	for _, sub := range s.Get("allOf").Array() {
		if err := sc.match(sub, v, at, depth+1); err != nil {
			return err
		}
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		alts := s.Get(kw)
		if !alts.IsArray() {
			continue
		}
		matched := 0
		for _, sub := range alts.Array() {
			if sc.match(sub, v, at, depth+1) == nil {
				matched++
			}
		}
		if matched == 0 || kw == "oneOf" && matched > 1 {
			return fmt.Errorf("%s: does not match %s", at, kw)
		}
	}
	return nil
}

// isType reports whether v is of the JSON schema type typ.
func isType(v gjson.Result, typ string) bool {
	switch typ {
	case "object":
		return v.IsObject()
	case "array":
		return v.IsArray()
	case "string":
		return v.Type == gjson.String
	case "number":
		return v.Type == gjson.Number
	case "integer":
		return v.Type == gjson.Number && v.Num == math.Trunc(v.Num)
	case "boolean":
		return v.Type == gjson.True || v.Type == gjson.False
	case "null":
		return v.Type == gjson.Null
	}
	return true // an unknown type is not checked
}

// sameJSON reports whether two JSON values are equal.
func sameJSON(a, b gjson.Result) bool {
	switch {
	case a.Type != b.Type:
		return false
	case a.Type == gjson.Number:
		return a.Num == b.Num
	case a.Type == gjson.String:
		return a.Str == b.Str
	case a.IsArray():
		x, y := a.Array(), b.Array()
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	case a.IsObject():
		am, bm := a.Map(), b.Map()
		if len(am) != len(bm) {
			return false
		}
		for k, x := range am {
			if y, ok := bm[k]; !ok || !sameJSON(x, y) {
				return false
			}
		}
		return true
	}
	return true // null, true, false
}

// gjsonKey escapes a member name for a gjson path.
func gjsonKey(k string) string {
	var b strings.Builder
	for _, r := range k {
		if strings.ContainsRune(`.*?|#@\!=<>%`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
