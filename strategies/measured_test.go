package strategies_test

import (
	"math"
	"strings"
	"testing"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// selStat is a candidate's measurement for the measured strategies'
// tables: latency, time to first token, throughput and samples.
type selStat struct {
	lat, ttft, tps float64
	samples        int64
}

func selMeasured(stats ...selStat) []strategies.Candidate {
	cands := selNamed(strings.Fields("a b c d e f")[:len(stats)]...)
	for i, s := range stats {
		cands[i].Stats = upstreams.Stats{LatencyMs: s.lat, TTFTMs: s.ttft, TokensPerSecond: s.tps, Samples: s.samples}
	}
	return cands
}

func TestLowestLatency(t *testing.T) {
	tests := []struct {
		name       string
		minSamples int
		stream     bool
		stats      []selStat
		want       string
	}{
		{
			name:  "ascending latency",
			stats: []selStat{{lat: 300, samples: 5}, {lat: 100, samples: 5}, {lat: 200, samples: 5}},
			want:  "b c a",
		},
		{
			name:  "ties keep configured order",
			stats: []selStat{{lat: 200, samples: 5}, {lat: 100, samples: 5}, {lat: 200, samples: 5}, {lat: 100, samples: 9}},
			want:  "b d a c",
		},
		{
			name:   "streams rank by time to first token",
			stream: true,
			stats:  []selStat{{lat: 100, ttft: 90, samples: 5}, {lat: 900, ttft: 40, samples: 5}},
			want:   "b a",
		},
		{
			name:  "non-streams rank by total time",
			stats: []selStat{{lat: 100, ttft: 90, samples: 5}, {lat: 900, ttft: 40, samples: 5}},
			want:  "a b",
		},
		{
			name: "cold go first in configured order",
			stats: []selStat{
				{lat: 100, samples: 5}, // a warm
				{lat: 500, samples: 2}, // b too few samples
				{lat: 0, samples: 10},  // c no measurement
				{lat: 50, samples: 3},  // d warm
				{lat: 900, samples: 0}, // e never tried
			},
			want: "b c e d a",
		},
		{
			name:       "min_samples 1",
			minSamples: 1,
			stats:      []selStat{{lat: 100, samples: 5}, {lat: 500, samples: 1}, {lat: 0, samples: 10}, {lat: 50, samples: 3}},
			want:       "c d a b",
		},
		{
			name:   "a stream measurement is needed for streams",
			stream: true,
			stats:  []selStat{{lat: 100, ttft: 0, samples: 5}, {lat: 900, ttft: 40, samples: 5}},
			want:   "a b",
		},
		{
			name:  "NaN and infinite are cold",
			stats: []selStat{{lat: 100, samples: 5}, {lat: math.NaN(), samples: 5}, {lat: math.Inf(1), samples: 5}},
			want:  "b c a",
		},
		{name: "one", stats: []selStat{{lat: 1}}, want: "a"},
		{name: "none", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &strategies.LowestLatency{MinSamples: tt.minSamples, Explore: selF64(0)}
			for range 20 { // explore 0 is deterministic
				cands := selMeasured(tt.stats...)
				d := s.Select(&strategies.Request{Stream: tt.stream}, cands)
				if got := selModels(cands); got != tt.want {
					t.Fatalf("order = %q, want %q", got, tt.want)
				}
				if d.Reason != "lowest_latency" {
					t.Fatalf("reason = %q", d.Reason)
				}
			}
		})
	}
}

