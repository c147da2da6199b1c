// Package tokens estimates how many tokens a text takes in the byte-level
// BPE tokenizers of current LLMs, without a vocabulary.
//
// Estimate mirrors the pre-tokenizer that cl100k_base and o200k_base share
// (letter runs with one optional leading space or punctuation character,
// digits in groups of up to three, punctuation runs, whitespace runs) and
// prices each piece from its shape: the length and letter case of a word,
// the length of a punctuation run, the script of non-ASCII letters. The
// prices were calibrated against both tokenizers on English, source code,
// JSON and CJK text; see README.md in this folder for the error figures.
//
// For English, code, JSON and numbers the two tokenizers agree within a few
// percent and Estimate lands near both. For Chinese, Japanese, Korean and
// other non-Latin scripts they disagree by 1.3–2×, and Estimate aims in
// between: below cl100k_base, above o200k_base.
package tokens

import (
	"math"
	"math/bits"
	"unicode/utf8"
)

// unit is the fixed-point scale of prices: 100 units make one token.
const unit = 100

// Byte classes.
const (
	cPunct   = iota // ASCII punctuation, symbols and control characters
	cLower          // a-z
	cUpper          // A-Z
	cDigit          // 0-9
	cSpace          // ' '
	cTab            // \t \v \f
	cNewline        // \r \n
	cHigh           // a byte of a multi-byte UTF-8 sequence
)

var class = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c >= 'a' && c <= 'z':
			t[c] = cLower
		case c >= 'A' && c <= 'Z':
			t[c] = cUpper
		case c >= '0' && c <= '9':
			t[c] = cDigit
		case c == ' ':
			t[c] = cSpace
		case c == '\t' || c == '\v' || c == '\f':
			t[c] = cTab
		case c == '\n' || c == '\r':
			t[c] = cNewline
		case c >= 0x80:
			t[c] = cHigh
		default:
			t[c] = cPunct
		}
	}
	return t
}()

// SWAR constants: eight bytes at a time.
const (
	lsb8 = 0x0101010101010101
	msb8 = 0x8080808080808080
	low7 = 0x7f7f7f7f7f7f7f7f
)

// load64 reads s[i:i+8] as a little-endian word (one load on amd64 and
// arm64).
func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// lowerRun returns the length of the run of a-z at s[i:]; upperRun the
// length of the run of A-Z. Eight bytes at a time: for each byte y (7
// bits), y+(0x80-lo) has bit 7 set iff y >= lo, and y+(0x7f-hi) iff
// y > hi; bytes >= 0x80 are masked out.
func lowerRun(s string, i int) int {
	if i+8 <= len(s) {
		x := load64(s, i)
		y := x & low7
		m := (y + (0x80-'a')*lsb8) &^ (y + (0x7f-'z')*lsb8) &^ x & msb8
		if m != msb8 {
			return bits.TrailingZeros64(^m&msb8) >> 3
		}
		return 8 + runSlow(s, i+8, 0x80-'a', 0x7f-'z', cLower)
	}
	return runSlow(s, i, 0x80-'a', 0x7f-'z', cLower)
}

func upperRun(s string, i int) int {
	if i+8 <= len(s) {
		x := load64(s, i)
		y := x & low7
		m := (y + (0x80-'A')*lsb8) &^ (y + (0x7f-'Z')*lsb8) &^ x & msb8
		if m != msb8 {
			return bits.TrailingZeros64(^m&msb8) >> 3
		}
		return 8 + runSlow(s, i+8, 0x80-'A', 0x7f-'Z', cUpper)
	}
	return runSlow(s, i, 0x80-'A', 0x7f-'Z', cUpper)
}

// runSlow continues lowerRun or upperRun past the first eight bytes, or
// near the end of s.
func runSlow(s string, i int, addLo, addHi uint64, cl uint8) int {
	j := i
	addLo *= lsb8
	addHi *= lsb8
	for j+8 <= len(s) {
		x := load64(s, j)
		y := x & low7
		m := (y + addLo) &^ (y + addHi) &^ x & msb8
		if m != msb8 {
			return j - i + bits.TrailingZeros64(^m&msb8)>>3
		}
		j += 8
	}
	for j < len(s) && class[s[j]] == cl {
		j++
	}
	return j - i
}

