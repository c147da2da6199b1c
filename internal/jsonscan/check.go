package jsonscan

import "encoding/binary"

// Verdict is what Check found of a text.
type Verdict uint8

const (
	Valid   Verdict = iota
	Invalid         // not one JSON value (RFC 8259)
	TooDeep         // objects and arrays nested deeper than allowed
)

// Check tells, in one pass without recursion (and without
// allocation up to 256 levels), whether b is one JSON value nested at most maxDepth
// levels deep. It is as strict as encoding/json (it does not check
// UTF-8, which neither does gjson), and it skips over the plain bytes of
// strings, where a request spends most of its length, eight at a time.
func Check(b []byte, maxDepth int) Verdict {
	var small [4]uint64 // a bit per open container: set for an array
	open := small[:]
	isArray := func(d int) bool { return open[d/64]&(1<<(d%64)) != 0 }
	depth := 0
	i := SkipSpace(b, 0)
	wantValue := true
	for {
		if wantValue {
			if i >= len(b) {
				return Invalid
			}
			switch c := b[i]; c {
			case '{', '[':
				if depth == maxDepth {
					return TooDeep
				}
				if depth/64 == len(open) {
					open = append(open, 0)
				}
				if c == '[' {
					open[depth/64] |= 1 << (depth % 64)
				} else {
					open[depth/64] &^= 1 << (depth % 64)
				}
				depth++
				i = SkipSpace(b, i+1)
				if i < len(b) && b[i] == c+2 { // ']' and '}' follow '[' and '{' by two
					depth--
					i++
					wantValue = false
					continue
				}
				if c == '{' {
					if i = memberKey(b, i); i < 0 {
						return Invalid
					}
				}
				continue
			case '"':
				i = scanString(b, i+1)
			case 't':
				i = literal(b, i, "true")
			case 'f':
				i = literal(b, i, "false")
			case 'n':
				i = literal(b, i, "null")
			default:
				i = scanNumber(b, i)
			}
			if i < 0 {
				return Invalid
			}
			wantValue = false
		}
		// After a value.
		i = SkipSpace(b, i)
		if depth == 0 {
			if i == len(b) {
				return Valid
			}
			return Invalid
		}
		if i >= len(b) {
			return Invalid
		}
		array := isArray(depth - 1)
		switch c := b[i]; {
		case c == ',':
			i = SkipSpace(b, i+1)
			if !array {
				if i = memberKey(b, i); i < 0 {
					return Invalid
				}
			}
			wantValue = true
		case c == ']' && array, c == '}' && !array:
			depth--
			i++
		default:
			return Invalid
		}
	}
}

// memberKey scans an object member's key and colon at b[i], returning
// the index of its value (after white space), or -1.
func memberKey(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = scanString(b, i+1); i < 0 {
		return -1
	}
	if i = SkipSpace(b, i); i >= len(b) || b[i] != ':' {
		return -1
	}
	return SkipSpace(b, i+1)
}

// literal returns the index past word at b[i], or -1.
func literal(b []byte, i int, word string) int {
	if len(b)-i < len(word) || string(b[i:i+len(word)]) != word {
		return -1
	}
	return i + len(word)
}

// scanNumber returns the index past the number at b[i], or -1.
func scanNumber(b []byte, i int) int {
	digits := func(i int) int {
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(i + 1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

// SWAR constants: a byte repeated over a word.
const (
	ones   = 0x0101010101010101
	highs  = 0x8080808080808080
	quotes = '"' * ones
	slashs = '\\' * ones
)

// plain reports whether none of the eight bytes in x ends a string's
// plain run: no quote, backslash or control character. (For each test,
// (v - ones) &^ v & highs is non-zero exactly when a byte of v is zero,
// and (x - n*ones) &^ x & highs when a byte of x is below n <= 128.)
func plain(x uint64) bool {
	q, s := x^quotes, x^slashs
	return ((q-ones)&^q|(s-ones)&^s|(x-0x20*ones)&^x)&highs == 0
}

// scanString returns the index past the closing quote of the string
// whose content begins at b[i], or -1 if it is not a valid string.
func scanString(b []byte, i int) int {
	for {
		for i+8 <= len(b) && plain(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i >= len(b) {
			return -1
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 {
					return -1
				}
				for _, h := range b[i+2 : i+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return -1
					}
				}
				i += 6
			default:
				return -1
			}
		default:
			i++
		}
	}
}
