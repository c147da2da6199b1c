package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a server process the harness started: the mock, Caddy or
// Portkey. Its CPU time and peak RSS are read from /proc.
type proc struct {
	name  string
	cmd   *exec.Cmd
	log   string         // file with its stdout and stderr
	stdin io.WriteCloser // kept open; closing it stops the mock
	done  chan struct{}  // closed when the process has exited
	err   error          // its exit status, once done is closed
}

// start runs cmd with its output going to logPath.
func start(name string, cmd *exec.Cmd, logPath string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	if cmd.Stdin == nil {
		p.stdin, err = cmd.StdinPipe()
		if err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logTail returns the end of the process's output, for error messages.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// stop ends the process: SIGTERM, then SIGKILL if it has not exited
// within the grace period.
func (p *proc) stop(grace time.Duration) {
	if p.stdin != nil {
		p.stdin.Close()
	}
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat CPU times; it is 100
// on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpuTicks returns the process's user+system CPU time in clock ticks (all
// threads, exited ones included).
func (p *proc) cpuTicks() (int64, error) { return statTicks(fmt.Sprintf("/proc/%d/stat", p.pid())) }

func statTicks(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: fields count from the
	// last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed stat times")
	}
	return ut + st, nil
}

// peakRSS returns VmHWM, the process's peak resident set size, in bytes.
func (p *proc) peakRSS() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmHWM in status")
}

// allowedCPUs is the process's Cpus_allowed_list, as /proc shows it.
func (p *proc) allowedCPUs() string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// startMock runs the mock: the command (the harness's own executable, or
// the test binary) with the environment that makes [MaybeServeMock] serve.
// It returns the process and its address.
func startMock(exe string, cfg MockConfig, dir string) (*proc, string, error) {
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(),
		envMockRole+"=mock",
		envMockChunks+"="+strconv.Itoa(cfg.Chunks),
		envMockGap+"="+cfg.Gap.String(),
	)
	logPath := filepath.Join(dir, "mock.log")
	p, err := start("mock", cmd, logPath)
	if err != nil {
		return nil, "", err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(logPath)
		for line := range strings.SplitSeq(string(b), "\n") {
			if addr, ok := strings.CutPrefix(line, "listening "); ok {
				return p, strings.TrimSpace(addr), nil
			}
		}
		if p.exited() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.stop(time.Second)
	return nil, "", fmt.Errorf("mock did not start: %s", p.logTail())
}

// freePort returns a loopback port that nothing listened on a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url with GET until it answers with any status, the
// process exits, or the timeout passes.
func waitHTTP(p *proc, url string, timeout time.Duration) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited: %v: %s", p.name, p.err, p.logTail())
		}
		resp, err := hc.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer at %s within %v: %s", p.name, url, timeout, p.logTail())
}

// startCaddy runs the Caddy binary with a Caddyfile and waits for its
// admin endpoint and its site.
func startCaddy(pin Pinning, bin, caddyfile, dir string, adminPort, sitePort int) (*proc, error) {
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o644); err != nil {
		return nil, err
	}
	cmd := pin.command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	// Caddy's data and config directories (autosave, storage) stay in the
	// run's own directory.
	home := filepath.Join(dir, "home")
	cmd.Env = append(cmd.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, "config"), "XDG_DATA_HOME="+filepath.Join(home, "data"))
	p, err := start("caddy", cmd, filepath.Join(dir, "caddy.log"))
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(p, fmt.Sprintf("http://127.0.0.1:%d/config/", adminPort), 60*time.Second); err != nil {
		p.stop(2 * time.Second)
		return nil, err
	}
	if err := waitTCP(p, sitePort, 10*time.Second); err != nil {
		p.stop(2 * time.Second)
		return nil, err
	}
	return p, nil
}

// waitTCP waits until something accepts connections on the loopback port.
func waitTCP(p *proc, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited: %v: %s", p.name, p.err, p.logTail())
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s does not listen on %s after %v: %s", p.name, addr, timeout, p.logTail())
}

// BuildCaddy builds ./cmd/caddy of the module at repoDir into out with the
// go command on PATH (no race detector, whatever the caller runs under).
func BuildCaddy(ctx context.Context, repoDir, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/caddy")
	cmd.Dir = repoDir
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, b)
	}
	return nil
}

// FindRepo returns the root of the llm_route module: dir or the nearest
// parent holding its go.mod.
func FindRepo(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/caddy-llm-route/llmroute\n")) {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no llm_route go.mod at or above %s", dir)
		}
		d = parent
	}
}

// machineBusyTicks returns the CPU time all CPUs spent on processes (user,
// nice and system time) or lost to the hypervisor (steal), in clock ticks,
// from /proc/stat. Interrupt time is left out: the harness's own loopback
// traffic is handled there, not charged to any process.
func machineBusyTicks() (int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, errors.New("malformed /proc/stat")
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, err
		}
		// user nice system idle iowait irq softirq steal (guest time is
		// in user time already)
		if i <= 2 || i == 7 {
			busy += n
		}
	}
	return busy, nil
}

// meter tells how much CPU the rest of the machine took while the
// harness measured: the machine's busy time less that of the harness
// itself and of the processes it started.
type meter struct{ procs []*proc }

type meterSample struct {
	at         time.Time
	busy, ours int64
}

func (m meter) sample() meterSample {
	s := meterSample{at: time.Now()}
	s.busy, _ = machineBusyTicks()
	s.ours, _ = statTicks("/proc/self/stat")
	for _, p := range m.procs {
		t, _ := p.cpuTicks()
		s.ours += t
	}
	return s
}

// otherLoad is the CPU, in cores, taken by other processes between a and
// b.
func otherLoad(a, b meterSample) float64 {
	el := b.at.Sub(a.at)
	if el <= 0 {
		return 0
	}
	other := (b.busy - a.busy) - (b.ours - a.ours)
	return max(0, float64(other)*float64(clockTick)/float64(el))
}