func TestHighestThroughput(t *testing.T) {
	tests := []struct {
		name       string
		minSamples int
		stats      []selStat
		want       string
	}{
		{
			name:  "descending tokens per second",
			stats: []selStat{{tps: 30, samples: 5}, {tps: 90, samples: 5}, {tps: 60, samples: 5}},
			want:  "b c a",
		},
		{
			name:  "ties keep configured order",
			stats: []selStat{{tps: 30, samples: 5}, {tps: 90, samples: 5}, {tps: 30, samples: 5}, {tps: 90, samples: 5}},
			want:  "b d a c",
		},
		{
			name: "cold go first in configured order",
			stats: []selStat{
				{tps: 100, samples: 5}, // a warm
				{tps: 10, samples: 1},  // b too few samples
				{tps: 0, samples: 10},  // c no measurement
				{tps: 200, samples: 3}, // d warm
			},
			want: "b c d a",
		},
		{
			name:       "min_samples 1",
			minSamples: 1,
			stats:      []selStat{{tps: 100, samples: 5}, {tps: 10, samples: 1}, {tps: 0, samples: 10}, {tps: 200, samples: 3}},
			want:       "c d a b",
		},
		{
			name:  "NaN is cold",
			stats: []selStat{{tps: 10, samples: 5}, {tps: math.NaN(), samples: 5}},
			want:  "b a",
		},
		{name: "none", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &strategies.HighestThroughput{MinSamples: tt.minSamples, Explore: selF64(0)}
			for range 20 {
				cands := selMeasured(tt.stats...)
				d := s.Select(&strategies.Request{}, cands)
				if got := selModels(cands); got != tt.want {
					t.Fatalf("order = %q, want %q", got, tt.want)
				}
				if d.Reason != "highest_throughput" {
					t.Fatalf("reason = %q", d.Reason)
				}
			}
		})
	}
}

func TestExplore(t *testing.T) {
	stats := []selStat{
		{lat: 100, tps: 400, samples: 5},
		{lat: 200, tps: 300, samples: 5},
		{lat: 300, tps: 200, samples: 5},
		{lat: 400, tps: 100, samples: 5},
	}
	for _, tc := range []struct {
		name string
		s    func(explore *float64) strategies.Strategy
	}{
		{"lowest_latency", func(p *float64) strategies.Strategy { return &strategies.LowestLatency{Explore: p} }},
		{"highest_throughput", func(p *float64) strategies.Strategy { return &strategies.HighestThroughput{Explore: p} }},
	} {
		t.Run(tc.name+"/always", func(t *testing.T) {
			// Exploring always puts one of the others first, uniformly,
			// and the rest keep their order.
			s := tc.s(selF64(1))
			counts := map[string]int{}
			const draws = 6000
			for range draws {
				cands := selMeasured(stats...)
				d := s.Select(&strategies.Request{}, cands)
				if d.Reason != tc.name+" explore" {
					t.Fatalf("reason = %q", d.Reason)
				}
				first := cands[0].Model
				counts[first]++
				rest := strings.Replace("a b c d", first, "", 1)
				if got := selModels(cands[1:]); got != strings.Join(strings.Fields(rest), " ") {
					t.Fatalf("order = %q", selModels(cands))
				}
			}
			if counts["a"] != 0 {
				t.Errorf("the best was put first by exploring %d times", counts["a"])
			}
			for _, m := range []string{"b", "c", "d"} {
				if share := 100 * float64(counts[m]) / draws; share < 33.3-5 || share > 33.3+5 {
					t.Errorf("%s explored in %.1f%% of draws, want 33.3%% ± 5", m, share)
				}
			}
		})
		t.Run(tc.name+"/default", func(t *testing.T) {
			// Unset means the default 5%, provisioned or not.
			s := tc.s(nil)
			explored := 0
			const draws = 10000
			for range draws {
				cands := selMeasured(stats...)
				if d := s.Select(&strategies.Request{}, cands); d.Reason == tc.name+" explore" {
					explored++
					if cands[0].Model == "a" {
						t.Fatal("explored without moving another candidate first")
					}
				} else if cands[0].Model != "a" {
					t.Fatalf("not exploring but %s first", cands[0].Model)
				}
			}
			if share := 100 * float64(explored) / draws; share < 3 || share > 7 {
				t.Errorf("explored in %.2f%% of draws, want 5%% ± 2", share)
			}
		})
	}
}
