package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Options configure a harness run; start from [DefaultOptions]. Run fills
// in only the arms, the Portkey mode and directory, the in-flight cap, the
// timeout, the chunk count and the search resolution when they are unset.
type Options struct {
	Exe      string // serves the mock when run with its environment; default: this executable
	CaddyBin string // the Caddy under test (built from ./cmd/caddy)
	RepoDir  string // the llm_route module, for the version record
	WorkDir  string // configurations and logs of every process

	Arms        []Arm
	Sizes       []int // request body sizes of the non-stream workloads
	StreamSizes []int // request body sizes of the stream workloads

	Chunks   int           // content chunks of a streamed answer
	ChunkGap time.Duration // the mock's pause between chunks

	Warmup         int           // unrecorded requests before each phase
	Interleave     bool          // concurrency-1 phase: all arms side by side, requests in turn
	C1Requests     int           // concurrency-1 requests per non-stream cell
	C1MaxDuration  time.Duration // and at most this long
	StreamRequests int           // concurrency-1 streams per stream cell

	SearchStart  float64       // first offered rate of the throughput search, requests/s
	SearchMax    float64       // highest rate tried
	StepDuration time.Duration // each rate is offered this long
	MaxSteps     int           // rates tried per cell at most
	Resolution   float64       // stop when the failing rate is within this factor of the held one
	Retries      int           // a rate that fails is offered again this many times before it counts as failed
	// A failing rate during which other processes took more than this
	// many cores is offered again (up to 3 more times, not counted as
	// tries): a shared machine's load, not the server, failed it.
	MaxOtherLoad float64
	P99Bound     time.Duration // a rate holds when p99 stays under this, with no error
	MaxInflight  int           // open-loop requests outstanding at most
	Timeout      time.Duration // per request

	CPURate     float64       // the fixed rate of the CPU phase, the same for every arm
	CPUDuration time.Duration // how long the CPU phase offers it

	ConcStreams int           // streams open at once in the concurrent-streams cells; 0 skips them
	ConcGap     time.Duration // the mock's chunk pause there
	ConcRamp    time.Duration // the streams start evenly over this
	// The bound on a gateway's peak RSS (VmHWM) while it holds the
	// concurrent streams, in MiB; the report marks every gateway arm
	// against it and lists one over it as an error. 0: no bound.
	ConcRSSBoundMiB int

	// Where CPU profiles of the C and R arms go (empty: none): after the
	// throughput search, each such arm is offered ProfileLoad of its max
	// rate for ProfileDuration while Caddy's admin API profiles it
	// (/debug/pprof/profile); the file is <body>-<arm>.pprof (1KB-R-rules.pprof).
	ProfileDir      string
	ProfileDuration time.Duration
	ProfileLoad     float64

	// Pin the server under test and the harness to separate CPUs.
	Pin Pinning

	// Rounds of the throughput search: the first in each cell, the others
	// after every arm of a body size had its cell, in turn (the arms in a
	// rotating order), each on fresh processes. The report gives the
	// median of the rounds, so that one disturbed search cannot decide a
	// ratio.
	Rounds int

	// Portkey: "auto" installs it if missing (npm registry), "installed"
	// uses it only if it is installed already, "off" skips the P arm.
	Portkey    string
	PortkeyDir string

	Command  string    `json:"-"` // the command line, for the report
	Progress io.Writer `json:"-"` // progress lines; nil discards them
}

// DefaultOptions is the full run.
func DefaultOptions() Options {
	return Options{
		Sizes:           []int{1 << 10, 4 << 10, 10 << 10, 100 << 10},
		StreamSizes:     []int{1 << 10},
		Chunks:          64,
		ChunkGap:        time.Millisecond,
		Warmup:          200,
		Interleave:      true,
		C1Requests:      3000,
		C1MaxDuration:   10 * time.Second,
		StreamRequests:  100,
		SearchStart:     250,
		SearchMax:       64000,
		StepDuration:    2 * time.Second,
		MaxSteps:        12,
		Resolution:      1.08,
		Retries:         1,
		MaxOtherLoad:    0.3,
		CPURate:         200,
		CPUDuration:     5 * time.Second,
		P99Bound:        20 * time.Millisecond,
		MaxInflight:     1024,
		Timeout:         10 * time.Second,
		ConcStreams:     500,
		ConcGap:         25 * time.Millisecond,
		ConcRamp:        500 * time.Millisecond,
		ConcRSSBoundMiB: 192,
		Rounds:          1,
		ProfileDuration: 10 * time.Second,
		ProfileLoad:     0.9,
		Portkey:         "auto",
	}
}

