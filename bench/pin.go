package bench

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Pinning keeps the server under test and the load on separate CPUs, so
// that the load generator's own work does not take the gateway's CPU: the
// server (Caddy, Portkey, and the mock in arm D) runs under `taskset -c
// Server` with GOMAXPROCS set to the CPUs it has, the harness and the mock
// on Client. Both are CPU lists as taskset takes them ("1", "0-1,3");
// empty leaves scheduling to the kernel.
type Pinning struct {
	Server string `json:"server_cpus,omitempty"`
	Client string `json:"client_cpus,omitempty"`
}

// cpuList parses a CPU list ("0-2,5") into CPU numbers, each below the
// machine's count.
func cpuList(s string) (unix.CPUSet, int, error) {
	var set unix.CPUSet
	n := 0
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a {
			return set, 0, fmt.Errorf("CPU list %q: %q is not a CPU or a range of them", s, part)
		}
		if b >= runtime.NumCPU() {
			return set, 0, fmt.Errorf("CPU list %q: CPU %d does not exist (this machine has %d)", s, b, runtime.NumCPU())
		}
		for c := a; c <= b; c++ {
			if !set.IsSet(c) {
				set.Set(c)
				n++
			}
		}
	}
	return set, n, nil
}

// Validate checks both lists.
func (p Pinning) Validate() error {
	for _, l := range []string{p.Server, p.Client} {
		if l == "" {
			continue
		}
		if _, _, err := cpuList(l); err != nil {
			return err
		}
	}
	return nil
}

// String describes the pinning for the report.
func (p Pinning) String() string {
	if p.Server == "" && p.Client == "" {
		return ""
	}
	side := func(l string) string {
		if l == "" {
			return "any CPU"
		}
		_, n, _ := cpuList(l)
		return fmt.Sprintf("CPUs %s (GOMAXPROCS %d)", l, n)
	}
	return "server under test on " + side(p.Server) + "; harness and mock on " + side(p.Client)
}

// command is exec.Command for the server under test, run under taskset
// when the server is pinned. taskset executes the program in its own
// process, so the PID the harness reads /proc for is the server's.
func (p Pinning) command(name string, args ...string) *exec.Cmd {
	if p.Server == "" {
		return exec.Command(name, args...)
	}
	_, n, _ := cpuList(p.Server)
	cmd := exec.Command("taskset", append([]string{"-c", p.Server, name}, args...)...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(n))
	return cmd
}

// PinSelf moves every thread of this process (and so every thread and
// process it creates later) onto the client CPUs and sets GOMAXPROCS to
// their count.
func (p Pinning) PinSelf() error {
	if p.Client == "" {
		return nil
	}
	set, n, err := cpuList(p.Client)
	if err != nil {
		return err
	}
	// Threads may start while we go: pass again until a pass finds none
	// it has not pinned (a thread inherits its creator's affinity, so
	// once every thread is pinned, every later one is).
	done := map[int]bool{}
	for pass := 0; pass < 10; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		fresh := 0
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("pinning the harness to CPUs %s: %w", p.Client, err)
			}
			done[tid] = true
			fresh++
		}
		if fresh == 0 {
			break
		}
	}
	runtime.GOMAXPROCS(n)
	return nil
}
