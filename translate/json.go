package translate

import (
	"strconv"
	"unicode/utf8"
)

// jsonw builds JSON by appending to a byte slice. Values read with gjson
// are copied as their raw JSON text, so strings are never unescaped and
// escaped again on the way through. Separators are its job: a key or a
// value written after another one gets its comma.
type jsonw struct {
	b     []byte
	comma bool // the next key or value needs a separator
}

func (w *jsonw) sep() {
	if w.comma {
		w.b = append(w.b, ',')
	}
}

// open starts an object ('{') or an array ('[').
func (w *jsonw) open(c byte) {
	w.sep()
	w.b = append(w.b, c)
	w.comma = false
}

// close ends an object ('}') or an array (']').
func (w *jsonw) close(c byte) {
	w.b = append(w.b, c)
	w.comma = true
}

// key writes an object key; the value comes next.
func (w *jsonw) key(k string) {
	w.sep()
	w.b = appendString(w.b, k)
	w.b = append(w.b, ':')
	w.comma = false
}

// raw writes a value that is already JSON.
func (w *jsonw) raw(v string) {
	w.sep()
	w.b = append(w.b, v...)
	w.comma = true
}

func (w *jsonw) str(s string) {
	w.sep()
	w.b = appendString(w.b, s)
	w.comma = true
}

func (w *jsonw) int(n int64) {
	w.sep()
	w.b = strconv.AppendInt(w.b, n, 10)
	w.comma = true
}

func (w *jsonw) bool(v bool) {
	w.sep()
	w.b = strconv.AppendBool(w.b, v)
	w.comma = true
}

// Shorthands for a key and its value.
func (w *jsonw) kraw(k, v string)       { w.key(k); w.raw(v) }
func (w *jsonw) kstr(k, v string)       { w.key(k); w.str(v) }
func (w *jsonw) kint(k string, n int64) { w.key(k); w.int(n) }

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD;
// U+2028 and U+2029 are escaped so the output is also valid JavaScript.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