// Env is what the numbers were measured on.
type Env struct {
	GoVersion      string `json:"go_version"`
	CaddyVersion   string `json:"caddy_version"`
	LLMRoute       string `json:"llm_route"` // git describe of the repository
	NodeVersion    string `json:"node_version,omitempty"`
	PortkeyVersion string `json:"portkey_version,omitempty"`
	CPU            string `json:"cpu"`
	Cores          int    `json:"cores"`
	Kernel         string `json:"kernel"`
	LoadStart      string `json:"load_start"`
	LoadEnd        string `json:"load_end"`
	Pinning        string `json:"pinning,omitempty"`
	Started        string `json:"started"`
	Duration       string `json:"duration"`
}

// Workload is what a cell sends.
type Workload string

// The workloads.
const (
	NonStream  Workload = "nonstream"
	Stream     Workload = "stream"
	Concurrent Workload = "concurrent" // many streams at once
)

// Cell is one arm under one workload, on fresh processes.
type Cell struct {
	Arm      string   `json:"arm"`
	Workload Workload `json:"workload"`
	Size     int      `json:"size"`
	Err      string   `json:"error,omitempty"`

	// Headers of the first answer: the mock's tag and the routing headers.
	Headers map[string]string `json:"headers,omitempty"`

	C1 *Dist `json:"c1,omitempty"` // concurrency-1 latency
	// R arms: the concurrency-1 latency of the bare reverse_proxy served
	// by the same Caddy process, taking turns with the others (C').
	C1Twin   *Dist  `json:"c1_twin,omitempty"`
	C1Errors int    `json:"c1_errors,omitempty"`
	FirstErr string `json:"first_error,omitempty"`

	// The CPUs the server process may run on (Cpus_allowed_list), read
	// when it started: proof of Options.Pin.
	ServerCPUs string `json:"server_cpus,omitempty"`

	Search *Search `json:"search,omitempty"`
	// The CPU profile taken at a share of the max rate, if any.
	Profile string `json:"profile,omitempty"`

	// The throughput searches of the later rounds (Options.Rounds).
	Rounds []*Search `json:"rounds,omitempty"`

	TTFT *Dist `json:"ttft,omitempty"`
	// R arms: TTFT again, taking turns stream by stream with C' (the bare
	// reverse_proxy of the same Caddy process), and C''s.
	TTFTPaired     *Dist   `json:"ttft_paired,omitempty"`
	TTFTTwin       *Dist   `json:"ttft_twin,omitempty"`
	Gap            *Dist   `json:"gap,omitempty"` // between chunks
	ChunksMin      int     `json:"chunks_min,omitempty"`
	ChunksMax      int     `json:"chunks_max,omitempty"`
	DeliveriesMean float64 `json:"deliveries_mean,omitempty"` // reads that completed a chunk, per stream
	DeliveriesMin  int     `json:"deliveries_min,omitempty"`

	Conc *concResult `json:"concurrent,omitempty"`

	CPUPhase *loopResult `json:"cpu_phase,omitempty"`

	// CPU of the server process (the mock for D) over the measured phase:
	// the CPU phase (a fixed open-loop rate) for non-stream cells, the
	// streams otherwise.
	CPUPerReq   time.Duration `json:"cpu_per_request_ns"`
	CPUTicks    int64         `json:"cpu_ticks"` // 10 ms each
	CPURequests int           `json:"cpu_requests"`
	PeakRSS     int64         `json:"peak_rss_bytes"` // VmHWM of the server process at the end
	// VmHWM after the CPU phase, before the search overloads the server.
	RSSAtCPURate int64  `json:"rss_at_cpu_rate_bytes,omitempty"`
	Load         string `json:"load"` // load average at the end
	// CPU taken by other processes during the concurrency-1 phase
	// (non-stream cells) or the streams, in cores.
	OtherLoad float64 `json:"other_load"`
}

