package upstreams

import (
	"bytes"
	"io"
	"net/http"
	"strings"
)

// Redacted begins what replaces a provider's key wherever an upstream
// reflects it: REDACTED, padded with '*' to the key's length, so that a
// body keeps the length its Content-Length announced.
const Redacted = "REDACTED"

// minScrubbed is the shortest key scrubbed from answers: a shorter one
// would be found in ordinary text.
const minScrubbed = len(Redacted)

// redaction returns what replaces secret: as long as it.
func redaction(secret string) string {
	return Redacted + strings.Repeat("*", len(secret)-len(Redacted))
}

// scrubHeader replaces the secret in every value of h.
func scrubHeader(h http.Header, secret string) {
	for name, vals := range h {
		for i, v := range vals {
			if strings.Contains(v, secret) {
				h[name][i] = strings.ReplaceAll(v, secret, redaction(secret))
			}
		}
	}
}

// scrubReader passes a response body on with every occurrence of a
// secret replaced (by as many bytes). It holds back only the end of what
// it read that could begin the secret, so a stream flows as it arrives.
type scrubReader struct {
	src    io.ReadCloser
	secret []byte
	with   []byte // what replaces it
	held   []byte // the end of what was read, a beginning of the secret
	out    []byte // scrubbed bytes not yet returned
	err    error  // src's error, returned once out and held are empty
	atEOF  func() // runs once src is exhausted
}

func newScrubReader(src io.ReadCloser, secret string, atEOF func()) *scrubReader {
	return &scrubReader{src: src, secret: []byte(secret), with: []byte(redaction(secret)), atEOF: atEOF}
}

func (s *scrubReader) Read(p []byte) (int, error) {
	for len(s.out) == 0 {
		if s.err != nil {
			if len(s.held) == 0 {
				return 0, s.err
			}
			s.out, s.held = s.held, nil
			break
		}
		if len(p) == 0 {
			return 0, nil
		}
		n, err := s.src.Read(p)
		if err != nil {
			s.err = err
			if s.atEOF != nil && err == io.EOF {
				s.atEOF()
			}
		}
		data := p[:n]
		if len(s.held) == 0 && bytes.Index(data, s.secret) < 0 && s.partial(data) == 0 {
			if n > 0 || err == nil {
				return n, nil // nothing to change, nothing to hold
			}
			continue
		}
		data = append(s.held, data...)
		s.held = nil
		data = bytes.ReplaceAll(data, s.secret, s.with)
		if s.err == nil {
			k := s.partial(data)
			s.held = append([]byte(nil), data[len(data)-k:]...)
			data = data[:len(data)-k]
		}
		s.out = data
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	return n, nil
}

// partial returns the length of the longest end of b that is a proper
// beginning of the secret.
func (s *scrubReader) partial(b []byte) int {
	for k := min(len(s.secret)-1, len(b)); k > 0; k-- {
		if b[len(b)-k] == s.secret[0] && bytes.Equal(b[len(b)-k:], s.secret[:k]) {
			return k
		}
	}
	return 0
}

func (s *scrubReader) Close() error { return s.src.Close() }
