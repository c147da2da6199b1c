// Package jsonscan reads JSON text in place: Check validates it in one
// pass, and EachMember, EachElement and Lookup walk the members of an
// object or the elements of an array of text known to be valid without
// copying it (gjson's ParseBytes and GetBytes copy what they return, a
// whole body for its root), so that reading a request costs memory only
// for what is kept. Strings are unescaped only when they hold escapes.
package jsonscan

import (
	"bytes"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
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
// if the value is no object. b should be valid JSON: on other text it
// stops early or reads nonsense, but never panics or loops.
func EachMember(b []byte, start int, fn func(m Member) bool) {
	i := SkipSpace(b, start)
	if i >= len(b) || b[i] != '{' {
		return
	}
	for i = SkipSpace(b, i+1); i < len(b) && b[i] == '"'; {
		end := SkipString(b, i)
		if end < i+2 { // unclosed
			return
		}
		m := Member{Name: b[i+1 : end-1], KeyStart: i}
		if bytes.IndexByte(m.Name, '\\') >= 0 {
			m.Name = []byte(Unquote(b[i:end]))
		}
		i = SkipSpace(b, end) // at ':'
		if i >= len(b) || b[i] != ':' {
			return
		}
		i = SkipSpace(b, i+1) // at the value
		end = SkipValue(b, i) // after it
		if end <= i {
			return
		}
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
// (the first member of each key, as gjson finds it), or nil. b should
// be valid JSON, as for EachMember.
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
// nothing if the value is no array. b should be valid JSON, as for
// EachMember.
func EachElement(b []byte, fn func(v []byte) bool) {
	i := SkipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return
	}
	for i = SkipSpace(b, i+1); i < len(b) && b[i] != ']'; {
		end := SkipValue(b, i)
		if end <= i || !fn(b[i:end]) {
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
	text, escaped, ok := Content(v)
	if !ok {
		return "", false
	}
	if !escaped {
		return string(text), true
	}
	var out strings.Builder
	out.Grow(len(text))
	Unescape(&out, text)
	return out.String(), true
}

// Content returns the text of the string value v as it is written,
// between its quotes, whether it holds escapes, and false if v is no
// string.
func Content(v []byte) (text []byte, escaped, ok bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return nil, false, false
	}
	text = v[1 : len(v)-1]
	return text, bytes.IndexByte(text, '\\') >= 0, true
}

// Unquote returns the JSON string s (quotes included) unescaped.
func Unquote(s []byte) string {
	out, _ := String(s)
	return out
}

// Unescape writes the text of a JSON string, as it is written between
// its quotes, to out unescaped, as encoding/json does (a surrogate
// escape that makes no pair with the next one becomes U+FFFD), except
// that it copies any other byte as it is, invalid UTF-8 included (as it
// does a string without escapes) and also an escape that is not one.
func Unescape(out *strings.Builder, text []byte) {
	for len(text) > 0 {
		i := bytes.IndexByte(text, '\\')
		if i < 0 {
			out.Write(text)
			return
		}
		out.Write(text[:i])
		text = text[i:]
		if len(text) < 2 {
			break
		}
		n := 2 // the escape's length
		switch c := text[1]; c {
		case '"', '\\', '/':
			out.WriteByte(c)
		case 'b':
			out.WriteByte('\b')
		case 'f':
			out.WriteByte('\f')
		case 'n':
			out.WriteByte('\n')
		case 'r':
			out.WriteByte('\r')
		case 't':
			out.WriteByte('\t')
		case 'u':
			r := hex4(text[2:])
			if r < 0 {
				n = 0
				break
			}
			n = 6
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if len(text) >= 12 && text[6] == '\\' && text[7] == 'u' {
					r2 = hex4(text[8:])
				}
				if p := utf16.DecodeRune(r, r2); p != utf8.RuneError {
					r, n = p, 12
				} else {
					r = utf8.RuneError
				}
			}
			out.WriteRune(r)
		default:
			n = 0
		}
		if n == 0 { // not an escape: the backslash as it is
			out.WriteByte('\\')
			n = 1
		}
		text = text[n:]
	}
	out.Write(text)
}

// hex4 returns the value of the four hexadecimal digits that b begins
// with, or -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	r := rune(0)
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
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

// SkipValue returns the index just past the value that starts at b[i]
// (len(b) if there is none).
func SkipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
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
