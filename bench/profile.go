package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// profile takes a CPU profile of a Caddy arm from its admin API while the
// harness offers it rate requests/s, and writes it to name in
// o.ProfileDir. It returns the file's path.
func profile(ctx context.Context, o Options, hc *http.Client, t target, body []byte, rate float64, name string) (string, error) {
	if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
		return "", err
	}
	secs := max(1, int(o.ProfileDuration/time.Second))
	// The load runs a second longer on each side, so that the whole
	// profile sees it.
	load := make(chan loopResult, 1)
	go func() { load <- openLoop(ctx, hc, t, body, rate, time.Duration(secs+2)*time.Second, o.MaxInflight) }()
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	prof, err := fetchProfile(ctx, t.admin, secs)
	lr := <-load
	o.logf("   profile at %.0f/s: %d requests, %d errors", rate, lr.Sent, lr.Errors)
	if err != nil {
		return "", err
	}
	path := filepath.Join(o.ProfileDir, strings.ReplaceAll(name, ":", "-"))
	return path, os.WriteFile(path, prof, 0o644)
}

func fetchProfile(ctx context.Context, admin string, secs int) ([]byte, error) {
	if err := checkLoopback(admin); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", admin, secs), nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: time.Duration(secs+30) * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s from the admin API's profiler: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}