// Search is the result of the max-throughput search.
type Search struct {
	Bound   time.Duration `json:"p99_bound_ns"`
	MaxRate float64       `json:"max_rate"` // highest offered rate that held; 0 if none did
	AtMax   *loopResult   `json:"at_max,omitempty"`
	Steps   []loopResult  `json:"steps"`
}

// Report is a whole run.
type Report struct {
	Command string   `json:"command"`
	Env     Env      `json:"env"`
	Options Options  `json:"options"`
	Notes   []string `json:"notes,omitempty"`
	Cells   []Cell   `json:"cells"`
}

func (o *Options) logf(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, format+"\n", args...)
	}
}

// Run runs every arm under every workload, one cell at a time, each on
// fresh processes, and returns the measurements.
func Run(ctx context.Context, o Options) (*Report, error) {
	d := DefaultOptions()
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.Exe = exe
	}
	if o.WorkDir == "" {
		return nil, errors.New("no work directory")
	}
	if len(o.Arms) == 0 {
		o.Arms, _ = ParseArms("D,C,R,P")
	}
	for _, a := range o.Arms {
		if (a.Kind == ArmCaddy || a.Kind == ArmRoute) && o.CaddyBin == "" {
			return nil, errors.New("no Caddy binary for the C and R arms")
		}
	}
	if o.Portkey == "" {
		o.Portkey = d.Portkey
	}
	if o.PortkeyDir == "" {
		o.PortkeyDir = DefaultPortkeyDir()
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = d.MaxInflight
	}
	if o.Timeout <= 0 {
		o.Timeout = d.Timeout
	}
	if o.Chunks <= 0 {
		o.Chunks = d.Chunks
	}
	if o.Resolution <= 1 {
		o.Resolution = d.Resolution
	}
	if o.ProfileLoad <= 0 {
		o.ProfileLoad = d.ProfileLoad
	}
	if o.ProfileDuration <= 0 {
		o.ProfileDuration = d.ProfileDuration
	}
	o.Rounds = max(o.Rounds, 1)
	if err := o.Pin.Validate(); err != nil {
		return nil, err
	}
	if err := o.Pin.PinSelf(); err != nil {
		return nil, err
	}
	start := time.Now()
	rep := &Report{Command: o.Command, Options: o}
	rep.Env = collectEnv(o)
	rep.Env.Pinning = o.Pin.String()

	var arms []Arm
	for _, a := range o.Arms {
		if a.Kind != ArmPortkey {
			arms = append(arms, a)
			continue
		}
		if note := preparePortkey(ctx, &o, &rep.Env); note != "" {
			rep.Notes = append(rep.Notes, note)
			o.logf("%s", note)
			continue
		}
		arms = append(arms, a)
	}

	type wl struct {
		w    Workload
		size int
	}
	var wls []wl
	for _, s := range o.Sizes {
		wls = append(wls, wl{NonStream, s})
	}
	for _, s := range o.StreamSizes {
		wls = append(wls, wl{Stream, s})
	}
	if o.ConcStreams > 0 {
		wls = append(wls, wl{Concurrent, 1 << 10})
	}
	for _, w := range wls {
		var c1 map[string]c1Result
		if w.w == NonStream && o.Interleave {
			o.logf("== concurrency 1, arms interleaved, %s", sizeLabel(w.size))
			c1 = interleavedC1(ctx, o, arms, w.size)
		}
		first := len(rep.Cells)
		for _, a := range arms {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			o.logf("== %s %s %s", a.Name(), w.w, sizeLabel(w.size))
			c := runCell(ctx, o, a, w.w, w.size, c1)
			if c.Err != "" {
				o.logf("   error: %s", c.Err)
			}
			rep.Cells = append(rep.Cells, c)
		}
		if w.w != NonStream {
			continue
		}
		cells := rep.Cells[first:]
		for round := 1; round < o.Rounds; round++ {
			for i := range cells {
				// A rotating order: no arm is always measured first
				// or last in a round.
				c := &cells[(i+round)%len(cells)]
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
				if c.Err != "" || c.Search == nil {
					continue
				}
				o.logf("== %s %s %s, throughput round %d", c.Arm, w.w, sizeLabel(w.size), round+1)
				a := arms[slices.IndexFunc(arms, func(a Arm) bool { return a.Name() == c.Arm })]
				s, err := searchRound(ctx, o, a, w.size, round)
				if err != nil {
					o.logf("   error: %s", err)
					continue
				}
				c.Rounds = append(c.Rounds, s)
			}
		}
	}
	rep.Env.LoadEnd = loadavg()
	rep.Env.Duration = time.Since(start).Round(time.Second).String()
	return rep, nil
}

