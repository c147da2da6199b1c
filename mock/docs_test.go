package mock

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReadmeFaults checks the README's table of llm_mock faults against
// the mock: the same kinds, each with the same keys and defaults.
func TestReadmeFaults(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	table := string(data)
	start := strings.Index(table, "| kind | keys (default) | effect |")
	if start < 0 {
		t.Fatal("README.md has no table of faults")
	}
	table = table[start:]
	if end := strings.Index(table, "\n\n"); end >= 0 {
		table = table[:end]
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|\\s*((?:[^|\\\\]|\\\\\\|)*?)\\s*\\| ")
	key := regexp.MustCompile("`([a-z_]+)(?:=[^`]*)?`(?: \\(([^)]*)\\))?")
	documented := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		kind := m[1]
		want, ok := faultKeys[kind]
		if !ok {
			t.Errorf("README.md lists the fault %q, which llm_mock does not have", kind)
			continue
		}
		documented[kind] = true
		f, err := parseFault(kind)
		if err != nil {
			t.Fatalf("fault %s: %v", kind, err)
		}
		var keys []string
		for _, k := range key.FindAllStringSubmatch(m[2], -1) {
			keys = append(keys, k[1])
			def := k[2]
			if def == "" || !regexp.MustCompile(`^[0-9]+[a-z]*$`).MatchString(def) {
				continue
			}
			var got string
			switch k[1] {
			case "code":
				got = strconv.Itoa(f.code)
			case "after":
				got = strconv.Itoa(f.after)
			case "delay":
				got = f.delay.String()
				if d, err := time.ParseDuration(def); err == nil {
					def = d.String()
				}
			default:
				t.Errorf("fault %s: README.md gives %s a default (%s) this test cannot check", kind, k[1], def)
				continue
			}
			if got != def {
				t.Errorf("fault %s: README.md says %s defaults to %s, the mock uses %s", kind, k[1], def, got)
			}
		}
		slices.Sort(keys)
		sorted := slices.Sorted(slices.Values(want))
		if !slices.Equal(keys, sorted) {
			t.Errorf("fault %s: README.md lists the keys %v, the mock reads %v", kind, keys, sorted)
		}
	}
	for kind := range faultKeys {
		if !documented[kind] {
			t.Errorf("fault %s is not in README.md's table", kind)
		}
	}
}
