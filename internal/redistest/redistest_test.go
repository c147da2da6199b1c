package redistest

import (
	"net"
	"testing"
)

func TestStartAndKill(t *testing.T) {
	s := Start(t)
	if err := s.Ping(); err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(s.Addr); host != "127.0.0.1" {
		t.Errorf("listens on %s, want loopback", s.Addr)
	}
	s.Kill()
	if err := s.Ping(); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Kill() // again: nothing
}

// Two servers at once get two ports.
func TestTwo(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr == b.Addr {
		t.Fatalf("both on %s", a.Addr)
	}
}
