package jsonscan

import (
	"encoding/json"
	"fmt"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// TestScanMatchesGJSON: the scanner finds the members and elements gjson
// finds, at the same places.
func TestScanMatchesGJSON(t *testing.T) {
	for _, doc := range []string{
		`{}`, ` { } `, `[]`, `[ ]`, `{"a":1}`, ` {"a" : 1 , "b":[1,{"c":"}"}], "d":"\"]}" ,"e":null}  `,
		`{"k\u0065y":true,"":false,"x\\":"\\","y":-1.5e+3}`, "{\n\t\"a\"\r\n:\t[ [ ] , { } ]\n}",
		`["a",1,true,null,{"b":[2]},[3,[4]],"\\\"",-0]`, `[[],{}]`,
	} {
		root := gjson.Parse(doc)
		var want, got []string
		root.ForEach(func(k, v gjson.Result) bool {
			want = append(want, k.Str+"="+v.Raw)
			if root.IsObject() {
				want[len(want)-1] += "@" + string(rune('0'+k.Index%10))
			}
			return true
		})
		EachMember([]byte(doc), 0, func(m Member) bool {
			if doc[m.ValueStart:m.ValueStart+len(m.Value)] != string(m.Value) || doc[m.KeyStart] != '"' {
				t.Errorf("%s: member %q at wrong places", doc, m.Key())
			}
			got = append(got, m.Key()+"="+string(m.Value)+"@"+string(rune('0'+m.KeyStart%10)))
			return true
		})
		EachElement([]byte(doc), func(v []byte) bool {
			got = append(got, "="+string(v))
			return true
		})
		if len(got) != len(want) {
			t.Errorf("%s: got %q, want %q", doc, got, want)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: got %q, want %q", doc, got, want)
				break
			}
		}
	}
}

// TestLookup: Lookup finds what gjson finds at a path of keys, in place.
func TestLookup(t *testing.T) {
	for _, body := range []string{
		`{"stream_options":{"include_usage":true}}`,
		`{"a":1, "stream_options" : { "x":[1,{"include_usage":false}], "include_usage" : "true" } }`,
		`{"stream_options":{"include_usage":false},"stream_options":{"include_usage":true}}`,
		`{"stream_options":{"include_usage":true,"include_usage":false}}`,
		`{"stream_options":[{"include_usage":true}]}`,
		`{"stream_options":null}`,
		`{"stre\u0061m_options":{"include_usage":1}}`,
		`{"messages":[{"content":"\"stream_options\":{\"include_usage\":true}"}]}`,
		`[]`,
	} {
		want := gjson.Get(body, "stream_options.include_usage")
		got := Lookup([]byte(body), "stream_options", "include_usage")
		if string(got) != want.Raw || gjson.ParseBytes(got).Bool() != want.Bool() {
			t.Errorf("%s: got %q, gjson %q", body, got, want.Raw)
		}
	}
}

// unescapeCases are JSON strings, quotes included, with every kind of
// escape and surrogate escapes that pair and that do not.
var unescapeCases = []string{
	`""`, `"plain"`, `"a\nb\tc\r\"q\" \\ \/ \b\f"`, `"\u4f60\u597D"`, `"\ud83d\ude00 smile"`, `"lone \ud800 high"`,
	`"lone \udc00 low"`, `"\ud800\u0041"`, `"\ud800\ud800\udc00"`, `"\udc00\ud800"`, `"\ud800"`, `"x\ud800\n"`,
	`"\u00e9t\u00C9"`, `"end\\"`, `"\\\""`, `"\u2028\u2029"`, `"x\u0000y"`, `"\uFFFD\uffff"`, `"é 你 😀"`,
}

// TestUnescape: String unescapes as encoding/json does.
func TestUnescape(t *testing.T) {
	for _, c := range unescapeCases {
		var want string
		if err := json.Unmarshal([]byte(c), &want); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if got, ok := String([]byte(c)); !ok || got != want {
			t.Errorf("String(%s) = %q, %v; want %q", c, got, ok, want)
		}
		if got := Unquote([]byte(c)); got != want {
			t.Errorf("Unquote(%s) = %q, want %q", c, got, want)
		}
	}
	// Invalid UTF-8 stays as it is, with escapes or without, and so does
	// what is not an escape.
	for c, want := range map[string]string{
		"\"\xff\"": "\xff", "\"\xff\\n\"": "\xff\n", `"\x"`: `\x`, `"\u12"`: `\u12`, `"\u12g4z"`: `\u12g4z`, `"a\"`: `a\`,
	} {
		if got, _ := String([]byte(c)); got != want {
			t.Errorf("String(%q) = %q, want %q", c, got, want)
		}
	}
	for _, v := range []string{``, `"`, `"a`, `1`, `null`, `["a"]`, `{"a":"b"}`} {
		if got, ok := String([]byte(v)); ok || got != "" {
			t.Errorf("String(%s) = %q, %v; want no string", v, got, ok)
		}
	}
}

// FuzzUnescape holds String to encoding/json on valid strings of valid
// UTF-8.
func FuzzUnescape(f *testing.F) {
	for _, c := range unescapeCases {
		f.Add(c[1 : len(c)-1])
	}
	f.Fuzz(func(t *testing.T, text string) {
		s := []byte(`"` + text + `"`)
		var want string
		if !utf8.ValidString(text) || json.Unmarshal(s, &want) != nil {
			String(s) // any text: no panic
			return
		}
		if got, ok := String(s); !ok || got != want {
			t.Fatalf("String(%s) = %q, %v; want %q", s, got, ok, want)
		}
	})
}

// FuzzWalk: the walkers never panic or loop on any text, and on valid
// JSON they find what gjson finds.
func FuzzWalk(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"b":[1,"x",{"c":null}],"d":"\"}"}`, `[1,[2],{"a":"b"}]`, `{"k\u0065y":"v"}`, `{"a":{"b":{"c":3}}}`, `{"\ud800\u0041":1}`,
		`{`, `{"`, `{"a`, `{"a"`, `{"a":`, `{"a" 1}`, `{"a":1,`, `[`, `[1,`, `[}`, `[,]`, `{"a":}`, `"`, `{"\`, `{"a":"\`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		b := []byte(doc)
		var got []string
		EachMember(b, 0, func(m Member) bool {
			got = append(got, m.Key()+"="+string(m.Value))
			String(m.Value)
			EachElement(m.Value, func(v []byte) bool { String(v); return true })
			return true
		})
		EachElement(b, func(v []byte) bool {
			got = append(got, "="+string(v))
			return true
		})
		Lookup(b, "a", "b")
		if !json.Valid(b) || !utf8.Valid(b) {
			return
		}
		var want []string
		root := gjson.ParseBytes(b)
		root.ForEach(func(k, v gjson.Result) bool {
			if root.IsObject() {
				var key string // (gjson's unescaping pairs any two surrogate escapes)
				_ = json.Unmarshal([]byte(k.Raw), &key)
				want = append(want, key+"="+v.Raw)
			} else if root.IsArray() {
				want = append(want, "="+v.Raw)
			}
			return true
		})
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: got %q, gjson %q", doc, got, want)
		}
	})
}
