package strategies

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestDifficultyUnmarshalCaddyfile checks the parser: the JSON it builds,
// and its syntax errors. The values Validate rejects are in
// TestValueChecks, as Caddyfile and as JSON.
func TestDifficultyUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		input   string
		want    string // JSON of the module
		wantErr string
	}{
		{input: `difficulty {
			weights length 0.2 reasoning 0.3 structure 0.2 domain 0.2 context 0.1
			long_tokens 2000
			add_cues reasoning 权衡 tradeoff
			tier 0    small
			tier 0.35 medium
			tier 0.7  large large-backup
		}`, want: `{"weights":{"context":0.1,"domain":0.2,"length":0.2,"reasoning":0.3,"structure":0.2},"long_tokens":2000,"add_cues":{"reasoning":["权衡","tradeoff"]},"tiers":[{"min":0,"models":["small"]},{"min":0.35,"models":["medium"]},{"min":0.7,"models":["large","large-backup"]}]}`},
		{input: `difficulty {
			weights reasoning 1
			weights domain 0.5
			history_tokens 8000
			system_tokens 1000
			cues domain kubernetes "service mesh" helm*
			cues domain istio
			add_cues structure "output as" 格式
			tier 0.5 big
		}`, want: `{"weights":{"domain":0.5,"reasoning":1},"history_tokens":8000,"system_tokens":1000,"cues":{"domain":["kubernetes","service mesh","helm*","istio"]},"add_cues":{"structure":["output as","格式"]},"tiers":[{"min":0.5,"models":["big"]}]}`},
		{input: `difficulty`, want: `{}`},
		{input: `difficulty now`, wantErr: "wrong argument count"},
		{input: "difficulty {\n weights length\n}", wantErr: "wrong argument count"},
		{input: "difficulty {\n weights\n}", wantErr: "wrong argument count"},
		{input: "difficulty {\n weights length x\n}", wantErr: "invalid weight value 'x'"},
		{input: "difficulty {\n long_tokens\n}", wantErr: "wrong argument count"},
		{input: "difficulty {\n system_tokens 1 2\n}", wantErr: "wrong argument count"},
		{input: "difficulty {\n cues reasoning\n}", wantErr: "wrong argument count"},
		{input: "difficulty {\n tier 0.5\n}", wantErr: "wrong argument count"},
		{input: "difficulty {\n tier high big\n}", wantErr: "invalid tier score 'high'"},
		{input: "difficulty {\n threshold 0.5\n}", wantErr: "unrecognized subdirective: threshold"},
	}
	for _, tt := range tests {
		var s Difficulty
		err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want %q", tt.input, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.input, err)
			continue
		}
		got, _ := json.Marshal(&s)
		if string(got) != tt.want {
			t.Errorf("%q:\n got %s\nwant %s", tt.input, got, tt.want)
		}
	}
}

func TestDifficultyUnmarshalModule(t *testing.T) {
	// As the route directive reads it: "strategy difficulty { ... }", the
	// dispenser on the strategy's name.
	d := caddyfile.NewTestDispenser(`strategy difficulty {
		tier 0 small
		tier 0.5 large
	}
	strategy_after x`)
	d.Next()
	d.NextArg()
	mod, err := caddyfile.UnmarshalModule(d, Namespace+".difficulty")
	if err != nil {
		t.Fatal(err)
	}
	s := mod.(*Difficulty)
	if len(s.Tiers) != 2 || s.Tiers[1].Models[0] != "large" {
		t.Errorf("tiers %+v", s.Tiers)
	}
	if !d.Next() || d.Val() != "strategy_after" {
		t.Errorf("dispenser not past the block: at %q", d.Val())
	}
}
