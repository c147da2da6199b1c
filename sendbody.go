package llmroute

import (
	"errors"
	"io"
	"net/http"
	"sync"
)

// sendBody is the body of one attempt: the client's body with a few
// edits (the model's value replaced, the `models` list dropped, new
// members added before the closing brace), held as the parts around and
// between them and what they put in, so that a 100 KB body is sent to
// the upstream without being copied. A body rewritten in other ways
// (sjson, translation, a continuation) is one part.
//
// The parts share memory with the client's body (strategies.Request.Body),
// which nothing writes to while the request is served; a large body's
// buffer is pooled (bodypool.go), so the transport reads an attempt's
// body only until the attempt ends (upstreamBody.close), retries and
// hedges included.
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
// retries), and its ContentLength. lease is the lease of the client
// body's buffer, which b's parts may share (nil when it is not pooled).
// The caller closes what setOn returns once the proxy returned: the
// transport may still hold a reader then (net/http may close a body
// after RoundTrip returns), and from then on its reads fail instead of
// reading a buffer that may serve another request.
func (b *sendBody) setOn(up *http.Request, lease *bodyLease) *upstreamBody {
	lease.acquire()
	u := &upstreamBody{body: *b, lease: lease}
	r := &u.first
	r.u = u
	up.Body = r
	up.GetBody = r.replay
	up.ContentLength = int64(b.size())
	return u
}

// upstreamBody is an attempt's body and the readers of it the transport
// got: the request's Body and each replay.
type upstreamBody struct {
	body  sendBody
	lease *bodyLease
	// mu makes close wait for a read in progress: once close returns, no
	// reader touches the body.
	mu     sync.Mutex
	closed bool
	first  bodyReader // the request's Body (one allocation for both)
}

// close ends every reader of u (their reads fail from then on) and its
// hold on the client body's buffer. It may be called more than once.
func (u *upstreamBody) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.closed {
		u.closed = true
		u.lease.release()
	}
}

// bodyReader reads an upstreamBody from its start. (It does not
// implement io.WriterTo: Caddy's reverse proxy wraps every request body
// in a reader of its own, and the transport copies a body of known
// length through an io.LimitedReader, so only Read is ever called.)
type bodyReader struct {
	u   *upstreamBody
	i   int // the part being read
	off int // where in it
}

// errBodyClosed: the transport read an attempt's body after the attempt
// ended.
var errBodyClosed = errors.New("llm_route: the attempt's request body was read after the attempt ended")

func (r *bodyReader) Read(p []byte) (int, error) {
	u := r.u
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return 0, errBodyClosed
	}
	n := 0
	for n < len(p) && r.i < u.body.n {
		part := u.body.parts[r.i][r.off:]
		c := copy(p[n:], part)
		n += c
		if r.off += c; r.off == len(u.body.parts[r.i]) {
			r.i, r.off = r.i+1, 0
		}
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Close implements io.Closer: the attempt's end, not the transport,
// ends the readers of its body.
func (r *bodyReader) Close() error { return nil }

// replay returns a new reader of the same body, from its start.
func (r *bodyReader) replay() (io.ReadCloser, error) {
	return &bodyReader{u: r.u}, nil
}
