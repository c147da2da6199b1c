package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Markdown writes the report as tables that can be pasted into
// BENCHMARKS.md.
func (r *Report) Markdown(w io.Writer) {
	e := r.Env
	fmt.Fprintf(w, "Command: `%s`\n\n", r.Command)
	fmt.Fprintf(w, "| | |\n|---|---|\n")
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "| %s | %s |\n", k, strings.ReplaceAll(v, "|", "/"))
		}
	}
	row("started (UTC)", e.Started)
	row("duration", e.Duration)
	row("CPU", fmt.Sprintf("%s, %d cores", e.CPU, e.Cores))
	row("kernel", e.Kernel)
	row("load average (1, 5, 15 min) at start / end", e.LoadStart+" / "+e.LoadEnd)
	row("pinning", e.Pinning)
	row("Go", e.GoVersion)
	row("Caddy", e.CaddyVersion)
	row("llm_route", e.LLMRoute)
	row("Node", e.NodeVersion)
	row("Portkey", e.PortkeyVersion)
	fmt.Fprintln(w)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
	}

	cells := map[string]*Cell{}
	var nonStream, stream []int
	var arms []string
	seenArm := map[string]bool{}
	seenSize := map[string]bool{}
	for i := range r.Cells {
		c := &r.Cells[i]
		cells[cellKey(c.Workload, c.Size, c.Arm)] = c
		if !seenArm[c.Arm] {
			seenArm[c.Arm] = true
			arms = append(arms, c.Arm)
		}
		if k := fmt.Sprint(c.Workload, c.Size); !seenSize[k] {
			seenSize[k] = true
			switch c.Workload {
			case NonStream:
				nonStream = append(nonStream, c.Size)
			case Stream:
				stream = append(stream, c.Size)
			}
		}
	}
	get := func(wl Workload, size int, arm string) *Cell {
		c := cells[cellKey(wl, size, arm)]
		if c == nil || c.Err != "" {
			return nil
		}
		return c
	}

	if len(nonStream) > 0 {
		how := "each arm alone"
		if r.Options.Interleave {
			how = "all arms running side by side in front of one mock, taking turns request by request, so that load from elsewhere falls on all alike"
		}
		fmt.Fprintf(w, "**Latency at concurrency 1** (non-stream; sequential requests, %s; latency of the whole answer; \"− D\" and \"− C\" are differences of the percentiles, the latency a layer adds; C′ is the bare reverse_proxy served by the R arm's own Caddy process, taking its turn with the others, so that \"− C′\" compares two sites of one process; other load is the CPU that processes other than the harness's took meanwhile, in cores):\n\n", how)
		fmt.Fprintf(w, "| body | arm | p50 | p99 | p50 − D | p99 − D | p50 − C | p99 − C | p50 − C′ | p99 − C′ | n | other load |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, size := range nonStream {
			d, cc := get(NonStream, size, "D"), get(NonStream, size, "C")
			for _, arm := range arms {
				c := get(NonStream, size, arm)
				if c == nil || c.C1 == nil {
					continue
				}
				twin := &Cell{C1: c.C1Twin}
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %.2f |\n", sizeLabel(size), arm,
					fmtDur(c.C1.P50), fmtDur(c.C1.P99),
					diff(c, d, arm != "D", p50), diff(c, d, arm != "D", p99),
					diff(c, cc, arm != "D" && arm != "C", p50), diff(c, cc, arm != "D" && arm != "C", p99),
					diff(c, twin, true, p50), diff(c, twin, true, p99),
					c.C1.N, c.OtherLoad)
			}
		}
		fmt.Fprintln(w)

		if bound := r.bound(); bound > 0 {
			fmt.Fprintf(w, "**Max throughput at p99 ≤ %s** (open loop: constant arrival rate, latency from each request's due time; the highest rate offered that held with no error, in each round of the search (every arm of a body size takes its turn in a round, on fresh processes) and the median of the rounds; ÷ C is the ratio of the medians to bare reverse_proxy's; \"p99 there\" is the first round's; CPU is the server process's user+system time per request (10 ms ticks), while every arm is offered the same %.0f requests/s for %s, and at the arm's max rate, \"(over)\" where the arm did not hold the fixed rate; RSS is the server process's peak, VmHWM, after that fixed rate and after the whole search, whose failing rates overload it; other load is the CPU other processes took during the first round's step at the max rate, in cores):\n\n", fmtDur(bound), r.Options.CPURate, r.Options.CPUDuration)
			fmt.Fprintf(w, "| body | arm | max req/s | rounds | p99 there | ÷ C | CPU per request at %.0f/s | CPU per request at max | peak RSS at %.0f/s | peak RSS | other load |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n", r.Options.CPURate, r.Options.CPURate)
			for _, size := range nonStream {
				cc := get(NonStream, size, "C")
				for _, arm := range arms {
					c := get(NonStream, size, arm)
					if c == nil || c.Search == nil {
						continue
					}
					p99, ratio, other := "—", "—", "—"
					if c.Search.AtMax != nil {
						p99 = fmtDur(c.Search.AtMax.Lat.P99)
						other = fmt.Sprintf("%.2f", c.Search.AtMax.OtherLoad)
					}
					cpu := fmtCPU(c)
					if p := c.CPUPhase; p != nil && (p.Errors > 0 || p.Lat.P99 > bound) {
						cpu += " (over)"
					}
					if cc != nil && cc.Search != nil && cc.MedianMaxRate() > 0 && arm != "C" {
						ratio = fmt.Sprintf("%.2f", c.MedianMaxRate()/cc.MedianMaxRate())
					}
					var rounds []string
					for _, r := range c.MaxRates() {
						rounds = append(rounds, fmt.Sprintf("%.0f", r))
					}
					fmt.Fprintf(w, "| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |\n", sizeLabel(size), arm, c.MedianMaxRate(), strings.Join(rounds, " / "), p99, ratio, cpu, fmtLoopCPU(c.Search.AtMax), fmtMiB(c.RSSAtCPURate), fmtMiB(c.PeakRSS), other)
				}
			}
			fmt.Fprintln(w)
		}
	}

	if len(stream) > 0 {
		fmt.Fprintf(w, "**Streams at concurrency 1** (SSE, %d chunks the mock sends %s apart; TTFT from the request to the first chunk; gap between successive chunks as the client reads them; a delivery is a read that completed at least one chunk, so a layer that buffered would show few deliveries per stream; \"TTFT p50 − C′\": after its own streams, an R arm's streams again, taking turns with those of C′, the bare reverse_proxy of the same Caddy process, and the difference of their medians):\n\n", r.Options.Chunks, fmtDur(r.Options.ChunkGap))
		fmt.Fprintf(w, "| body | arm | TTFT p50 | TTFT p99 | TTFT p50 − D | TTFT p50 − C | TTFT p50 − C′ | gap p50 | gap p99 | gap p50 − D | chunks | deliveries (min / mean) | CPU per stream | peak RSS | n | other load |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, size := range stream {
			d, cc := get(Stream, size, "D"), get(Stream, size, "C")
			for _, arm := range arms {
				c := get(Stream, size, arm)
				if c == nil || c.TTFT == nil {
					continue
				}
				chunks := fmt.Sprint(c.ChunksMin)
				if c.ChunksMax != c.ChunksMin {
					chunks = fmt.Sprintf("%d–%d", c.ChunksMin, c.ChunksMax)
				}
				if d != nil && (d.ChunksMin != c.ChunksMin || d.ChunksMax != c.ChunksMax) {
					chunks += " (≠ D)"
				}
				paired := "—"
				if c.TTFTPaired != nil && c.TTFTTwin != nil {
					paired = fmtSigned(c.TTFTPaired.P50 - c.TTFTTwin.P50)
				}
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d / %.1f | %s | %s | %d | %.2f |\n", sizeLabel(size), arm,
					fmtDur(c.TTFT.P50), fmtDur(c.TTFT.P99),
					streamDiff(c, d, arm != "D", ttft50), streamDiff(c, cc, arm != "D" && arm != "C", ttft50), paired,
					fmtDur(c.Gap.P50), fmtDur(c.Gap.P99), streamDiff(c, d, arm != "D", gap50),
					chunks, c.DeliveriesMin, c.DeliveriesMean, fmtCPU(c), fmtMiB(c.PeakRSS), c.TTFT.N, c.OtherLoad)
			}
		}
		fmt.Fprintln(w)
	}

	var conc []*Cell
	for _, arm := range arms {
		if c := get(Concurrent, 1<<10, arm); c != nil && c.Conc != nil {
			conc = append(conc, c)
		}
	}
	if len(conc) > 0 {
		bound := "no bound"
		if b := r.Options.ConcRSSBoundMiB; b > 0 {
			bound = fmt.Sprintf("the bound on a gateway's (C, R) peak RSS is %d MiB", b)
		}
		fmt.Fprintf(w, "**Concurrent streams** (%d streams of %d chunks %s apart, started evenly over %s; RSS is the server process's peak, VmHWM; %s):\n\n", r.Options.ConcStreams, r.Options.Chunks, fmtDur(r.Options.ConcGap), fmtDur(r.Options.ConcRamp), bound)
		fmt.Fprintf(w, "| arm | streams | completed | with all %d chunks | most open at once | errors | peak RSS | within bound | CPU per stream | wall time | other load |\n|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n", r.Options.Chunks)
		for _, c := range conc {
			within := "—"
			if ok, judged := r.concWithinBound(c); judged {
				within = map[bool]string{true: "yes", false: "**no**"}[ok]
			}
			fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %d | %s | %s | %s | %s | %.2f |\n", c.Arm, c.Conc.Streams, c.Conc.Completed, c.Conc.FullCount, c.Conc.MaxOpen, c.Conc.Errors, fmtMiB(c.PeakRSS), within, fmtCPU(c), fmtDur(c.Conc.Duration), c.OtherLoad)
		}
		fmt.Fprintln(w)
	}

	var failed []string
	for _, c := range r.Cells {
		switch {
		case c.Err != "":
			failed = append(failed, fmt.Sprintf("- %s %s %s failed: %s", c.Arm, c.Workload, sizeLabel(c.Size), oneLine(c.Err)))
		case c.Workload == NonStream && c.C1 == nil && c.FirstErr != "":
			failed = append(failed, fmt.Sprintf("- %s %s %s: no concurrency-1 figures: %s", c.Arm, c.Workload, sizeLabel(c.Size), oneLine(c.FirstErr)))
		case c.Workload == Concurrent && c.Conc != nil && !first(r.concWithinBound(&c)):
			failed = append(failed, fmt.Sprintf("- %s held %d concurrent streams at a peak RSS of %s, over the bound of %d MiB", c.Arm, c.Conc.Streams, fmtMiB(c.PeakRSS), r.Options.ConcRSSBoundMiB))
		case c.C1Errors > 0:
			failed = append(failed, fmt.Sprintf("- %s %s %s: %d errors at concurrency 1, the first: %s", c.Arm, c.Workload, sizeLabel(c.Size), c.C1Errors, oneLine(c.FirstErr)))
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "Errors:\n\n%s\n\n", strings.Join(failed, "\n"))
	}
}

