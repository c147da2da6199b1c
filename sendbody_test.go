package llmroute

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// sentBytes returns what the upstream gets of b, checking that every way
// of reading it gives the same bytes: in one slice, read through small
// buffers, copied out in one io.Copy, and replayed through
// GetBody after a first read.
func sentBytes(t testing.TB, b *sendBody) []byte {
	t.Helper()
	want := b.bytes()
	up, _ := http.NewRequest(http.MethodPost, "http://upstream.example/", nil)
	b.setOn(up, nil)
	if up.ContentLength != int64(len(want)) {
		t.Fatalf("ContentLength %d, body of %d bytes", up.ContentLength, len(want))
	}
	for _, size := range []int{1, 3, 7, 4096} {
		r, err := up.GetBody()
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		buf := make([]byte, size)
		for {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Fatal("Read returned nothing and no error")
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("read %d bytes at a time: %q, want %q", size, got, want)
		}
	}
	var w bytes.Buffer
	if n, err := io.Copy(&w, up.Body); err != nil || n != int64(len(want)) || !bytes.Equal(w.Bytes(), want) {
		t.Fatalf("io.Copy: %d bytes, %v: %q, want %q", n, err, w.Bytes(), want)
	}
	if n, _ := up.Body.Read(make([]byte, 8)); n != 0 {
		t.Fatal("the body read on after io.Copy")
	}
	return want
}

func TestRewriteBodyDropsModels(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"model":"a","models":["x","y"],"n":1}`, `{"model":"b","n":1}`},
		{`{"models":["x"],"model":"a","n":1}`, `{"model":"b","n":1}`},
		{`{"models":["x"] , "model":"a"}`, `{"model":"b"}`},
		{`{"n":1,"models":[],"model":"a"}`, `{"n":1,"model":"b"}`},
		{`{"model":"a","n":1,"models":["x"]}`, `{"model":"b","n":1}`},
		{`{"model":"a","models":["x"]}`, `{"model":"b"}`},
		{`{"model":"a"}`, `{"model":"b"}`},
	} {
		rewritten, err := rewriteBody([]byte(tc.body), "model", "b", true)
		if err != nil {
			t.Fatal(err)
		}
		if got := sentBytes(t, &rewritten); string(got) != tc.want {
			t.Errorf("%s: got %s, want %s", tc.body, got, tc.want)
		}
	}
}

// TestRewriteBodyDoesNotCopy: the body sent upstream is the client's
// body around the new model name, not a copy of it.
func TestRewriteBodyDoesNotCopy(t *testing.T) {
	body := []byte(`{"model":"a","models":["x"],"messages":[{"role":"user","content":"` + strings.Repeat("x", 1<<20) + `"}]}`)
	for _, drop := range []bool{false, true} {
		// (a stream's usage chunk, asked for with a new member)
		for _, params := range []map[string]json.RawMessage{nil, includeUsage} {
			var rewritten sendBody
			n := allocated(func() {
				var err error
				if rewritten, err = rewriteBody(body, "model", "mock-small", drop, params); err != nil {
					t.Fatal(err)
				}
			})
			if n > 4<<10 {
				t.Errorf("drop=%v, %v: rewriting a 1 MiB body allocated %d bytes", drop, params, n)
			}
			if rewritten.size() < 1<<20 {
				t.Errorf("drop=%v, %v: %d bytes", drop, params, rewritten.size())
			}
		}
	}
}

// TestRewriteBodyAddsMembers: parameters whose first key the body lacks
// are added at the end of the object without copying the body; others
// go through sjson.
func TestRewriteBodyAddsMembers(t *testing.T) {
	usage := map[string]json.RawMessage{"stream_options.include_usage": json.RawMessage(`true`)}
	for _, tc := range []struct {
		body   string
		drop   bool
		params []map[string]json.RawMessage
		want   string
	}{
		{`{"model":"a","stream":true}`, false, []map[string]json.RawMessage{usage},
			`{"model":"b","stream":true,"stream_options":{"include_usage":true}}`},
		{`{"model":"a","stream":true,"stream_options":{"x":1}}`, false, []map[string]json.RawMessage{usage},
			`{"model":"b","stream":true,"stream_options":{"x":1,"include_usage":true}}`},
		{`{"model":"a" , "models":["x"] }`, true, []map[string]json.RawMessage{usage},
			`{"model":"b" ,"stream_options":{"include_usage":true}}`},
		{`{"model":"a"}`, false, []map[string]json.RawMessage{nil, {"a.b.c": json.RawMessage(`[1]`), "z": json.RawMessage(`2`)}, usage},
			`{"model":"b","a":{"b":{"c":[1]}},"z":2,"stream_options":{"include_usage":true}}`},
		// Two sets on one key: the later wins, through sjson.
		{`{"model":"a"}`, false, []map[string]json.RawMessage{{"m.x": json.RawMessage(`1`)}, {"m": json.RawMessage(`{"y":2}`)}},
			`{"model":"b","m":{"y":2}}`},
		// An array index, through sjson.
		{`{"model":"a"}`, false, []map[string]json.RawMessage{{"stop.0": json.RawMessage(`"x"`)}},
			`{"model":"b","stop":["x"]}`},
		// The models list set again is dropped all the same.
		{`{"model":"a"}`, true, []map[string]json.RawMessage{{"models": json.RawMessage(`["x"]`)}},
			`{"model":"b"}`},
	} {
		rewritten, err := rewriteBody([]byte(tc.body), "model", "b", tc.drop, tc.params...)
		if err != nil {
			t.Fatal(err)
		}
		if got := sentBytes(t, &rewritten); string(got) != tc.want {
			t.Errorf("%s with %v: got %s, want %s", tc.body, tc.params, got, tc.want)
		}
	}
}
