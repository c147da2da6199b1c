package llmroute

import (
	"bytes"
	"encoding/json"
)

// A scanner of JSON text that is known to be valid: it walks the members
// of an object or the elements of an array in place, without copying
// the text (gjson's ParseBytes and GetBytes copy what they return, a
// whole body for its root), so that reading a request costs memory only
// for what is kept.

// member is one member of a JSON object, with where its key and value
// begin in the text scanned.
type member struct {
	name       []byte // the key, unescaped
	keyStart   int    // where the key's opening quote is
	value      []byte // the value's JSON text
	valueStart int
}

// key returns the member's key.
func (m *member) key() string { return string(m.name) }

// is reports whether the member's key is k.
func (m *member) is(k string) bool { return string(m.name) == k }

// eachMember calls fn for each member of the object value at b[start:]
// (after white space), in order, until fn returns false. It does nothing
// if the value is no object. b must be valid JSON.
func eachMember(b []byte, start int, fn func(m member) bool) {
	i := skipSpace(b, start)
	if i >= len(b) || b[i] != '{' {
		return
	}
	for i = skipSpace(b, i+1); i < len(b) && b[i] == '"'; {
		end := skipString(b, i)
		m := member{name: b[i+1 : end-1], keyStart: i}
		if bytes.IndexByte(m.name, '\\') >= 0 {
			m.name = []byte(unquote(b[i:end]))
		}
		i = skipSpace(b, end) // at ':'
		i = skipSpace(b, i+1) // at the value
		end = skipValue(b, i) // after it
		m.value, m.valueStart = b[i:end], i
		if !fn(m) {
			return
		}
		i = skipSpace(b, end) // at ',' or '}'
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
}

// lookup returns the JSON text of the value at keys in the object b
// (the first member of each key, as gjson finds it), or nil. b must be
// valid JSON.
func lookup(b []byte, keys ...string) []byte {
	for _, key := range keys {
		var found []byte
		eachMember(b, 0, func(m member) bool {
			if m.is(key) {
				found = m.value
				return false
			}
			return true
		})
		if found == nil {
			return nil
		}
		b = found
	}
	return b
}

// eachElement calls fn for each element of the array value at b
// (after white space), in order, until fn returns false. It does
// nothing if the value is no array. b must be valid JSON.
func eachElement(b []byte, fn func(v []byte) bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return
	}
	for i = skipSpace(b, i+1); i < len(b) && b[i] != ']'; {
		end := skipValue(b, i)
		if !fn(b[i:end]) {
			return
		}
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
}

// jsonString returns the string value v unescaped, and false if v is no
// string.
func jsonString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	return unquote(v), true
}

// unquote returns the JSON string s (quotes included) unescaped.
func unquote(s []byte) string {
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s[1 : len(s)-1])
	}
	var out string
	_ = json.Unmarshal(s, &out) // (valid JSON: cannot fail)
	return out
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string that starts at
// b[i], a quote: past its closing quote, the first one not escaped by an
// odd run of backslashes (or len(b) if there is none).
func skipString(b []byte, i int) int {
	for {
		j := bytes.IndexByte(b[i+1:], '"')
		if j < 0 {
			return len(b)
		}
		i += j + 1
		k := i - 1
		for b[k] == '\\' {
			k--
		}
		if (i-1-k)%2 == 0 {
			return i + 1
		}
	}
}

// skipValue returns the index just past the value that starts at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return i
}
