package llmroute

import (
	"io"
	"net/http"
)

// sendBody is the body of one attempt: the client's body with a few
// edits (the model's value replaced, the `models` list dropped, new
// members added before the closing brace), held as the parts around and
// between them and what they put in, so that a 100 KB body is sent to
// the upstream without being copied. A body rewritten in other ways
// (sjson, translation, a continuation) is one part.
//
// The parts share memory with the client's body (strategies.Request.Body),
// which nothing writes to once it is read: an attempt's body stays valid
// as long as the transport may read it, retries and hedges included.
type sendBody struct {
	parts [7][]byte
	n     int // parts in use
}

// wholeBody is a body of one part.
func wholeBody(b []byte) sendBody {
	return sendBody{parts: [7][]byte{b}, n: 1}
}

// add appends a part; empty parts are left out.
func (b *sendBody) add(p []byte) {
	if len(p) > 0 {
		b.parts[b.n] = p
		b.n++
	}
}

// size is the body's length in bytes.
func (b *sendBody) size() int {
	n := 0
	for _, p := range b.parts[:b.n] {
		n += len(p)
	}
	return n
}

// bytes returns the body in one slice: the part itself when it has only
// one (do not write to it), else a copy of the parts joined.
func (b *sendBody) bytes() []byte {
	switch b.n {
	case 0:
		return []byte{}
	case 1:
		return b.parts[0]
	}
	out := make([]byte, 0, b.size())
	for _, p := range b.parts[:b.n] {
		out = append(out, p...)
	}
	return out
}

// setOn makes b the body of the upstream request up: its Body, a
// GetBody that replays it from the start (for the transport's own
// retries), and its ContentLength.
func (b *sendBody) setOn(up *http.Request) {
	r := &bodyReader{body: *b}
	up.Body = r
	up.GetBody = r.replay
	up.ContentLength = int64(b.size())
}

// bodyReader reads a sendBody from its start. (It does not implement
// io.WriterTo: Caddy's reverse proxy wraps every request body in a
// reader of its own, and the transport copies a body of known length
// through an io.LimitedReader, so only Read is ever called.)
type bodyReader struct {
	body sendBody
	i    int // the part being read
	off  int // where in it
}

func (r *bodyReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && r.i < r.body.n {
		part := r.body.parts[r.i][r.off:]
		c := copy(p[n:], part)
		n += c
		if r.off += c; r.off == len(r.body.parts[r.i]) {
			r.i, r.off = r.i+1, 0
		}
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Close implements io.Closer; there is nothing to release.
func (r *bodyReader) Close() error { return nil }

// replay returns a new reader of the same body, from its start.
func (r *bodyReader) replay() (io.ReadCloser, error) {
	return &bodyReader{body: r.body}, nil
}
