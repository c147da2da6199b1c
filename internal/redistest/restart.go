package redistest

import (
	"net"
	"strconv"
	"testing"
)

// Restart kills the server if it runs, and starts a new one, empty, on
// the same address (as a Redis that crashed and came back); it waits
// until the new one answers PING. The new server is killed when the
// test ends.
func (s *Server) Restart(t testing.TB) *Server {
	t.Helper()
	s.Kill()
	_, p, err := net.SplitHostPort(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	n, err := startOn(t, binary(), port)
	if err != nil {
		t.Fatalf("redis-server did not start again on %s: %v", s.Addr, err)
	}
	return n
}