// Where a word piece stands: after another piece of the same word, or
// first, after what precedes the word.
const (
	preInner = iota // after another piece ("Response" in "getResponse")
	preNone         // start of text, a newline, a digit, a punctuation run
	preSpace        // one space (" word")
	prePunct        // one punctuation, tab or other non-letter ("(word", ".Word", "_word")
)

// Price tables, in units, indexed by where the piece stands and by its
// length in bytes (1..16). A word is split into pieces at lower→upper case
// changes ("getHTTPResponse" → "get", "HTTP", "Response"); each piece is
// priced by its length and shape.
var (
	// Lowercase or Capitalized pieces.
	lowPiece = [4][17]uint16{
		preInner: {0, 100, 102, 103, 103, 104, 105, 105, 106, 108, 115, 130, 170, 200, 215, 230, 260},
		preNone:  {0, 100, 100, 105, 105, 106, 119, 135, 146, 150, 170, 190, 215, 230, 255, 270, 285},
		preSpace: {0, 100, 100, 101, 101, 102, 102, 103, 104, 106, 112, 118, 135, 150, 165, 220, 280},
		prePunct: {0, 101, 105, 125, 125, 125, 125, 130, 200, 220, 240, 250, 260, 290, 300, 310, 320},
	}
	// ALL-CAPS pieces.
	upPiece = [4][17]uint16{
		preInner: {0, 100, 116, 117, 120, 180, 195, 204, 220, 240, 300, 360, 400, 424, 446, 500, 540},
		preNone:  {0, 100, 116, 117, 120, 180, 195, 204, 220, 240, 300, 360, 400, 424, 446, 500, 540},
		preSpace: {0, 100, 100, 101, 109, 130, 132, 135, 140, 150, 170, 250, 300, 330, 360, 380, 400},
		prePunct: {0, 105, 160, 180, 199, 199, 204, 210, 260, 290, 300, 330, 420, 460, 480, 520, 550},
	}
	// Punctuation runs (with their trailing newlines), without and with a
	// leading space; the length counts the space.
	punctNone  = [17]uint16{0, 100, 101, 110, 110, 132, 236, 250, 303, 362, 364, 428, 436, 460, 488, 488, 492}
	punctSpace = [17]uint16{0, 100, 100, 101, 106, 110, 173, 238, 300, 350, 370, 380, 392, 406, 420, 450, 476}
)

// Prices in units.
const (
	pWhitespace = 100 // a whitespace run, or newlines with the whitespace before them
	pLongLower  = 25  // each lowercase letter of a piece beyond 16
	pLongUpper  = 56  // each capital letter of a piece beyond 16
	pLongPunct  = 30  // each punctuation character of a run beyond 16
	pAccent     = 120 // extra for each accented Latin letter in a word (é, ü, ñ)
	pHan        = 94  // a Chinese character (kanji, hanzi, hanja)
	pKana       = 86  // a hiragana or katakana character
	pHangul     = 74  // a Hangul syllable or jamo
	pCyrillic   = 34  // a Cyrillic or Greek letter
	pArabic     = 28  // an Arabic or Hebrew letter
	pOtherLet   = 24  // a letter of another script (Devanagari, Thai, …)
	pSpaceHigh  = 44  // a space before a word that starts with a non-ASCII letter
	pCJKPunct   = 78  // CJK and fullwidth punctuation (，。「」)
	pSym2       = 106 // another 2-byte symbol
	pSym3       = 130 // another 3-byte symbol (arrows, math, dashes, quotes)
	pSym4       = 200 // another 4-byte symbol (emoji)
	pNumHigh    = 40  // a non-ASCII digit or number sign
)

// Estimate returns the estimated number of tokens of s. It makes one pass
// over s, allocates nothing, and is safe for concurrent use. It returns 0
// only for the empty string, and never more than len(s).
func Estimate(s string) int {
	if s == "" {
		return 0
	}
	return tokensOf(units(s, math.MaxInt), len(s))
}

