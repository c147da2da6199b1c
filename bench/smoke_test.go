package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as the mock upstream, as the llmbench command
// does.
func TestMain(m *testing.M) {
	MaybeServeMock()
	os.Exit(m.Run())
}

// smokeOptions is a run of a few seconds at a tiny load: every phase of
// every workload, so that the harness cannot rot, and nothing timed.
func smokeOptions(t *testing.T, arms string) Options {
	t.Helper()
	a, err := ParseArms(arms)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := FindRepo(".")
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		RepoDir:         repo,
		WorkDir:         t.TempDir(),
		Arms:            a,
		Sizes:           []int{1 << 10},
		StreamSizes:     []int{1 << 10},
		Chunks:          64,
		ChunkGap:        2 * time.Millisecond,
		Warmup:          2,
		Interleave:      true,
		C1Requests:      10,
		C1MaxDuration:   10 * time.Second,
		StreamRequests:  3,
		SearchStart:     20,
		SearchMax:       20,
		StepDuration:    300 * time.Millisecond,
		MaxSteps:        1,
		Retries:         0,
		CPURate:         20,
		CPUDuration:     300 * time.Millisecond,
		P99Bound:        time.Minute, // timings are not judged here
		MaxInflight:     16,
		Timeout:         30 * time.Second,
		ConcStreams:     8,
		ConcGap:         2 * time.Millisecond,
		ConcRamp:        50 * time.Millisecond,
		ConcRSSBoundMiB: 192,
		Portkey:         "installed",
		Command:         "go test ./bench",
	}
}

// TestSmoke builds the Caddy under test and runs the D, C and R arms (every
// default strategy) through each workload once.
func TestSmoke(t *testing.T) {
	o := smokeOptions(t, "D,C,R")
	// The server on the last CPU; the harness on all of them, which
	// exercises the pinning without slowing the rest of the tests.
	n := runtime.NumCPU()
	o.Pin = Pinning{Server: strconv.Itoa(n - 1), Client: "0-" + strconv.Itoa(n-1)}
	if n == 1 {
		o.Pin.Client = "0"
	}
	o.Rounds = 2
	o.ProfileDir = t.TempDir()
	o.ProfileDuration = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	o.CaddyBin = filepath.Join(t.TempDir(), "caddy")
	if err := BuildCaddy(ctx, o.RepoDir, o.CaddyBin); err != nil {
		t.Fatal(err)
	}
	rep := runSmoke(ctx, t, o)

	if rep.Env.Pinning == "" {
		t.Error("the pinning is not recorded")
	}
	for _, c := range rep.Cells {
		if c.Arm != "D" && c.ServerCPUs != o.Pin.Server {
			t.Errorf("%s %s: the server ran on CPUs %q, want %q", c.Arm, c.Workload, c.ServerCPUs, o.Pin.Server)
		}
		if c.Workload == NonStream && len(c.MaxRates()) != o.Rounds {
			t.Errorf("%s: %d throughput rounds, want %d", c.Arm, len(c.MaxRates()), o.Rounds)
		}
		if c.Workload == NonStream && c.Arm != "D" {
			if fi, err := os.Stat(c.Profile); err != nil || fi.Size() == 0 {
				t.Errorf("%s: no CPU profile: %q, %v", c.Arm, c.Profile, err)
			}
		}
		if !strings.HasPrefix(c.Arm, "R:") {
			continue
		}
		route := "bench-" + strings.TrimPrefix(c.Arm, "R:")
		for _, h := range []string{"X-LLM-Model", "X-LLM-Provider", "X-LLM-Attempts"} {
			if c.Headers[h] == "" {
				t.Errorf("%s %s: the answer has no %s header: %v", c.Arm, c.Workload, h, c.Headers)
			}
		}
		if got := c.Headers["X-LLM-Route"]; got != route {
			t.Errorf("%s %s: X-LLM-Route = %q, want %q", c.Arm, c.Workload, got, route)
		}
	}
	if rep.Env.CaddyVersion == "" || rep.Env.CPU == "" || rep.Env.LLMRoute == "" {
		t.Errorf("versions not recorded: %+v", rep.Env)
	}
}

// TestSmokePortkey runs the P arm next to D, if Portkey's gateway is
// installed already (the test never installs it: no network beyond
// loopback here). llmbench installs it: go run ./bench/cmd/llmbench -arms P.
func TestSmokePortkey(t *testing.T) {
	if _, err := NodeVersion(); err != nil {
		t.Skipf("P arm not run: %v", err)
	}
	if ok, why := PortkeyInstalled(DefaultPortkeyDir()); !ok {
		t.Skipf("P arm not run: Portkey's gateway is %s; `go run ./bench/cmd/llmbench -arms P` installs it", why)
	}
	o := smokeOptions(t, "D,P")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep := runSmoke(ctx, t, o)
	if len(rep.Notes) > 0 {
		t.Errorf("notes: %v", rep.Notes)
	}
}

