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

// TestReadmeMockDefaults checks the defaults of README.md's llm_mock
// syntax block against the mock's.
func TestReadmeMockDefaults(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	start := strings.Index(readme, "```caddyfile\nllm_mock {")
	if start < 0 {
		t.Fatal("README.md has no llm_mock syntax block")
	}
	block := readme[start:]
	block = block[:strings.Index(block, "\n```\n")]
	want := map[string]string{
		"text":         `"` + DefaultText + `"`,
		"fault_header": DefaultFaultHeader,
		"ttft_tail":    "10",
		"prefill":      PrefillContinue,
	}
	re := regexp.MustCompile(`^\s*([a-z_]+)\b[^#]*#.*?\bdefault:? ([^;,]+?)\s*(?:[;,]|$)`)
	found := map[string]bool{}
	for _, l := range strings.Split(block, "\n") {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		w, ok := want[m[1]]
		if !ok {
			continue
		}
		found[m[1]] = true
		if m[2] != w {
			t.Errorf("README.md says %s defaults to %s, the mock's default is %s", m[1], m[2], w)
		}
	}
	for name := range want {
		if !found[name] {
			t.Errorf("README.md's llm_mock block gives no default for %s", name)
		}
	}
}
