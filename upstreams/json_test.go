package upstreams

import (
	"math"
	"strings"
	"testing"
)

// TestModuleJSON checks that a value JSON cannot carry is an error, not a
// nil module (caddyconfig.JSONModuleObject with nil warnings, as the
// parsers and Provision called it, returns nil and says nothing).
func TestModuleJSON(t *testing.T) {
	raw, err := ModuleJSON(struct {
		Weight float64 `json:"weight"`
	}{1.5}, "name", "weighted")
	if err != nil || string(raw) != `{"name":"weighted","weight":1.5}` {
		t.Errorf("ModuleJSON = %s, %v", raw, err)
	}
	raw, err = ModuleJSON(struct {
		Weight float64 `json:"weight"`
	}{math.NaN()}, "name", "weighted")
	if err == nil || !strings.Contains(err.Error(), "encoding name weighted: json: unsupported value: NaN") {
		t.Errorf("ModuleJSON of NaN = %s, %v; want an error", raw, err)
	}
}
