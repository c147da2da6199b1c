// Package jsonscan reads JSON text in place: Check validates it in one
// pass, and EachMember, EachElement and Lookup walk the members of an
// object or the elements of an array of text known to be valid without
// copying it (gjson's ParseBytes and GetBytes copy what they return, a
// whole body for its root), so that reading a request costs memory only
// for what is kept. Strings are unescaped only when they hold escapes.
package jsonscan

import (
	"bytes"
	"encoding/json"
)

// Member is one member of a JSON object, with where its key and value
// begin in the text scanned.
type Member struct {
	Name       []byte // the key, unescaped
	KeyStart   int    // where the key's opening quote is
	Value      []byte // the value's JSON text
	ValueStart int
}

// Key returns the member's key.
func (m *Member) Key() string { return string(m.Name) }

// Is reports whether the member's key is k.
func (m *Member) Is(k string) bool { return string(m.Name) == k }

// EachMember calls fn for each member of the object value at b[start:]
// (after white space), in order, until fn returns false. It does nothing
// if the value is no object. b must be valid JSON.
func EachMember(b []byte, start int, fn func(m Member) bool) {
	i := SkipSpace(b, start)
	if i >= len(b) || b[i] != '{' {
		return
	}
	for i = SkipSpace(b, i+1); i < len(b) && b[i] == '"'; {
		end := SkipString(b, i)
		m := Member{Name: b[i+1 : end-1], KeyStart: i}
		if bytes.IndexByte(m.Name, '\\') >= 0 {
			m.Name = []byte(Unquote(b[i:end]))
		}
		i = SkipSpace(b, end) // at ':'
		i = SkipSpace(b, i+1) // at the value
		end = SkipValue(b, i) // after it
		m.Value, m.ValueStart = b[i:end], i
		if !fn(m) {
			return
		}
		i = SkipSpace(b, end) // at ',' or '}'
		if i < len(b) && b[i] == ',' {
			i = SkipSpace(b, i+1)
		}
	}
}

// Lookup returns the JSON text of the value at keys in the object b
// (the first member of each key, as gjson finds it), or nil. b must be
// valid JSON.
func Lookup(b []byte, keys ...string) []byte {
	for _, key := range keys {
		var found []byte
		EachMember(b, 0, func(m Member) bool {
			if m.Is(key) {
				found = m.Value
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

// EachElement calls fn for each element of the array value at b
// (after white space), in order, until fn returns false. It does
// nothing if the value is no array. b must be valid JSON.
func EachElement(b []byte, fn func(v []byte) bool) {
	i := SkipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return
	}
	for i = SkipSpace(b, i+1); i < len(b) && b[i] != ']'; {
		end := SkipValue(b, i)
		if !fn(b[i:end]) {
			return
		}
		i = SkipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = SkipSpace(b, i+1)
		}
	}
}

// String returns the string value v unescaped, and false if v is no
// string.
func String(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	return Unquote(v), true
}

// Unquote returns the JSON string s (quotes included) unescaped.
func Unquote(s []byte) string {
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s[1 : len(s)-1])
	}
	var out string
	_ = json.Unmarshal(s, &out) // (valid JSON: cannot fail)
	return out
}

// SkipSpace returns the index of the first byte at or after i that is no
// white space.
func SkipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// SkipString returns the index just past the string that starts at
// b[i], a quote: past its closing quote, the first one not escaped by an
// odd run of backslashes (or len(b) if there is none).
func SkipString(b []byte, i int) int {
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

// SkipValue returns the index just past the value that starts at b[i].
func SkipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return SkipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = SkipString(b, i) - 1
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