// EstimateUpTo returns min(Estimate(s), limit). It stops its pass over s
// as soon as the estimate is known to reach limit, so that testing a
// bound on a long text costs about as much as estimating limit tokens of
// it. Like Estimate, it allocates nothing and is safe for concurrent use.
func EstimateUpTo(s string, limit int) int {
	switch {
	case limit <= 0:
		return limit
	case s == "":
		return 0
	case limit == 1:
		return 1 // a text that is not empty is at least one token
	case limit > len(s):
		return Estimate(s) // at most len(s) tokens
	}
	// The estimate, len(s) at most, reaches limit <= len(s) once the
	// units round up to limit tokens; units only grow along the text.
	stop := limit*unit - unit/2
	if u := units(s, stop); u < stop {
		return tokensOf(u, len(s))
	}
	return limit
}

// tokensOf returns the tokens of u units of a text of n > 0 bytes: u
// rounded, at least 1 and at most n.
func tokensOf(u, n int) int {
	t := (u + unit/2) / unit
	if t < 1 {
		t = 1
	}
	if t > n {
		t = n // byte-level BPE never needs more than one token a byte
	}
	return t
}

// units returns the estimate of s in units, or, as soon as the estimate
// of a prefix of s reaches stop, that estimate.
func units(s string, stop int) int {
	n := len(s)
	acc := 0
	var c int
	for i := 0; i < n && acc < stop; {
		// Fast path: a lowercase word of up to 7 letters, alone or after
		// one space, not followed by a capital or a non-ASCII byte.
		j := i
		if s[i] == ' ' {
			j++
		}
		if j+8 <= n && class[s[j]] == cLower {
			x := load64(s, j)
			y := x & low7
			m := (y + (0x80-'a')*lsb8) &^ (y + (0x7f-'z')*lsb8) &^ x & msb8
			if m != msb8 {
				k := j + bits.TrailingZeros64(^m&msb8)>>3
				if nc := class[s[k]]; nc != cUpper && nc != cHigh {
					if j == i {
						acc += int(lowPiece[preNone][k-j])
					} else {
						acc += int(lowPiece[preSpace][k-j])
					}
					i = k
					continue
				}
			}
		}
		switch class[s[i]] {
		case cLower, cUpper:
			i, c = word(s, i, preNone)
			acc += c
		case cDigit:
			j := i + 1
			for j < n && class[s[j]] == cDigit {
				j++
			}
			acc += (j - i + 2) / 3 * unit
			i = j
		case cSpace:
			j := i + 1
			for j < n && s[j] == ' ' {
				j++
			}
			if j == n {
				acc += pWhitespace
				i = j
				continue
			}
			// All spaces but the last form one token; the last one
			// joins the next word or punctuation run.
			switch class[s[j]] {
			case cLower, cUpper:
				if j-i > 1 {
					acc += pWhitespace
				}
				i, c = word(s, j, preSpace)
				acc += c
			case cPunct:
				if j-i > 1 {
					acc += pWhitespace
				}
				i, c = punct(s, j, true)
				acc += c
			case cDigit:
				acc += pWhitespace // digits take no leading space
				if j-i > 1 {
					acc += pWhitespace
				}
				i = j
			case cHigh:
				if j-i > 1 {
					acc += pWhitespace
				}
				i, c = high(s, j, true)
				acc += c
			default:
				i, c = space(s, i)
				acc += c
			}
		case cTab, cNewline:
			i, c = space(s, i)
			acc += c
		case cPunct:
			i, c = punct(s, i, false)
			acc += c
		default:
			i, c = high(s, i, false)
			acc += c
		}
	}
	return acc
}

// price looks up a length in a table, extending it linearly past 16.
func price(t *[17]uint16, n, extra int) int {
	if n <= 16 {
		return int(t[n])
	}
	return int(t[16]) + (n-16)*extra
}

// piece prices one word piece of u capitals followed by l lowercase
// letters, standing at pre.
func piece(u, l, pre int) int {
	if u <= 1 {
		return price(&lowPiece[pre], u+l, pLongLower)
	}
	if l == 0 {
		return price(&upPiece[pre], u, pLongUpper)
	}
	// "HTTPServer": "HTTP" + "Server".
	return price(&upPiece[pre], u-1, pLongUpper) + price(&lowPiece[preInner], l+1, pLongLower)
}