// preparePortkey makes the P arm ready, or says why it is skipped.
func preparePortkey(ctx context.Context, o *Options, env *Env) string {
	if o.Portkey == "off" {
		return "P skipped: -portkey off"
	}
	nv, err := NodeVersion()
	if err != nil {
		return "P skipped: " + err.Error()
	}
	env.NodeVersion = nv
	if ok, why := PortkeyInstalled(o.PortkeyDir); !ok {
		if o.Portkey != "auto" {
			return "P skipped: Portkey's gateway is " + why + " (the harness installs it with -portkey auto)"
		}
		o.logf("installing @portkey-ai/gateway@%s into %s (npm ci)", PortkeyVersion, o.PortkeyDir)
		if err := InstallPortkey(ctx, o.PortkeyDir); err != nil {
			return "P skipped: could not install Portkey's gateway: " + err.Error()
		}
	}
	env.PortkeyVersion = "@portkey-ai/gateway@" + PortkeyVersion
	return ""
}

func sizeLabel(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// The response headers a cell records from its first answer.
var recordedHeaders = []string{HeaderMock, "X-LLM-Model", "X-LLM-Provider", "X-LLM-Route", "X-LLM-Attempts", "X-LLM-Route-Reason"}

// startArm starts what serves arm a in front of the mock at mockAddr: for
// D nothing (the mock serves), for C and R a Caddy, for P Portkey. It
// returns the server process, where to send requests, and how to stop what
// it started. With twin, an R arm's Caddy also serves a bare reverse_proxy
// to the mock (target.twin).
func startArm(o Options, a Arm, dir string, mock *proc, mockAddr string, twin bool) (*proc, target, func(), error) {
	noop := func() {}
	switch a.Kind {
	case ArmCaddy, ArmRoute:
		adminPort, err1 := freePort()
		sitePort, err2 := freePort()
		twinPort := 0
		var err3 error
		if twin && a.Kind == ArmRoute {
			twinPort, err3 = freePort()
		}
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, target{}, noop, err
		}
		p, err := startCaddy(o.Pin, o.CaddyBin, caddyfile(a, adminPort, sitePort, twinPort, mockAddr), dir, adminPort, sitePort)
		if err != nil {
			return nil, target{}, noop, err
		}
		t := target{url: fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", sitePort), admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort)}
		if twinPort > 0 {
			t.twin = fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", twinPort)
		}
		return p, t, func() { p.stop(5 * time.Second) }, nil
	case ArmPortkey:
		port, err := freePort()
		if err != nil {
			return nil, target{}, noop, err
		}
		p, err := startPortkey(o.Pin, o.PortkeyDir, dir, port)
		if err != nil {
			return nil, target{}, noop, err
		}
		return p, portkeyTarget(port, mockAddr), func() { p.stop(5 * time.Second) }, nil
	default:
		return mock, target{url: "http://" + mockAddr + "/v1/chat/completions"}, noop, nil
	}
}

// probe sends the first request of an arm, which proves the path: the
// answer comes from this run's mock (and, for R, through llm_route). It
// returns the recorded headers of the answer.
func probe(ctx context.Context, hc *http.Client, t target, body []byte, stream bool) (map[string]string, error) {
	if err := checkLoopback(t.url); err != nil {
		return nil, err
	}
	first := do(ctx, hc, t, body, stream, time.Now())
	if !first.ok() {
		return nil, fmt.Errorf("first request: %w", describe(first))
	}
	h := map[string]string{}
	for _, k := range recordedHeaders {
		if v := first.header.Get(k); v != "" {
			h[k] = v
		}
	}
	if h[HeaderMock] != MockTag {
		return h, errors.New("the first answer did not come from the harness's mock")
	}
	return h, nil
}

func armDir(o Options, parts ...string) (string, error) {
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(p, ":", "-")
	}
	dir := filepath.Join(append([]string{o.WorkDir}, parts...)...)
	return dir, os.MkdirAll(dir, 0o755)
}

