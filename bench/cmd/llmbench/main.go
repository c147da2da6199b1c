// Command llmbench is the load harness of llm_route: it runs the mock
// upstream directly (arm D), behind Caddy's bare reverse_proxy (C), behind
// llm_route with one route per strategy (R:<strategy>), and behind
// Portkey's gateway (P), one arm at a time on fresh processes, and prints
// markdown tables (see BENCHMARKS.md). Everything listens on loopback.
//
// The full run, from the repository root:
//
//	go run ./bench/cmd/llmbench -out bench.md -json bench.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/caddy-llm-route/llmroute/bench"
)

func main() {
	bench.MaybeServeMock()

	d := bench.DefaultOptions()
	var (
		arms        = flag.String("arms", "D,C,R,P", "arms to run: D, C, R (every default strategy), R:<strategy>, P")
		sizes       = flag.String("sizes", sizesFlag(d.Sizes), "request body sizes of the non-stream workloads (e.g. 1k,100k); empty for none")
		streamSizes = flag.String("stream-sizes", sizesFlag(d.StreamSizes), "request body sizes of the stream workloads; empty for none")
		caddyBin    = flag.String("caddy", "", "Caddy binary under test (default: go build ./cmd/caddy into the work directory)")
		repo        = flag.String("repo", ".", "the llm_route repository (or a directory inside it)")
		workDir     = flag.String("workdir", "", "directory for configurations and process logs (default: a new temporary directory, removed unless -keep)")
		keep        = flag.Bool("keep", false, "keep the work directory")
		out         = flag.String("out", "", "write the markdown report here as well as to stdout")
		jsonOut     = flag.String("json", "", "write the full results as JSON here")
		quiet       = flag.Bool("q", false, "no progress lines on stderr")
	)
	flag.IntVar(&d.Chunks, "chunks", d.Chunks, "content chunks of a streamed answer")
	flag.DurationVar(&d.ChunkGap, "chunk-gap", d.ChunkGap, "the mock's pause between stream chunks")
	flag.IntVar(&d.Warmup, "warmup", d.Warmup, "unrecorded requests before the concurrency-1 phase (streams: a twentieth)")
	flag.BoolVar(&d.Interleave, "interleave", d.Interleave, "concurrency-1 phase with every arm running side by side, taking turns request by request (false: each arm alone, in its own cell)")
	flag.IntVar(&d.C1Requests, "c1-requests", d.C1Requests, "concurrency-1 requests per arm and body size")
	flag.DurationVar(&d.C1MaxDuration, "c1-max", d.C1MaxDuration, "concurrency-1 phase at most this long per arm")
	flag.IntVar(&d.StreamRequests, "streams", d.StreamRequests, "concurrency-1 streams per stream cell")
	flag.Float64Var(&d.SearchStart, "rate-start", d.SearchStart, "first offered rate of the throughput search, requests/s")
	flag.Float64Var(&d.SearchMax, "rate-max", d.SearchMax, "highest rate the search offers")
	flag.DurationVar(&d.StepDuration, "step", d.StepDuration, "how long each rate is offered")
	flag.IntVar(&d.MaxSteps, "max-steps", d.MaxSteps, "rates tried per cell at most")
	flag.IntVar(&d.Retries, "retries", d.Retries, "a rate that fails is offered again this many times before it counts as failed")
	flag.Float64Var(&d.MaxOtherLoad, "max-other-load", d.MaxOtherLoad, "a failing rate during which other processes took more than this many cores is tried again, up to 3 times, without counting (0: never)")
	flag.Float64Var(&d.CPURate, "cpu-rate", d.CPURate, "the fixed open-loop rate at which CPU per request is measured, requests/s (0 skips)")
	flag.DurationVar(&d.CPUDuration, "cpu-duration", d.CPUDuration, "how long the CPU phase lasts")
	flag.DurationVar(&d.P99Bound, "p99-bound", d.P99Bound, "a rate holds while p99 stays within this, with no error")
	flag.IntVar(&d.MaxInflight, "max-inflight", d.MaxInflight, "open-loop requests outstanding at most")
	flag.DurationVar(&d.Timeout, "timeout", d.Timeout, "per-request timeout")
	flag.IntVar(&d.ConcStreams, "concurrent-streams", d.ConcStreams, "streams open at once in the concurrent-streams cells; 0 skips them")
	flag.IntVar(&d.ConcRSSBoundMiB, "conc-rss-bound", d.ConcRSSBoundMiB, "the bound on a gateway's peak RSS with the concurrent streams open, MiB (0: none); a gateway over it is reported as an error")
	flag.DurationVar(&d.ConcGap, "concurrent-gap", d.ConcGap, "the mock's chunk pause in the concurrent-streams cells")
	flag.StringVar(&d.ProfileDir, "profile", "", "write a CPU profile of every C and R arm at a share of its max rate (-profile-load) into this directory (<body>-<arm>.pprof), taken through Caddy's admin API")
	flag.DurationVar(&d.ProfileDuration, "profile-duration", d.ProfileDuration, "how long each CPU profile runs")
	flag.Float64Var(&d.ProfileLoad, "profile-load", d.ProfileLoad, "the share of an arm's max rate offered while it is profiled")
	flag.StringVar(&d.Pin.Server, "server-cpus", "", "run the server under test (Caddy, Portkey) on these CPUs, a taskset list such as 1 or 2-3, with GOMAXPROCS set to their count")
	flag.StringVar(&d.Pin.Client, "client-cpus", "", "run the harness (load generator) and the mock upstream on these CPUs")
	flag.IntVar(&d.Rounds, "rounds", d.Rounds, "rounds of the throughput search per arm, interleaved across arms; the report gives the median")
	flag.StringVar(&d.Portkey, "portkey", d.Portkey, "P arm: auto (install with npm if missing), installed (only if already installed), off")
	flag.StringVar(&d.PortkeyDir, "portkey-dir", bench.DefaultPortkeyDir(), "where Portkey's gateway is installed")
	flag.Parse()

	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "llmbench:", err)
		os.Exit(1)
	}
	var err error
	if d.Arms, err = bench.ParseArms(*arms); err != nil {
		fail(err)
	}
	if d.Sizes, err = parseSizes(*sizes); err != nil {
		fail(err)
	}
	if d.StreamSizes, err = parseSizes(*streamSizes); err != nil {
		fail(err)
	}
	if d.RepoDir, err = bench.FindRepo(*repo); err != nil {
		fail(err)
	}
	if *workDir == "" {
		if *workDir, err = os.MkdirTemp("", "llmbench-"); err != nil {
			fail(err)
		}
		if !*keep {
			defer os.RemoveAll(*workDir)
		}
	}
	d.WorkDir = *workDir
	d.Command = "go run ./bench/cmd/llmbench " + strings.Join(os.Args[1:], " ")
	if !*quiet {
		d.Progress = os.Stderr
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	d.CaddyBin = *caddyBin
	if d.CaddyBin == "" {
		d.CaddyBin = filepath.Join(*workDir, "caddy")
		if !*quiet {
			fmt.Fprintln(os.Stderr, "building ./cmd/caddy")
		}
		if err := bench.BuildCaddy(ctx, d.RepoDir, d.CaddyBin); err != nil {
			fail(err)
		}
	}

	rep, err := bench.Run(ctx, d)
	if rep != nil {
		var w io.Writer = os.Stdout
		if *out != "" {
			f, ferr := os.Create(*out)
			if ferr != nil {
				fail(ferr)
			}
			defer f.Close()
			w = io.MultiWriter(os.Stdout, f)
		}
		rep.Markdown(w)
		if *jsonOut != "" {
			b, _ := json.MarshalIndent(rep, "", "  ")
			if werr := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); werr != nil {
				fail(werr)
			}
		}
	}
	if err != nil {
		fail(err)
	}
}

func sizesFlag(sizes []int) string {
	var s []string
	for _, n := range sizes {
		if n%1024 == 0 {
			s = append(s, fmt.Sprintf("%dk", n>>10))
		} else {
			s = append(s, strconv.Itoa(n))
		}
	}
	return strings.Join(s, ",")
}

func parseSizes(s string) ([]int, error) {
	var sizes []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "" {
			continue
		}
		mult := 1
		if v, ok := strings.CutSuffix(f, "k"); ok {
			f, mult = v, 1024
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 || n*mult > 8<<20 {
			return nil, fmt.Errorf("bad size %q", f)
		}
		sizes = append(sizes, n*mult)
	}
	return sizes, nil
}
