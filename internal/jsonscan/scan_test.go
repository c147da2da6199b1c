package jsonscan

import (
	"testing"

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