// c1Result is an arm's concurrency-1 latency.
type c1Result struct {
	dist     Dist
	errors   int
	firstErr string
	err      string // the arm could not be measured
	// CPU taken by other processes meanwhile, in cores
	otherLoad float64
}

// twinKey marks, among interleavedC1's results, an R arm's twin: the
// bare reverse_proxy in the same Caddy process.
const twinKey = "+twin"

// interleavedC1 measures the concurrency-1 latency of every arm at once:
// all servers run side by side in front of one mock, and the requests go
// to the arms in turn (in a rotating order), so that load from elsewhere
// on the machine, which comes and goes, falls on every arm alike.
func interleavedC1(ctx context.Context, o Options, arms []Arm, size int) map[string]c1Result {
	out := map[string]c1Result{}
	failAll := func(err error) map[string]c1Result {
		for _, a := range arms {
			out[a.Name()] = c1Result{err: err.Error()}
		}
		return out
	}
	dir, err := armDir(o, fmt.Sprintf("c1-%d", size))
	if err != nil {
		return failAll(err)
	}
	mock, mockAddr, err := startMock(o.Exe, MockConfig{Chunks: o.Chunks, Gap: o.ChunkGap}, dir)
	if err != nil {
		return failAll(err)
	}
	defer mock.stop(2 * time.Second)
	type run struct {
		name     string
		server   *proc
		t        target
		hc       *http.Client
		body     []byte
		lat      latencies
		errors   int
		firstErr string
	}
	var runs []*run
	for _, a := range arms {
		adir, err := armDir(o, fmt.Sprintf("c1-%d", size), a.Name())
		if err != nil {
			out[a.Name()] = c1Result{err: err.Error()}
			continue
		}
		server, t, stop, err := startArm(o, a, adir, mock, mockAddr, true)
		if err != nil {
			out[a.Name()] = c1Result{err: err.Error()}
			continue
		}
		defer stop()
		r := &run{name: a.Name(), server: server, t: t, hc: newClient(4, o.Timeout), body: RequestBody(a.model(), size, false)}
		defer r.hc.CloseIdleConnections()
		if _, err := probe(ctx, r.hc, t, r.body, false); err != nil {
			out[a.Name()] = c1Result{err: err.Error()}
			continue
		}
		runs = append(runs, r)
		if t.twin != "" {
			c := Arm{Kind: ArmCaddy}
			tw := &run{name: a.Name() + twinKey, server: server, t: target{url: t.twin}, hc: newClient(4, o.Timeout), body: RequestBody(c.model(), size, false)}
			defer tw.hc.CloseIdleConnections()
			if _, err := probe(ctx, tw.hc, tw.t, tw.body, false); err != nil {
				out[tw.name] = c1Result{err: err.Error()}
				continue
			}
			runs = append(runs, tw)
		}
	}
	if len(runs) == 0 {
		return out
	}
	for _, r := range runs {
		for range o.Warmup {
			do(ctx, r.hc, r.t, r.body, false, time.Now())
		}
	}
	m := meter{procs: []*proc{mock}}
	for _, r := range runs {
		if !slices.Contains(m.procs, r.server) {
			m.procs = append(m.procs, r.server)
		}
	}
	s0 := m.sample()
	deadline := time.Now().Add(o.C1MaxDuration * time.Duration(len(runs)))
	for i := 0; i < o.C1Requests && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		for j := range runs {
			r := runs[(i+j)%len(runs)]
			start := time.Now()
			res := do(ctx, r.hc, r.t, r.body, false, start)
			el := time.Since(start)
			if !res.ok() {
				r.errors++
				if r.firstErr == "" {
					r.firstErr = describe(res).Error()
				}
				continue
			}
			r.lat = append(r.lat, el)
		}
	}
	other := otherLoad(s0, m.sample())
	for _, r := range runs {
		out[r.name] = c1Result{dist: summarize(r.lat), errors: r.errors, firstErr: r.firstErr, otherLoad: other}
	}
	return out
}

