package upstreams

import (
	"encoding/json"
	"fmt"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// ModuleJSON is caddyconfig.JSONModuleObject for callers that cannot pass
// warnings on: it encodes val as a JSON object with inlineKey set to name,
// and returns an error where JSONModuleObject would add a warning and
// return nil (a nil module that would silently be left out or replaced by
// a default).
func ModuleJSON(val any, inlineKey, name string) (json.RawMessage, error) {
	var warnings []caddyconfig.Warning
	raw := caddyconfig.JSONModuleObject(val, inlineKey, name, &warnings)
	if len(warnings) > 0 {
		return nil, fmt.Errorf("encoding %s %s: %s", inlineKey, name, warnings[0].Message)
	}
	return raw, nil
}
