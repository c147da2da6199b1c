package redistest

import (
	"net"
	"sync"
	"testing"
)

// Link is a TCP relay on its own loopback port to a server: a network
// path that a test can cut (open connections closed, new ones refused)
// and restore on the same address, while the server keeps its data. It
// is closed when the test ends.
type Link struct {
	// Addr is the relay's host:port.
	Addr string

	to    string
	mu    sync.Mutex
	l     net.Listener
	conns map[net.Conn]struct{}
	gate  chan struct{} // while stalled: closed by Resume
}

// Link starts a relay to the server.
func (s *Server) Link(t testing.TB) *Link {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &Link{Addr: l.Addr().String(), to: s.Addr, conns: make(map[net.Conn]struct{})}
	k.serve(l)
	t.Cleanup(k.Cut)
	return k
}

// URL returns the redis:// URL of the relay.
func (k *Link) URL() string { return "redis://" + k.Addr }

// Cut closes every connection through the relay and stops it from
// accepting: a dial to Addr is refused until Restore.
func (k *Link) Cut() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.l != nil {
		_ = k.l.Close()
		k.l = nil
	}
	for c := range k.conns {
		_ = c.Close()
		delete(k.conns, c)
	}
}

// Restore accepts connections on Addr again.
func (k *Link) Restore(t testing.TB) {
	t.Helper()
	l, err := net.Listen("tcp", k.Addr)
	if err != nil {
		t.Fatalf("relay: listening on %s again: %v", k.Addr, err)
	}
	k.serve(l)
}

func (k *Link) serve(l net.Listener) {
	k.mu.Lock()
	k.l = l
	k.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", k.to)
			if err != nil {
				_ = c.Close()
				continue
			}
			if !k.track(l, c, up) {
				continue
			}
			go k.pipe(c, up)
			go k.pipe(up, c)
		}
	}()
}

// track notes both ends of a relayed connection, unless the relay was
// cut meanwhile: then it closes them.
func (k *Link) track(l net.Listener, a, b net.Conn) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.l != l {
		_ = a.Close()
		_ = b.Close()
		return false
	}
	k.conns[a], k.conns[b] = struct{}{}, struct{}{}
	return true
}

func (k *Link) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			k.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
	k.mu.Lock()
	delete(k.conns, dst)
	delete(k.conns, src)
	k.mu.Unlock()
}

// Stall holds what the relay's connections send, in both directions,
// until Resume, the connections staying open: a Redis that stopped
// answering. What was held is then delivered.
func (k *Link) Stall() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gate == nil {
		k.gate = make(chan struct{})
	}
}

// Resume delivers what Stall held, and what follows.
func (k *Link) Resume() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gate != nil {
		close(k.gate)
		k.gate = nil
	}
}

// wait blocks while the relay is stalled.
func (k *Link) wait() {
	k.mu.Lock()
	gate := k.gate
	k.mu.Unlock()
	if gate != nil {
		<-gate
	}
}