func runCell(ctx context.Context, o Options, a Arm, w Workload, size int, c1 map[string]c1Result) (c Cell) {
	c = Cell{Arm: a.Name(), Workload: w, Size: size}
	defer func() { c.Load = loadavg() }()
	dir, err := armDir(o, fmt.Sprintf("%s-%d", w, size), a.Name())
	if err != nil {
		c.Err = err.Error()
		return c
	}
	gap := o.ChunkGap
	if w == Concurrent {
		gap = o.ConcGap
	}
	mock, mockAddr, err := startMock(o.Exe, MockConfig{Chunks: o.Chunks, Gap: gap}, dir)
	if err != nil {
		c.Err = err.Error()
		return c
	}
	defer mock.stop(2 * time.Second)
	server, t, stop, err := startArm(o, a, dir, mock, mockAddr, w == Stream)
	if err != nil {
		c.Err = err.Error()
		return c
	}
	defer stop()
	m := meter{procs: []*proc{mock}}
	if server != mock {
		m.procs = append(m.procs, server)
	}
	c.ServerCPUs = server.allowedCPUs()

	stream := w != NonStream
	body := RequestBody(a.model(), size, stream)
	conns := o.MaxInflight
	if w == Concurrent {
		conns = max(conns, o.ConcStreams)
	}
	hc := newClient(conns, o.Timeout)
	defer hc.CloseIdleConnections()
	if c.Headers, err = probe(ctx, hc, t, body, stream); err != nil {
		c.Err = err.Error()
		return c
	}

	switch w {
	case NonStream:
		if r, ok := c1[a.Name()]; ok {
			if r.err != "" {
				c.FirstErr = "concurrency 1, interleaved: " + r.err
			} else {
				c.C1, c.C1Errors, c.FirstErr, c.OtherLoad = &r.dist, r.errors, r.firstErr, r.otherLoad
			}
			if tw, ok := c1[a.Name()+twinKey]; ok && tw.err == "" && tw.dist.N > 0 {
				c.C1Twin = &tw.dist
			}
		} else {
			s0 := m.sample()
			sr := sequential(ctx, hc, t, body, false, o.Warmup, o.C1Requests, o.C1MaxDuration)
			c.OtherLoad = otherLoad(s0, m.sample())
			d := summarize(sr.lat)
			c.C1, c.C1Errors = &d, sr.errors
			if sr.firstErr != nil {
				c.FirstErr = sr.firstErr.Error()
			}
		}
		if o.CPURate > 0 && o.CPUDuration > 0 {
			lr := measuredLoop(ctx, o, m, server, hc, t, body, o.CPURate, o.CPUDuration)
			c.CPUPhase = &lr
			c.CPUTicks, c.CPURequests = lr.CPUTicks, lr.Sent
			o.logf("   cpu phase %.0f/s: %d ticks for %d requests, p99 %v, errors %d, other load %.2f cores", o.CPURate, c.CPUTicks, lr.Sent, lr.Lat.P99.Round(time.Microsecond), lr.Errors, lr.OtherLoad)
		}
		c.RSSAtCPURate, _ = server.peakRSS()
		c.Search = maxThroughput(ctx, o, m, server, hc, t, body)
		if o.ProfileDir != "" && t.admin != "" && c.Search.MaxRate > 0 {
			c.Profile, err = profile(ctx, o, hc, t, body, c.Search.MaxRate*o.ProfileLoad, fmt.Sprintf("%s-%s.pprof", strings.ReplaceAll(sizeLabel(size), " ", ""), a.Name()))
			if err != nil {
				c.FirstErr = "profile: " + err.Error()
			}
		}
	case Stream:
		for range o.Warmup / 20 {
			do(ctx, hc, t, body, true, time.Now())
		}
		s0 := m.sample()
		t0, _ := server.cpuTicks()
		sr := sequential(ctx, hc, t, body, true, 0, o.StreamRequests, 10*time.Minute)
		t1, _ := server.cpuTicks()
		c.OtherLoad = otherLoad(s0, m.sample())
		c.CPUTicks, c.CPURequests = t1-t0, len(sr.lat)+sr.errors
		c.C1Errors = sr.errors
		if sr.firstErr != nil {
			c.FirstErr = sr.firstErr.Error()
		}
		streamStats(&c, sr.streams)
		if t.twin != "" {
			c.TTFTPaired, c.TTFTTwin = pairedTTFT(ctx, o, hc, t, body, size)
		}
	case Concurrent:
		s0 := m.sample()
		t0, _ := server.cpuTicks()
		cr := concurrentStreams(ctx, hc, t, body, o.ConcStreams, o.Chunks, o.ConcRamp)
		t1, _ := server.cpuTicks()
		c.OtherLoad = otherLoad(s0, m.sample())
		c.Conc = &cr
		c.CPUTicks, c.CPURequests = t1-t0, cr.Streams
	}
	if c.CPURequests > 0 {
		c.CPUPerReq = time.Duration(c.CPUTicks) * clockTick / time.Duration(c.CPURequests)
	}
	c.PeakRSS, _ = server.peakRSS()
	return c
}