// concWithinBound tells whether a gateway arm's peak RSS under the
// concurrent streams stayed within the bound; judged is false for the
// mock (D), Portkey (P) and when there is no bound.
func (r *Report) concWithinBound(c *Cell) (ok, judged bool) {
	b := r.Options.ConcRSSBoundMiB
	if b <= 0 || c.PeakRSS <= 0 || (c.Arm != "C" && !strings.HasPrefix(c.Arm, "R:")) {
		return true, false
	}
	return c.PeakRSS <= int64(b)<<20, true
}

func first(ok, _ bool) bool { return ok }

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func (r *Report) bound() time.Duration {
	for _, c := range r.Cells {
		if c.Search != nil {
			return c.Search.Bound
		}
	}
	return 0
}

func cellKey(w Workload, size int, arm string) string { return fmt.Sprint(w, "/", size, "/", arm) }

func p50(d *Dist) time.Duration { return d.P50 }
func p99(d *Dist) time.Duration { return d.P99 }

// diff is the c-minus-base difference of a concurrency-1 percentile.
func diff(c, base *Cell, show bool, f func(*Dist) time.Duration) string {
	if !show || base == nil || base.C1 == nil || c.C1 == nil {
		return "—"
	}
	return fmtSigned(f(c.C1) - f(base.C1))
}