// runSmoke runs the harness and checks what every arm must show whatever
// the machine's load: every request answered, by the harness's mock, and
// every stream whole and not buffered.
func runSmoke(ctx context.Context, t *testing.T, o Options) *Report {
	t.Helper()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	want := len(o.Arms) * 3 // non-stream, stream, concurrent streams
	if len(rep.Cells) != want {
		t.Fatalf("%d cells, want %d", len(rep.Cells), want)
	}
	for _, c := range rep.Cells {
		name := c.Arm + " " + string(c.Workload)
		if c.Err != "" {
			t.Errorf("%s: %s", name, c.Err)
			continue
		}
		if c.Headers[HeaderMock] != MockTag {
			t.Errorf("%s: answer not from the harness's mock: %v", name, c.Headers)
		}
		if c.PeakRSS <= 0 {
			t.Errorf("%s: no peak RSS", name)
		}
		switch c.Workload {
		case NonStream:
			if c.C1 == nil || c.C1.N != o.C1Requests || c.C1Errors != 0 {
				t.Errorf("%s: concurrency 1: %+v, %d errors (%s)", name, c.C1, c.C1Errors, c.FirstErr)
			}
			// An R arm's twin, the bare reverse_proxy of its own Caddy,
			// took its turns too; the other arms have none.
			if twin := strings.HasPrefix(c.Arm, "R:"); twin != (c.C1Twin != nil) || twin && c.C1Twin.N != o.C1Requests {
				t.Errorf("%s: concurrency 1 of the twin: %+v", name, c.C1Twin)
			}
			if c.Search == nil || len(c.Search.Steps) != 1 {
				t.Errorf("%s: search: %+v", name, c.Search)
			} else if st := c.Search.Steps[0]; st.Errors != 0 || st.Sent == 0 || st.Lat.N != st.Sent {
				t.Errorf("%s: open loop: %+v", name, st)
			}
			if c.CPURequests == 0 {
				t.Errorf("%s: no request counted for CPU", name)
			}
		case Stream:
			if c.C1Errors != 0 || c.TTFT == nil || c.TTFT.N != o.StreamRequests {
				t.Errorf("%s: streams: %+v, %d errors (%s)", name, c.TTFT, c.C1Errors, c.FirstErr)
			}
			// An R arm's streams took turns with its twin's too.
			if twin := strings.HasPrefix(c.Arm, "R:"); twin != (c.TTFTTwin != nil) || twin && (c.TTFTPaired == nil || c.TTFTTwin.N != o.StreamRequests) {
				t.Errorf("%s: streams paired with the twin: %+v, %+v", name, c.TTFTPaired, c.TTFTTwin)
			}
			if c.ChunksMin != o.Chunks || c.ChunksMax != o.Chunks {
				t.Errorf("%s: %d–%d chunks per stream, want %d", name, c.ChunksMin, c.ChunksMax, o.Chunks)
			}
			// 64 chunks 2 ms apart: a layer that held the stream back
			// would hand it over in one read.
			if c.DeliveriesMean <= 1 {
				t.Errorf("%s: every stream arrived in one read", name)
			}
		case Concurrent:
			if cr := c.Conc; cr == nil || cr.Completed != o.ConcStreams || cr.FullCount != o.ConcStreams || cr.Errors != 0 {
				t.Errorf("%s: concurrent streams: %+v", name, c.Conc)
			}
			if ok, judged := rep.concWithinBound(&c); !ok || judged != (c.Arm == "C" || strings.HasPrefix(c.Arm, "R:")) {
				t.Errorf("%s: peak RSS %d bytes: within the %d MiB bound %t, judged %t", name, c.PeakRSS, o.ConcRSSBoundMiB, ok, judged)
			}
		}
	}

	var md bytes.Buffer
	rep.Markdown(&md)
	for _, s := range []string{"**Latency at concurrency 1**", "**Max throughput at p99", "**Streams at concurrency 1**", "**Concurrent streams**"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("the markdown report has no %q:\n%s", s, md.String())
		}
	}
	if strings.Contains(md.String(), "Errors:") {
		t.Errorf("the report lists errors:\n%s", md.String())
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Error(err)
	}
	if t.Failed() {
		t.Logf("report:\n%s", md.String())
	}
	return rep
}

func TestCPUList(t *testing.T) {
	n := runtime.NumCPU()
	if _, c, err := cpuList("0"); err != nil || c != 1 {
		t.Errorf(`cpuList("0") = %d CPUs, %v`, c, err)
	}
	if n >= 2 {
		if _, c, err := cpuList("0-1,1"); err != nil || c != 2 {
			t.Errorf(`cpuList("0-1,1") = %d CPUs, %v`, c, err)
		}
	}
	for _, bad := range []string{"", "x", "1-0", "-1", strconv.Itoa(n), "0," + strconv.Itoa(n+3)} {
		if _, _, err := cpuList(bad); err == nil {
			t.Errorf("cpuList(%q): no error", bad)
		}
	}
}