// searchRound is a later round of an arm's throughput search, on fresh
// processes of its own.
func searchRound(ctx context.Context, o Options, a Arm, size, round int) (*Search, error) {
	dir, err := armDir(o, fmt.Sprintf("%s-%d-round%d", NonStream, size, round+1), a.Name())
	if err != nil {
		return nil, err
	}
	mock, mockAddr, err := startMock(o.Exe, MockConfig{Chunks: o.Chunks, Gap: o.ChunkGap}, dir)
	if err != nil {
		return nil, err
	}
	defer mock.stop(2 * time.Second)
	server, t, stop, err := startArm(o, a, dir, mock, mockAddr, false)
	if err != nil {
		return nil, err
	}
	defer stop()
	m := meter{procs: []*proc{mock}}
	if server != mock {
		m.procs = append(m.procs, server)
	}
	body := RequestBody(a.model(), size, false)
	hc := newClient(o.MaxInflight, o.Timeout)
	defer hc.CloseIdleConnections()
	if _, err := probe(ctx, hc, t, body, false); err != nil {
		return nil, err
	}
	return maxThroughput(ctx, o, m, server, hc, t, body), nil
}

// MaxRates is the highest rate that held in each round of the cell's
// throughput search, the first round first.
func (c *Cell) MaxRates() []float64 {
	if c.Search == nil {
		return nil
	}
	r := []float64{c.Search.MaxRate}
	for _, s := range c.Rounds {
		r = append(r, s.MaxRate)
	}
	return r
}

// MedianMaxRate is the median over the rounds (the mean of the middle two
// for an even count).
func (c *Cell) MedianMaxRate() float64 {
	r := slices.Sorted(slices.Values(c.MaxRates()))
	switch n := len(r); {
	case n == 0:
		return 0
	case n%2 == 1:
		return r[n/2]
	default:
		return (r[n/2-1] + r[n/2]) / 2
	}
}

func streamStats(c *Cell, streams []result) {
	if len(streams) == 0 {
		return
	}
	var ttft, gaps latencies
	c.ChunksMin, c.DeliveriesMin = math.MaxInt, math.MaxInt
	var deliveries int
	for _, s := range streams {
		ttft = append(ttft, s.ttft)
		gaps = append(gaps, s.gaps...)
		c.ChunksMin = min(c.ChunksMin, s.events)
		c.ChunksMax = max(c.ChunksMax, s.events)
		c.DeliveriesMin = min(c.DeliveriesMin, s.deliveries)
		deliveries += s.deliveries
	}
	c.DeliveriesMean = float64(deliveries) / float64(len(streams))
	t, g := summarize(ttft), summarize(gaps)
	c.TTFT, c.Gap = &t, &g
}

// pairedTTFT measures the time to the first chunk of an R arm's streams
// and of its twin's (C', the bare reverse_proxy of the same Caddy),
// taking turns stream by stream, after the arm's own streams: what R adds
// to the first chunk, without the difference between two processes.
func pairedTTFT(ctx context.Context, o Options, hc *http.Client, t target, body []byte, size int) (r, twin *Dist) {
	tw := target{url: t.twin}
	twBody := RequestBody(Arm{Kind: ArmCaddy}.model(), size, true)
	var rl, cl latencies
	for i := 0; i < o.StreamRequests && ctx.Err() == nil; i++ {
		if res := do(ctx, hc, t, body, true, time.Now()); res.ok() {
			rl = append(rl, res.ttft)
		}
		if res := do(ctx, hc, tw, twBody, true, time.Now()); res.ok() {
			cl = append(cl, res.ttft)
		}
	}
	if len(rl) == 0 || len(cl) == 0 {
		return nil, nil
	}
	rd, cd := summarize(rl), summarize(cl)
	return &rd, &cd
}

