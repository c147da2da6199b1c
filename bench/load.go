package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// target is where an arm's requests go.
type target struct {
	url    string      // loopback only
	header http.Header // extra request headers (Portkey's)
	admin  string      // Caddy's admin API (C and R arms), for profiles
	twin   string      // R arms at concurrency 1 and in stream cells: the bare reverse_proxy in the same Caddy (C')
}

// checkLoopback refuses any URL whose host is not a loopback IP: the
// harness sends load to this machine only.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing non-loopback target %q", raw)
	}
	return nil
}

// newClient returns an HTTP/1.1 keep-alive client that may hold up to
// conns connections, never asks for compression (so that stream reads see
// the server's own writes) and gives up on a request after timeout.
func newClient(conns int, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		WriteBufferSize:     64 << 10,
		ReadBufferSize:      64 << 10,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// result is one request's outcome.
type result struct {
	err    error
	status int
	header http.Header // the response headers
	// streams only
	ttft       time.Duration // from the start to the first data event
	gaps       []time.Duration
	events     int  // JSON data events (chunks)
	deliveries int  // reads that completed at least one chunk
	done       bool // "data: [DONE]" seen
}

func (r *result) ok() bool { return r.err == nil && r.status == http.StatusOK }

// do sends one request and reads the whole answer. For a stream it times
// every event from start.
func do(ctx context.Context, hc *http.Client, t target, body []byte, stream bool, start time.Time) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return result{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-llmbench")
	for k, v := range t.header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	r := result{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode != http.StatusOK || !stream {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			r.err = err
		} else if resp.StatusCode == http.StatusOK && !bytes.Contains(b, []byte(`"choices"`)) {
			r.err = fmt.Errorf("answer without choices: %.200q", b)
		} else if resp.StatusCode != http.StatusOK {
			r.err = fmt.Errorf("status %d: %.300q", resp.StatusCode, b)
		}
		return r
	}
	r.err = readStream(resp.Body, start, &r)
	if r.err == nil && !r.done {
		r.err = errors.New("stream ended without [DONE]")
	}
	return r
}

// readStream reads SSE events as they arrive. Each event is stamped with
// the time of the read that completed it, so a proxy that buffered the
// stream shows up as few deliveries and near-zero gaps.
func readStream(body io.Reader, start time.Time, r *result) error {
	buf := make([]byte, 0, 64<<10)
	chunk := make([]byte, 32<<10)
	var last time.Time
	for {
		n, err := body.Read(chunk)
		now := time.Now()
		if n > 0 {
			buf = append(buf, chunk[:n]...)
			completed := 0
			for {
				i := bytes.Index(buf, []byte("\n\n"))
				if i < 0 {
					break
				}
				ev := bytes.TrimSpace(buf[:i])
				buf = buf[i+2:]
				for line := range bytes.SplitSeq(ev, []byte("\n")) {
					data, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data:"))
					if !ok {
						continue
					}
					data = bytes.TrimSpace(data)
					switch {
					case bytes.Equal(data, []byte("[DONE]")):
						r.done = true
					case len(data) > 0 && data[0] == '{':
						if r.events == 0 {
							r.ttft = now.Sub(start)
						} else {
							r.gaps = append(r.gaps, now.Sub(last))
						}
						last = now
						r.events++
						completed++
					}
				}
			}
			if completed > 0 {
				r.deliveries++
			}
			buf = slices.Clip(buf) // keep the remainder small
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// latencies is a set of durations with percentiles.
type latencies []time.Duration

func (l latencies) sorted() latencies {
	s := slices.Clone(l)
	slices.Sort(s)
	return s
}

// pct returns the p-th percentile (0..100) of sorted durations, nearest
// rank.
func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(p/100*float64(len(l))+0.5) - 1
	i = max(0, min(i, len(l)-1))
	return l[i]
}

// Dist summarises a latency distribution.
type Dist struct {
	N    int           `json:"n"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
	Mean time.Duration `json:"mean_ns"`
}

func summarize(l latencies) Dist {
	s := l.sorted()
	d := Dist{N: len(s)}
	if len(s) == 0 {
		return d
	}
	var sum time.Duration
	for _, v := range s {
		sum += v
	}
	d.P50, d.P90, d.P99, d.Max = s.pct(50), s.pct(90), s.pct(99), s[len(s)-1]
	d.Mean = sum / time.Duration(len(s))
	return d
}

// seqResult is what a sequential run saw.
type seqResult struct {
	lat      latencies
	errors   int
	firstErr error
	first    *result // the first successful answer (headers, stream stats)
	streams  []result
}

// sequential sends requests one after another (concurrency 1): warmup
// unrecorded ones, then up to n recorded ones or as many as fit in maxDur.
// It returns the latencies of the successful ones, the error count and the
// first error and successful answer seen.
func sequential(ctx context.Context, hc *http.Client, t target, body []byte, stream bool, warmup, n int, maxDur time.Duration) seqResult {
	var sr seqResult
	for range warmup {
		if ctx.Err() != nil {
			break
		}
		do(ctx, hc, t, body, stream, time.Now())
	}
	deadline := time.Now().Add(maxDur)
	for i := 0; i < n && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		start := time.Now()
		r := do(ctx, hc, t, body, stream, start)
		el := time.Since(start)
		if !r.ok() {
			sr.errors++
			if sr.firstErr == nil {
				sr.firstErr = describe(r)
			}
			continue
		}
		sr.lat = append(sr.lat, el)
		if sr.first == nil {
			sr.first = &r
		}
		if stream {
			r.header = nil
			sr.streams = append(sr.streams, r)
		}
	}
	return sr
}

func describe(r result) error {
	if r.err != nil {
		return r.err
	}
	return fmt.Errorf("status %d", r.status)
}

// loopResult is one open-loop run at a fixed arrival rate.
type loopResult struct {
	Rate     float64 `json:"rate"`     // requests per second offered
	Achieved float64 `json:"achieved"` // successful answers per second
	Sent     int     `json:"sent"`
	Errors   int     `json:"errors"`
	Lat      Dist    `json:"latency"` // from each request's scheduled time
	FirstErr string  `json:"first_error,omitempty"`
	// The server process's CPU time during the run, in 10 ms ticks.
	CPUTicks int64 `json:"cpu_ticks"`
	// CPU taken by other processes on the machine meanwhile, in cores.
	OtherLoad float64 `json:"other_load"`
}

// cpuPerReq is the server's CPU time per request sent.
func (l *loopResult) cpuPerReq() time.Duration {
	if l == nil || l.Sent == 0 {
		return 0
	}
	return time.Duration(l.CPUTicks) * clockTick / time.Duration(l.Sent)
}

// openLoop offers rate requests per second for dur: request i is due at
// t0 + i/rate whatever happened to the earlier ones, and its latency
// counts from that due time, so a server (or a client) that falls behind
// cannot hide its queueing (no coordinated omission). At most maxInflight
// requests are outstanding; one that waits for a slot is late, and its
// wait counts.
func openLoop(ctx context.Context, hc *http.Client, t target, body []byte, rate float64, dur time.Duration, maxInflight int) loopResult {
	n := max(1, int(rate*dur.Seconds()))
	interval := time.Duration(float64(time.Second) / rate)
	lat := make(latencies, n)
	okFlags := make([]bool, n)
	var errs atomic.Int64
	var firstErr atomic.Pointer[string]
	var lastDone atomic.Int64
	sem := make(chan struct{}, maxInflight)
	var wg sync.WaitGroup
	t0 := time.Now().Add(5 * time.Millisecond)
	sent := 0
	for i := range n {
		due := t0.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if ctx.Err() != nil {
			break
		}
		sent++
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := do(ctx, hc, t, body, false, due)
			now := time.Now()
			<-sem
			if !r.ok() {
				if errs.Add(1) == 1 {
					s := describe(r).Error()
					firstErr.Store(&s)
				}
				return
			}
			lat[i] = now.Sub(due)
			okFlags[i] = true
			for {
				old := lastDone.Load()
				if now.UnixNano() <= old || lastDone.CompareAndSwap(old, now.UnixNano()) {
					break
				}
			}
		}()
	}
	wg.Wait()
	var good latencies
	for i, ok := range okFlags {
		if ok {
			good = append(good, lat[i])
		}
	}
	lr := loopResult{Rate: rate, Sent: sent, Errors: int(errs.Load()), Lat: summarize(good)}
	if p := firstErr.Load(); p != nil {
		lr.FirstErr = *p
	}
	if end := lastDone.Load(); end > 0 {
		// Over the offered window at least: n requests due over
		// n intervals.
		span := max(time.Unix(0, end).Sub(t0), time.Duration(n)*interval)
		lr.Achieved = float64(len(good)) / span.Seconds()
	}
	return lr
}

// concResult is what a concurrent-streams run saw.
type concResult struct {
	Streams   int           `json:"streams"`
	Completed int           `json:"completed"`
	FullCount int           `json:"full_count"` // completed with every chunk
	MaxOpen   int           `json:"max_open"`
	Errors    int           `json:"errors"`
	FirstErr  string        `json:"first_error,omitempty"`
	Duration  time.Duration `json:"duration_ns"`
}

// concurrentStreams opens n streams, spread evenly over ramp, and reads
// them all to the end. It reports how many completed with the full chunk
// count, and the most that were open at once.
func concurrentStreams(ctx context.Context, hc *http.Client, t target, body []byte, n, chunks int, ramp time.Duration) concResult {
	var mu sync.Mutex
	cr := concResult{Streams: n}
	var open, maxOpen atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range n {
		due := t0.Add(ramp * time.Duration(i) / time.Duration(n))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := open.Add(1)
			for {
				m := maxOpen.Load()
				if o <= m || maxOpen.CompareAndSwap(m, o) {
					break
				}
			}
			r := do(ctx, hc, t, body, true, time.Now())
			open.Add(-1)
			mu.Lock()
			defer mu.Unlock()
			if !r.ok() {
				cr.Errors++
				if cr.FirstErr == "" {
					cr.FirstErr = describe(r).Error()
				}
				return
			}
			cr.Completed++
			if r.events == chunks {
				cr.FullCount++
			}
		}()
	}
	wg.Wait()
	cr.Duration = time.Since(t0)
	cr.MaxOpen = int(maxOpen.Load())
	return cr
}
