package translate

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// goldenPairs maps a testdata directory to the pair it tests.
var goldenPairs = map[string][2]string{
	"openai_to_anthropic": {OpenAI, Anthropic},
	"anthropic_to_openai": {Anthropic, OpenAI},
}

// TestGolden runs every case under testdata/<pair>/<case>/. A case holds
// the client's request.json and any of:
//
//   - response.json: a whole upstream answer;
//   - stream.sse: an upstream event stream;
//   - error_<status>.json: an upstream error body;
//
// each compared, once translated, with the file of the same name plus
// .golden. A request the pair must refuse has request.json.golden
// holding the error message instead of a body.
func TestGolden(t *testing.T) {
	now = func() time.Time { return time.Unix(1700000000, 0) }
	t.Cleanup(func() { now = time.Now })
	for dir, apis := range goldenPairs {
		pair := Lookup(apis[0], apis[1])
		cases, err := os.ReadDir(filepath.Join("testdata", dir))
		if err != nil {
			t.Fatal(err)
		}
		if len(cases) == 0 {
			t.Fatalf("no cases under testdata/%s", dir)
		}
		for _, c := range cases {
			t.Run(dir+"/"+c.Name(), func(t *testing.T) {
				runGoldenCase(t, pair, filepath.Join("testdata", dir, c.Name()))
			})
		}
	}
}

func runGoldenCase(t *testing.T, pair Pair, dir string) {
	req := readFile(t, filepath.Join(dir, "request.json"))
	out, x, err := pair.Request(req, Options{})
	if err != nil {
		if _, ok := err.(*RequestError); !ok {
			t.Fatalf("request error %v is not a *RequestError", err)
		}
		checkGolden(t, filepath.Join(dir, "request.json.golden"), []byte(err.Error()+"\n"))
		return
	}
	if !gjson.ValidBytes(out) {
		t.Fatalf("translated request is not JSON: %s", out)
	}
	checkGolden(t, filepath.Join(dir, "request.json.golden"), indent(t, out))

	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		name := filepath.Base(f)
		switch {
		case name == "response.json":
			out, err := x.Response(readFile(t, f))
			if err != nil {
				checkGolden(t, f+".golden", []byte("error: "+err.Error()+"\n"))
				continue
			}
			if !gjson.ValidBytes(out) {
				t.Fatalf("translated response is not JSON: %s", out)
			}
			checkGolden(t, f+".golden", indent(t, out))
		case name == "stream.sse":
			checkGolden(t, f+".golden", translateStream(t, x, readFile(t, f)))
		case strings.HasPrefix(name, "error_") && strings.HasSuffix(name, ".json"):
			status, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, "error_"), ".json"))
			if err != nil {
				t.Fatalf("bad error file name %s", name)
			}
			checkGolden(t, f+".golden", indent(t, x.Error(status, readFile(t, f))))
		}
	}
}

// translateStream feeds the events of an upstream stream to x one by
// one and returns the client's stream, checking that every event it
// produced is well formed.
func translateStream(t *testing.T, x Exchange, in []byte) []byte {
	t.Helper()
	var out []byte
	for _, ev := range bytes.Split(bytes.TrimSpace(in), []byte("\n\n")) {
		_, data := splitEvent(ev)
		var err error
		if out, err = x.Event(out, data); err != nil {
			out = append(out, "error: "+err.Error()+"\n"...)
			break
		}
	}
	checkStream(t, out)
	return out
}

// splitEvent returns the event name and data of one event's lines.
func splitEvent(ev []byte) (name, data []byte) {
	for line := range bytes.Lines(ev) {
		line = bytes.TrimRight(line, "\r\n")
		if v, ok := bytes.CutPrefix(line, []byte("event:")); ok {
			name = bytes.TrimSpace(v)
		} else if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = bytes.TrimSpace(v)
		}
	}
	return name, data
}

// checkStream fails unless out is a sequence of events of data lines
// holding JSON objects or [DONE], each preceded by at most one event
// line whose name equals the data's type.
func checkStream(t *testing.T, out []byte) {
	t.Helper()
	if len(out) == 0 {
		return
	}
	body, _, _ := bytes.Cut(out, []byte("error: "))
	if len(body) == 0 {
		return
	}
	if !bytes.HasSuffix(body, []byte("\n\n")) {
		t.Fatalf("stream does not end with a blank line: %q", out)
	}
	for _, ev := range bytes.Split(bytes.TrimSuffix(body, []byte("\n\n")), []byte("\n\n")) {
		name, data := splitEvent(ev)
		if string(data) == "[DONE]" {
			continue
		}
		if !gjson.ValidBytes(data) || !gjson.ParseBytes(data).IsObject() {
			t.Fatalf("event data is not a JSON object: %q", ev)
		}
		if name != nil && gjson.GetBytes(data, "type").Str != string(name) {
			t.Fatalf("event name %q does not match its type: %q", name, ev)
		}
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// indent pretty-prints JSON, so golden files are easy to read and diff.
func indent(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(name, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("%v (run go test ./translate -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}