// maxThroughput finds the highest open-loop rate that holds (no error, p99
// within the bound): it doubles the rate until one fails, then bisects
// (geometrically) until the failing rate is within o.Resolution of the
// held one, in at most o.MaxSteps rates. A rate that fails is offered
// again o.Retries times, and fails only if every try does, so that a
// moment of load from elsewhere on a shared machine does not end the
// search; a try during which other processes took more than
// o.MaxOtherLoad cores does not count (three such at most).
func maxThroughput(ctx context.Context, o Options, m meter, server *proc, hc *http.Client, t target, body []byte) *Search {
	s := &Search{Bound: o.P99Bound}
	rate := o.SearchStart
	var good, bad float64
	for step := 0; step < o.MaxSteps && ctx.Err() == nil; step++ {
		var lr loopResult
		holds := false
		for try, disturbed := 0, 0; try <= o.Retries && !holds && ctx.Err() == nil; {
			lr = measuredLoop(ctx, o, m, server, hc, t, body, rate, o.StepDuration)
			s.Steps = append(s.Steps, lr)
			holds = lr.Errors == 0 && lr.Lat.N > 0 && lr.Lat.P99 <= o.P99Bound
			o.logf("   %7.0f/s: p99 %v, errors %d, achieved %.0f/s, other load %.2f cores, holds %t", rate, lr.Lat.P99.Round(time.Microsecond), lr.Errors, lr.Achieved, lr.OtherLoad, holds)
			switch {
			case holds:
			case o.MaxOtherLoad > 0 && lr.OtherLoad > o.MaxOtherLoad && disturbed < 3:
				disturbed++
				time.Sleep(time.Second)
			default:
				try++
				time.Sleep(300 * time.Millisecond)
			}
		}
		if holds {
			good = rate
			s.MaxRate = rate
			held := lr
			s.AtMax = &held
		} else {
			bad = rate
		}
		switch {
		case bad == 0:
			if rate >= o.SearchMax {
				return s
			}
			rate = min(rate*2, o.SearchMax)
		case good == 0:
			rate /= 2
			if rate < 1 {
				return s
			}
		default:
			if bad/good <= o.Resolution {
				return s
			}
			rate = math.Round(math.Sqrt(good * bad))
		}
		// Let connections and the server settle between rates.
		time.Sleep(300 * time.Millisecond)
	}
	return s
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func collectEnv(o Options) Env {
	e := Env{
		GoVersion: runtime.Version(),
		Cores:     runtime.NumCPU(),
		LoadStart: loadavg(),
		Started:   time.Now().UTC().Format(time.RFC3339),
	}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		e.GoVersion = strings.TrimSpace(string(out))
	}
	if o.CaddyBin != "" {
		if out, err := exec.Command(o.CaddyBin, "version").Output(); err == nil {
			e.CaddyVersion = strings.TrimSpace(string(out))
		}
	}
	if o.RepoDir != "" {
		if out, err := exec.Command("git", "-C", o.RepoDir, "describe", "--always", "--dirty").Output(); err == nil {
			e.LLMRoute = strings.TrimSpace(string(out))
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	return e
}

// measuredLoop is an open-loop run with the server's CPU time and the
// machine's other load recorded.
func measuredLoop(ctx context.Context, o Options, m meter, server *proc, hc *http.Client, t target, body []byte, rate float64, dur time.Duration) loopResult {
	s0 := m.sample()
	t0, _ := server.cpuTicks()
	lr := openLoop(ctx, hc, t, body, rate, dur, o.MaxInflight)
	t1, _ := server.cpuTicks()
	lr.CPUTicks = t1 - t0
	lr.OtherLoad = otherLoad(s0, m.sample())
	return lr
}