// word prices the run of letters (of any script) at s[i:], which starts
// with a letter; pre tells what precedes it.
func word(s string, i, pre int) (int, int) {
	n := len(s)
	cost := 0
	for i < n {
		c := class[s[i]]
		if c == cLower || c == cUpper || c == cHigh && latinAt(s, i) {
			j := i
			if c == cUpper {
				j += upperRun(s, i)
			}
			k := j
			if k+8 <= n { // lowerRun, inlined
				x := load64(s, k)
				y := x & low7
				m := (y + (0x80-'a')*lsb8) &^ (y + (0x7f-'z')*lsb8) &^ x & msb8
				if m != msb8 {
					k += bits.TrailingZeros64(^m&msb8) >> 3
				} else {
					k += 8 + runSlow(s, k+8, 0x80-'a', 0x7f-'z', cLower)
				}
			} else {
				k += runSlow(s, k, 0x80-'a', 0x7f-'z', cLower)
			}
			for k < n && s[k] >= 0xC3 && s[k] <= 0xC9 && latinAt(s, k) {
				// Accented Latin letters continue the piece.
				cost += pAccent
				k += 2
				k += lowerRun(s, k)
			}
			if u := j - i; u <= 1 {
				cost += price(&lowPiece[pre], u+k-j, pLongLower)
			} else {
				cost += piece(u, k-j, pre)
			}
			pre = preInner
			i = k
			continue
		}
		if c != cHigh {
			break
		}
		p, size := pHan, 3
		if !hanAt(s, i) {
			var r rune
			r, size = utf8.DecodeRuneInString(s[i:])
			if p = letterPrice(r); p == 0 {
				break
			}
		}
		if pre == preSpace {
			cost += pSpaceHigh
		}
		pre = preInner
		cost += p
		i += size
	}
	return i, cost
}

// hanAt tells whether a character of U+4000–U+9FFF but the Yijing
// hexagram symbols (U+4DC0–U+4DFF) starts at s[i]: those are all CJK
// unified ideographs, the bulk of Chinese text, and this spares decoding
// them. Their UTF-8 is a lead byte E4–E9 and two continuation bytes; the
// hexagrams start with E4 B7.
func hanAt(s string, i int) bool {
	if i+2 >= len(s) || s[i] < 0xE4 || s[i] > 0xE9 || s[i+1]&0xC0 != 0x80 || s[i+2]&0xC0 != 0x80 {
		return false
	}
	return s[i] != 0xE4 || s[i+1] != 0xB7
}

// preOf is where a word that high starts stands: after a space or not.
func preOf(space bool) int {
	if space {
		return preSpace
	}
	return preNone
}

// latinAt tells whether an accented Latin letter (U+00C0–U+024F but × and
// ÷) starts at s[i]. It continues a word piece like a lowercase letter.
func latinAt(s string, i int) bool {
	if i+1 >= len(s) {
		return false
	}
	b, c := s[i], s[i+1]
	return b >= 0xC3 && b <= 0xC9 && c&0xC0 == 0x80 && !(b == 0xC3 && (c == 0x97 || c == 0xB7))
}

// letterPrice returns the price of a non-ASCII letter, or 0 if r is not
// a letter.
func letterPrice(r rune) int {
	switch {
	case r >= 0x4E00 && r <= 0x9FFF, r >= 0x3400 && r <= 0x4DBF,
		r >= 0xF900 && r <= 0xFAFF, r >= 0x20000 && r <= 0x3134F:
		return pHan
	case r >= 0x3041 && r <= 0x30FF && r != 0x30A0 && r != 0x30FB,
		r >= 0x31F0 && r <= 0x31FF, r >= 0xFF66 && r <= 0xFF9F:
		return pKana
	case r >= 0xAC00 && r <= 0xD7A3, r >= 0x1100 && r <= 0x11FF, r >= 0x3131 && r <= 0x318E:
		return pHangul
	case r >= 0xC0 && r <= 0x24F:
		if r == 0xD7 || r == 0xF7 {
			return 0
		}
		return pAccent // priced by latinAt's callers
	case r >= 0x370 && r <= 0x52F:
		if r == 0x37E || r == 0x384 || r == 0x385 || r == 0x387 || r >= 0x482 && r <= 0x489 {
			return 0
		}
		return pCyrillic
	case r >= 0x5D0 && r <= 0x5EA, r >= 0x620 && r <= 0x64A, r >= 0x66E && r <= 0x6D3:
		return pArabic
	case r >= 0x900 && r <= 0x1FFF, r >= 0xFF21 && r <= 0xFF3A, r >= 0xFF41 && r <= 0xFF5A:
		return pOtherLet
	}
	return 0
}

