package llmroute

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The gateway's own model list: GET on a path ending in /models answers
// with every model and route a client may ask for (routes, built-in
// aliases, registered and discovered models), so that clients which
// discover models (Open WebUI, LibreChat, the SDKs' models.list) work
// unchanged; GET .../models/<id> answers one of them. The shape is
// Anthropic's for Anthropic clients (a request with anthropic-version,
// or x-api-key and no Authorization), with its paging (limit, after_id,
// before_id), and OpenAI's otherwise. With client keys, the request
// needs a valid key and lists what that key may use.

// modelsPath reports whether a path asks for the model list (id "")
// or one model.
func modelsPath(path string) (id string, ok bool) {
	if strings.HasSuffix(path, "/models") || strings.HasSuffix(path, "/models/") {
		return "", true
	}
	if _, id, ok := strings.Cut(path, "/models/"); ok && id != "" {
		return id, true
	}
	return "", false
}

// listsModels reports whether the handler answers GET .../models.
func (h *Handler) listsModels() bool { return h.ListModels == nil || *h.ListModels }

// anthropicClient reports whether a request comes from an Anthropic
// client.
func anthropicClient(r *http.Request) bool {
	return r.Header.Get("Anthropic-Version") != "" || r.Header.Get("X-Api-Key") != "" && r.Header.Get("Authorization") == ""
}

// serveModelList answers GET .../models or .../models/<id>.
func (h *Handler) serveModelList(w http.ResponseWriter, r *http.Request, id string) error {
	setRequestID(w, r)
	anthropic := anthropicClient(r)
	endpoint := "/models"
	if anthropic {
		endpoint = "/messages" // (for the shape of errors)
	}
	key, rerr := h.authenticate(r)
	if rerr != nil {
		writeError(w, endpoint, rerr.status, rerr.code, rerr.msg)
		return nil
	}
	names := h.listedModels(key)
	created := h.provisioned
	if id != "" {
		if !slices.Contains(names, id) {
			writeError(w, endpoint, http.StatusNotFound, "model_not_found", fmt.Sprintf("model %q does not exist", truncate(id, 128)))
			return nil
		}
		body, _ := json.Marshal(modelObject(id, anthropic, created))
		writeJSON(w, http.StatusOK, body)
		return nil
	}
	if !anthropic {
		data := make([]any, len(names))
		for i, n := range names {
			data[i] = modelObject(n, false, created)
		}
		body, _ := json.Marshal(map[string]any{"object": "list", "data": data})
		writeJSON(w, http.StatusOK, body)
		return nil
	}
	page, more, rerr := anthropicPage(names, r)
	if rerr != nil {
		writeError(w, endpoint, rerr.status, rerr.code, rerr.msg)
		return nil
	}
	data := make([]any, len(page))
	for i, n := range page {
		data[i] = modelObject(n, true, created)
	}
	out := map[string]any{"data": data, "has_more": more, "first_id": nil, "last_id": nil}
	if len(page) > 0 {
		out["first_id"], out["last_id"] = page[0], page[len(page)-1]
	}
	body, _ := json.Marshal(out)
	writeJSON(w, http.StatusOK, body)
	return nil
}

// modelObject is one entry of the list.
func modelObject(id string, anthropic bool, created time.Time) any {
	if anthropic {
		return map[string]any{"type": "model", "id": id, "display_name": id,
			"created_at": created.UTC().Format(time.RFC3339)}
	}
	return map[string]any{"id": id, "object": "model", "created": created.Unix(), "owned_by": "llm_route"}
}

// anthropicPage cuts the page Anthropic's paging asks for: limit (1 to
// 1000, default 20) entries after after_id or before before_id.
func anthropicPage(names []string, r *http.Request) ([]string, bool, *requestError) {
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return nil, false, badRequest("invalid_request_error", "limit must be an integer from 1 to 1000")
		}
		limit = n
	}
	if after := q.Get("after_id"); after != "" {
		i := slices.Index(names, after)
		if i < 0 {
			return nil, false, badRequest("invalid_request_error", "after_id %q is not a listed model", truncate(after, 128))
		}
		names = names[i+1:]
	} else if before := q.Get("before_id"); before != "" {
		i := slices.Index(names, before)
		if i < 0 {
			return nil, false, badRequest("invalid_request_error", "before_id %q is not a listed model", truncate(before, 128))
		}
		names = names[max(i-limit, 0):i]
		return names, i-limit > 0, nil
	}
	if len(names) > limit {
		return names[:limit], true, nil
	}
	return names, false, nil
}

// listedModels returns the names a client with key may ask for, each
// once: the configured routes, the built-in aliases, the registered
// models, then the discovered ones (sorted).
func (h *Handler) listedModels(key *ClientKey) []string {
	var names []string
	seen := make(map[string]bool)
	add := func(n string) {
		if !seen[n] && h.permits(key, n) {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, r := range h.Routes {
		add(r.Name)
	}
	for _, a := range builtinAliases {
		if h.routes[a.name] != nil {
			add(a.name)
		}
	}
	for _, m := range h.Models {
		if !isTemplate(m) {
			add(m.Name)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(h.discoveredModels())) {
		add(id)
	}
	return names
}
