// Package redistest starts a real redis-server for a test: Debian's
// package redis-server, on a free loopback port, with nothing saved to
// disk, stopped when the test ends.
//
// Where the binary is missing the test is skipped with a message naming
// the package, unless LLMROUTE_REQUIRE_REDIS=1 is set (CI sets it after
// installing the package): then it fails.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireEnv is the variable that turns a missing redis-server into a
// failure.
const RequireEnv = "LLMROUTE_REQUIRE_REDIS"

// startDeadline bounds how long a server may take to come up; generous,
// for a loaded machine.
const startDeadline = 30 * time.Second

// Server is a redis-server run for one test.
type Server struct {
	// Addr is host:port on the loopback interface.
	Addr string

	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	mu     sync.Mutex
	log    bytes.Buffer // the server's output, for failures
}

// URL returns the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr }

// binary is Binary, or a stand-in in tests.
var binary = Binary

// Binary returns the path of redis-server, or "" when it is not
// installed.
func Binary() string {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server"
	}
	return ""
}

// Start starts a redis-server on a free loopback port and waits until it
// answers PING. It is killed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := binary()
	if bin == "" {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("redis-server not installed (Debian package redis-server) and %s=1", RequireEnv)
		}
		t.Skip("redis-server not installed (Debian package redis-server)")
	}
	// The free port may be taken between closing the probe listener and
	// the server's bind: try again on another.
	var errs []error
	for range 5 {
		s, err := start(t, bin)
		if err == nil {
			return s
		}
		errs = append(errs, err)
	}
	t.Fatalf("redis-server did not start: %v", errors.Join(errs...))
	return nil
}

func start(t testing.TB, bin string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return startOn(t, bin, port)
}

// startOn starts a redis-server on port.
func startOn(t testing.TB, bin string, port int) (*Server, error) {
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), exited: make(chan struct{})}
	s.cmd = exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--daemonize", "no")
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s.cmd.Stderr = s.cmd.Stdout
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	// Read the output: "Ready to accept connections" tells the server
	// listens; the end of the output tells it exited.
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if !signalled && strings.Contains(line, "Ready to accept connections") {
				signalled = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, out)
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	timer := time.NewTimer(startDeadline)
	defer timer.Stop()
	select {
	case <-ready:
	case <-s.exited:
		return nil, fmt.Errorf("exited on port %d: %s", port, s.output())
	case <-timer.C:
		s.Kill()
		return nil, fmt.Errorf("not ready after %v: %s", startDeadline, s.output())
	}
	if err := s.Ping(); err != nil {
		s.Kill()
		return nil, fmt.Errorf("ready but no PONG: %v", err)
	}
	t.Cleanup(s.Kill)
	return s, nil
}

func (s *Server) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.TrimSpace(s.log.String())
}

// Ping sends PING on a new connection and expects PONG.
func (s *Server) Ping() error {
	c, err := net.DialTimeout("tcp", s.Addr, startDeadline)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(startDeadline))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Kill kills the server at once (SIGKILL: no shutdown, as in a crash)
// and waits until it has exited. Calling it again does nothing.
func (s *Server) Kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
