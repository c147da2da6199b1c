package llmroute

import (
	"bytes"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// failingReader gives its bytes, then an error.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func TestReadAll(t *testing.T) {
	body := []byte(strings.Repeat("0123456789", 3000)) // 30 KB: several blocks without a length
	for _, tc := range []struct {
		name   string
		length int64 // announced; -1: none
		limit  int64
		want   int // bytes read; -1: an error
	}{
		{"announced", int64(len(body)), 1 << 20, len(body)},
		{"not announced", -1, 1 << 20, len(body)},
		{"longer than announced", 100, 1 << 20, len(body)},
		{"shorter than announced", int64(len(body)) + 100, 1 << 20, len(body)},
		{"past the limit, announced", int64(len(body)), 1000, 1001},
		{"past the limit, not announced", -1, 1000, 1001},
		{"announced empty, but not", 0, 1000, 1001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
			r.ContentLength = tc.length
			got, lease, err := readAll(r, tc.limit)
			defer lease.release()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want || !bytes.Equal(got, body[:tc.want]) {
				t.Fatalf("read %d bytes, want %d", len(got), tc.want)
			}
		})
	}
	r := httptest.NewRequest("POST", "/", bytes.NewReader(nil))
	if got, _, err := readAll(r, 1000); err != nil || len(got) != 0 {
		t.Errorf("empty body: %q, %v", got, err)
	}
	// net/http's body ends a body shorter than its Content-Length with
	// io.ErrUnexpectedEOF: an error, not the end.
	for _, broken := range []error{io.ErrUnexpectedEOF, errors.New("connection reset")} {
		for _, length := range []int64{int64(len(body)) + 10, -1} {
			r := httptest.NewRequest("POST", "/", &failingReader{bytes.NewReader(body), broken})
			r.ContentLength = length
			if _, _, err := readAll(r, 1<<20); !errors.Is(err, broken) {
				t.Errorf("length %d: a body that broke off with %v read with error %v", length, broken, err)
			}
		}
	}
}
