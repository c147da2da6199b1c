package learn

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestReadmeFlags checks the flags of `caddy llm-route train` and `eval`
// against README.md's section on them: every flag is documented, and
// every flag the section names exists.
func TestReadmeFlags(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(data)
	start := strings.Index(section, "#### Learning routers offline")
	if start < 0 {
		t.Fatal("README.md has no section on caddy llm-route")
	}
	section = section[start:]
	if end := strings.Index(section[1:], "\n#### "); end >= 0 {
		section = section[:end+1]
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`--([a-z][a-z0-9-]*)`).FindAllStringSubmatch(section, -1) {
		documented[m[1]] = true
	}
	flags := map[string]bool{}
	flagRE := regexp.MustCompile(`(?m)^\s+(?:-[a-z], )?--([a-z][a-z0-9-]*)`)
	for _, c := range []*cobra.Command{trainCommand(), evalCommand()} {
		for _, m := range flagRE.FindAllStringSubmatch(c.Flags().FlagUsages(), -1) {
			flags[m[1]] = true
			if !documented[m[1]] {
				t.Errorf("caddy llm-route %s --%s is not in README.md's section", c.Name(), m[1])
			}
		}
	}
	if len(flags) < 10 {
		t.Fatalf("found only %d flags of train and eval", len(flags))
	}
	for name := range documented {
		if !flags[name] {
			t.Errorf("README.md's section names --%s, which neither train nor eval has", name)
		}
	}
}