// isLetterAt tells whether a letter starts at s[i].
func isLetterAt(s string, i int) bool {
	b := s[i]
	if b < utf8.RuneSelf {
		cl := class[b]
		return cl == cLower || cl == cUpper
	}
	r, _ := utf8.DecodeRuneInString(s[i:])
	return letterPrice(r) > 0
}

// punct prices the ASCII punctuation run at s[i:] with the newlines that
// follow it; space tells whether a space precedes it. A lone punctuation
// character before a letter is priced with the word instead.
func punct(s string, i int, space bool) (int, int) {
	n := len(s)
	j := i + 1
	for j < n && class[s[j]] == cPunct {
		j++
	}
	if j-i == 1 && !space && j < n {
		if c := class[s[j]]; c == cLower || c == cUpper || c == cHigh && isLetterAt(s, j) {
			return word(s, j, prePunct)
		}
	}
	k := j
	for k < n && class[s[k]] == cNewline {
		k++
	}
	if space {
		return k, price(&punctSpace, k-i+1, pLongPunct)
	}
	return k, price(&punctNone, k-i, pLongPunct)
}

// space prices the whitespace run at s[i:] that holds a tab or a newline.
func space(s string, i int) (int, int) {
	n := len(s)
	j := i
	lastNL := -1
scan:
	for ; j < n; j++ {
		switch class[s[j]] {
		case cNewline:
			lastNL = j
		case cSpace, cTab:
		default:
			break scan
		}
	}
	cost := 0
	start := i
	if lastNL >= 0 {
		// Whitespace up to the last newline is one token.
		cost += pWhitespace
		start = lastNL + 1
	}
	r := j - start // indentation after the last newline
	if r == 0 {
		return j, cost
	}
	if j == n {
		return j, cost + pWhitespace
	}
	if r > 1 {
		cost += pWhitespace
	}
	last := s[j-1]
	switch class[s[j]] {
	case cLower, cUpper:
		pre := prePunct // a tab joins the word as a non-letter prefix
		if last == ' ' {
			pre = preSpace
		}
		k, c := word(s, j, pre)
		return k, cost + c
	case cPunct:
		if last == ' ' {
			k, c := punct(s, j, true)
			return k, cost + c
		}
	case cHigh:
		if last == ' ' {
			return j - 1, cost // the main loop prices " X"
		}
	}
	return j, cost + pWhitespace
}

// high prices the non-ASCII character at s[i:] (and the word it starts);
// space tells whether a space precedes it.
func high(s string, i int, space bool) (int, int) {
	if hanAt(s, i) {
		return word(s, i, preOf(space))
	}
	r, size := utf8.DecodeRuneInString(s[i:])
	if letterPrice(r) > 0 {
		return word(s, i, preOf(space))
	}
	switch {
	case r == 0xA0 || r == 0x1680 || r >= 0x2000 && r <= 0x200A || r == 0x2028 || r == 0x2029 ||
		r == 0x202F || r == 0x205F || r == 0x3000:
		return i + size, pWhitespace
	case r >= 0xFF10 && r <= 0xFF19, r >= 0x660 && r <= 0x669, r >= 0x966 && r <= 0x96F,
		r == 0xB2, r == 0xB3, r == 0xB9, r >= 0xBC && r <= 0xBE, r >= 0x2460 && r <= 0x249B:
		return i + size, pNumHigh
	case r >= 0x3000 && r <= 0x303F, r >= 0xFF00 && r <= 0xFF65:
		return i + size, pCJKPunct
	case size <= 2: // includes invalid bytes (size 1)
		return i + size, pSym2
	case size == 3:
		return i + size, pSym3
	}
	return i + size, pSym4
}