func ttft50(c *Cell) time.Duration { return c.TTFT.P50 }
func gap50(c *Cell) time.Duration  { return c.Gap.P50 }

func streamDiff(c, base *Cell, show bool, f func(*Cell) time.Duration) string {
	if !show || base == nil || base.TTFT == nil || c.TTFT == nil {
		return "—"
	}
	return fmtSigned(f(c) - f(base))
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "−" + fmtDur(-d)
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(d)/1e3)
	case d < 10*time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}

func fmtSigned(d time.Duration) string {
	if d >= 0 {
		return "+" + fmtDur(d)
	}
	return fmtDur(d)
}

// fmtCPU shows CPU per request; "~" marks a figure from fewer than 20
// ticks (200 ms), whose resolution is coarse.
func fmtCPU(c *Cell) string {
	if c.CPURequests == 0 {
		return "—"
	}
	s := fmtDur(c.CPUPerReq)
	if c.CPUTicks < 20 {
		s = "~" + s
	}
	return s
}

func fmtLoopCPU(l *loopResult) string {
	if l == nil || l.Sent == 0 {
		return "—"
	}
	s := fmtDur(l.cpuPerReq())
	if l.CPUTicks < 20 {
		s = "~" + s
	}
	return s
}

func fmtMiB(b int64) string {
	if b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
