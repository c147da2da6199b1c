package redistest

import (
	"fmt"
	"net"
	"runtime"
	"strings"
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

// tb stands in for a test to see how Start ends it.
type tb struct {
	testing.TB
	how, msg string
}

func (f *tb) Skip(args ...any) { f.end("skip", fmt.Sprint(args...)) }
func (f *tb) Fatalf(format string, args ...any) {
	f.end("fatal", fmt.Sprintf(format, args...))
}
func (f *tb) end(how, msg string) { f.how, f.msg = how, msg; runtime.Goexit() }

// Without redis-server a test skips, naming the package, unless
// LLMROUTE_REQUIRE_REDIS=1: then it fails.
func TestMissingBinary(t *testing.T) {
	binary = func() string { return "" }
	defer func() { binary = Binary }()
	for _, require := range []string{"", "1"} {
		t.Setenv(RequireEnv, require)
		f := &tb{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			Start(f)
			f.how = "returned"
		}()
		<-done
		want := "skip"
		if require == "1" {
			want = "fatal"
		}
		if f.how != want || !strings.Contains(f.msg, "Debian package redis-server") {
			t.Errorf("%s=%q: %s %q, want %s naming the package", RequireEnv, require, f.how, f.msg, want)
		}
	}
}

// A cut link refuses connections and ends the open ones; restored, it
// reaches the same server again.
func TestLink(t *testing.T) {
	s := Start(t)
	k := s.Link(t)
	ping := func() error {
		probe := &Server{Addr: k.Addr}
		return probe.Ping()
	}
	if err := ping(); err != nil {
		t.Fatal(err)
	}
	open, err := net.Dial("tcp", k.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	k.Cut()
	if _, err := net.Dial("tcp", k.Addr); err == nil {
		t.Fatal("a cut link accepted a connection")
	}
	if _, err := open.Read(make([]byte, 1)); err == nil {
		t.Fatal("an open connection read through a cut link")
	}
	k.Restore(t)
	if err := ping(); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
}
