package mock

import (
	"net/http"
	"slices"
	"strconv"
	"time"
)

// serveModels answers GET .../models: the configured model list in
// OpenAI's shape, or Anthropic's for a request with anthropic-version
// (paged: limit, default 20, and after_id).
func (h *Handler) serveModels(w http.ResponseWriter, r *http.Request) error {
	ids := h.Models
	if len(ids) == 0 {
		ids = []string{h.Model}
		if h.Model == "" {
			ids = []string{"mock"}
		}
	}
	created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if r.Header.Get("anthropic-version") == "" {
		data := make([]obj, len(ids))
		for i, id := range ids {
			data[i] = obj{"id": id, "object": "model", "created": created.Unix(), "owned_by": "llm_mock"}
		}
		return writeJSONBody(w, marshal(obj{"object": "list", "data": data}))
	}
	q := r.URL.Query()
	limit := 20
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 {
		limit = n
	}
	if after := q.Get("after_id"); after != "" {
		if i := slices.Index(ids, after); i >= 0 {
			ids = ids[i+1:]
		}
	}
	more := len(ids) > limit
	if more {
		ids = ids[:limit]
	}
	data := make([]obj, len(ids))
	for i, id := range ids {
		data[i] = obj{"type": "model", "id": id, "display_name": id, "created_at": created.Format(time.RFC3339)}
	}
	page := obj{"data": data, "has_more": more, "first_id": nil, "last_id": nil}
	if len(ids) > 0 {
		page["first_id"], page["last_id"] = ids[0], ids[len(ids)-1]
	}
	return writeJSONBody(w, marshal(page))
}

func writeJSONBody(w http.ResponseWriter, body []byte) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, err := w.Write(body)
	return err
}
