package jsonscan

import (
	"encoding/json"
	"strings"
	"testing"
)

// depthOf returns how deeply the objects and arrays of valid JSON nest.
func depthOf(b []byte) int {
	depth, most := 0, 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = SkipString(b, i) - 1
		case '{', '[':
			depth++
			most = max(most, depth)
		case '}', ']':
			depth--
		}
	}
	return most
}

// want is what Check must answer for b: encoding/json's verdict,
// and the depth limit on valid text. (Invalid text that also nests too
// deep may be reported as either.)
func want(b []byte, maxDepth int) Verdict {
	switch {
	case !json.Valid(b):
		return Invalid
	case depthOf(b) > maxDepth:
		return TooDeep
	}
	return Valid
}

// agrees reports whether Check's answer got on b is right.
func agrees(got Verdict, b []byte, maxDepth int) bool {
	w := want(b, maxDepth)
	return got == w || got == TooDeep && w == Invalid && depthOf(b) > maxDepth
}

func TestCheck(t *testing.T) {
	long := strings.Repeat("plain text of a prompt ", 20)
	cases := []string{
		``, ` `, `{}`, `[]`, ` { } `, `[ ]`, `{"a":1}`, `{"a" : [1, 2.5, -0, 1e9, -1.5E-3, true, false, null, "x"]}`,
		`"` + long + `"`, `"` + long + `\"` + long + `"`, `"` + long + `\u00e9\n\t\\\/"`, `"caf\u00E9 ☕ 中文"`,
		`{"a":1,}`, `[1,]`, `{"a"}`, `{"a":}`, `{,}`, `{"a":1 "b":2}`, `[1 2]`, `{"a":1]`, `[1}`, `{1:2}`,
		`01`, `1.`, `.5`, `1e`, `1e+`, `-`, `+1`, `- 1`, `tru`, `nul`, `truex`, `"\x"`, `"\u12g4"`, `"\u123"`,
		`"` + long, `"` + long + "\x01" + `"`, `"tab	inside"`, `"` + long + "\x1f" + `"`, `"\"`, `"\\"`,
		`{"a":1}{}`, `1 2`, `[[[[]]]]`, `[[[[[]]]]]`, `{"a":{"b":{"c":{"d":{}}}}}`, `{"a":{"b":{"c":{"d":{"e":1}}}}}`,
		`"` + strings.Repeat(`\\`, 9) + `"`, `"` + strings.Repeat(`\\`, 8) + `\"`,
		"\"\xff\xfe invalid utf-8 passes, as in encoding/json\"",
	}
	for _, c := range cases {
		if got := Check([]byte(c), 4); !agrees(got, []byte(c), 4) {
			t.Errorf("Check(%.60q) = %d, want %d", c, got, want([]byte(c), 4))
		}
	}
	// Deeper than the inline stack of 256 levels.
	deep := []byte(strings.Repeat("[", 300) + strings.Repeat("]", 300))
	if got := Check(deep, 1000); got != Valid {
		t.Errorf("300 levels with a limit of 1000: %d, want valid", got)
	}
	if got := Check(deep, 299); got != TooDeep {
		t.Errorf("300 levels with a limit of 299: %d, want too deep", got)
	}
	mixed := []byte(strings.Repeat(`[{"a":`, 150) + `1` + strings.Repeat(`}]`, 150))
	if got := Check(mixed, 300); got != Valid {
		t.Errorf("300 mixed levels: %d, want valid", got)
	}
	if got := Check(mixed[:len(mixed)-1], 300); got != Invalid {
		t.Errorf("300 mixed levels, unclosed: %d, want invalid", got)
	}
}

func TestPlainWord(t *testing.T) {
	for c := range 256 {
		word := []byte("abcdefgh")
		for pos := range 8 {
			w := append([]byte(nil), word...)
			w[pos] = byte(c)
			x := uint64(0)
			for k := 7; k >= 0; k-- {
				x = x<<8 | uint64(w[k])
			}
			special := c == '"' || c == '\\' || c < 0x20
			if plain(x) == special {
				t.Fatalf("plain(%q) = %v", w, plain(x))
			}
		}
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"model":"m","messages":[{"role":"user","content":"hi \u00e9\n"}]}`, `[1,-2.5e3,true,null]`, `{"a":"\\\""}`, `{"a":1,}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, limit := range []int{3, 64} {
			if got := Check(b, limit); !agrees(got, b, limit) {
				t.Fatalf("Check(%q, %d) = %d, want %d", b, limit, got, want(b, limit))
			}
		}
	})
}
