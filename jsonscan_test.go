package llmroute

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
		eachMember([]byte(doc), 0, func(m member) bool {
			if doc[m.valueStart:m.valueStart+len(m.value)] != string(m.value) || doc[m.keyStart] != '"' {
				t.Errorf("%s: member %q at wrong places", doc, m.key())
			}
			got = append(got, m.key()+"="+string(m.value)+"@"+string(rune('0'+m.keyStart%10)))
			return true
		})
		eachElement([]byte(doc), func(v []byte) bool {
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
