package upstreams

import (
	"bytes"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// chunks is a reader that returns its data in pieces of random sizes.
type chunks struct {
	data []byte
	rng  *rand.Rand
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), 1+c.rng.IntN(12))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func (c *chunks) Close() error { return nil }

// TestScrubReader: however the body is split, the secret is replaced
// wherever it occurs, and nothing else changes.
func TestScrubReader(t *testing.T) {
	const secret = "sk-secret-123"
	for _, body := range []string{
		"", "plain text", secret, "x" + secret + "y", secret + secret, "sk-sk-secret-123", "sk-secret-12",
		`{"error":{"message":"Incorrect API key provided: ` + secret + `"}}`, "ends with sk-se", "sk-secret-123sk-secret-12",
		strings.Repeat("s", 40) + secret + strings.Repeat("sk-", 10),
		"data: {\"a\":1}\n\n", "sk", "s",
	} {
		want := strings.ReplaceAll(body, secret, "REDACTED*****")
		for seed := range uint64(30) {
			r := newScrubReader(&chunks{data: []byte(body), rng: rand.New(rand.NewPCG(seed, 1))}, secret, nil)
			var got bytes.Buffer
			buf := make([]byte, 1+int(seed%7))
			for {
				n, err := r.Read(buf)
				got.Write(buf[:n])
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if got.String() != want {
				t.Fatalf("body %q, seed %d: got %q, want %q", body, seed, got.String(), want)
			}
		}
	}
}

// TestScrubReaderStreams: bytes that cannot begin the secret are passed
// on at once; a stream event is never held back.
func TestScrubReaderStreams(t *testing.T) {
	pr, pw := io.Pipe()
	r := newScrubReader(pr, "sk-secret-123", nil)
	go func() { _, _ = pw.Write([]byte("data: {\"x\":1}\n\n")) }()
	buf := make([]byte, 64)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "data: {\"x\":1}\n\n" {
		t.Fatalf("got %q, %v", buf[:n], err)
	}
	go func() { _, _ = pw.Write([]byte("data: sk-se")) }()
	n, _ = r.Read(buf)
	if string(buf[:n]) != "data: " {
		t.Fatalf("got %q, want the part that cannot begin the secret", buf[:n])
	}
	go func() { _, _ = pw.Write([]byte("cret-123!")); pw.Close() }()
	rest, _ := io.ReadAll(r)
	if string(rest) != "REDACTED*****!" {
		t.Fatalf("got %q", rest)
	}
}
