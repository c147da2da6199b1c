package llmroute

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-llm-route/llmroute/internal/jsonscan"
)

// maxFeedbackBody is the largest feedback body accepted.
const maxFeedbackBody = 16 << 10

// maxComment is the longest comment kept, in bytes.
const maxComment = 4 << 10

// feedback is what a client says of an answer.
type feedback struct {
	RequestID string   `json:"request_id"`
	Score     *float64 `json:"score"`
	Scale     int      `json:"scale,omitempty"`
	Comment   string   `json:"comment,omitempty"`
}

// serveFeedback takes feedback on an answer at feedback_path: a POST of
// {"request_id", "score", "comment"}, authenticated like other requests.
// A score in 0..1 is read as is and one above 1 up to 5 as stars (1..5);
// "scale": 5 reads a score of 1 as one star. It is logged on the
// decision log's logger, where it joins the answer's record by
// request_id, with the score normalised to 0..1.
func (h *Handler) serveFeedback(w http.ResponseWriter, r *http.Request) error {
	defer redactCredentials(r.Header)
	setRequestID(w, r)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, "", http.StatusMethodNotAllowed, "method_not_allowed", "feedback is sent with POST")
		return nil
	}
	key, rerr := h.authenticate(r)
	if rerr != nil {
		writeError(w, "", rerr.status, rerr.code, rerr.msg)
		return nil
	}
	if r.ContentLength > maxFeedbackBody {
		writeError(w, "", http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("feedback is larger than %d bytes", maxFeedbackBody))
		return nil
	}
	body, lease, err := readBody(w, r, maxFeedbackBody, time.Duration(h.ReadBodyTimeout))
	defer lease.release()
	switch {
	case errors.Is(err, errReadBodyTimeout):
		writeError(w, "", http.StatusRequestTimeout, "request_timeout", "the feedback did not arrive within read_body_timeout")
		return nil
	case err != nil:
		writeError(w, "", http.StatusBadRequest, "body_read_error", "could not read the request body")
		return nil
	case len(body) > maxFeedbackBody:
		writeError(w, "", http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("feedback is larger than %d bytes", maxFeedbackBody))
		return nil
	}
	fb, norm, msg := parseFeedback(body)
	if msg != "" {
		writeError(w, "", http.StatusBadRequest, "invalid_feedback", msg)
		return nil
	}
	fields := []zap.Field{zap.String("request_id", fb.RequestID), zap.Float64("score", *fb.Score),
		zap.Float64("score_norm", norm)}
	if fb.Comment != "" {
		fields = append(fields, zap.String("comment", fb.Comment))
	}
	keyName := ""
	if key != nil {
		keyName = key.Name
		fields = append(fields, zap.String("key", keyName))
	}
	// A strategy that learns from feedback (adaptive) learns it now, if
	// it comes from the client key that made the request; another key's
	// is answered as one on an unknown request, so ids cannot be probed.
	fields = append(fields, zap.Bool("learned", h.awaiting.teach(fb.RequestID, keyName, norm)))
	h.decisions.Info("feedback", fields...)
	out, _ := json.Marshal(struct {
		RequestID string  `json:"request_id"`
		Score     float64 `json:"score"`
	}{fb.RequestID, norm})
	writeJSON(w, http.StatusAccepted, out)
	return nil
}

// parseFeedback validates a feedback body; it returns the feedback and
// its score on 0..1, or why it is not valid.
func parseFeedback(body []byte) (fb feedback, norm float64, msg string) {
	if msg := validJSONObject(body); msg != "" {
		return fb, 0, msg
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fb); err != nil {
		return fb, 0, "feedback must be a JSON object with request_id (string), score (number) and an optional comment (string): " + err.Error()
	}
	switch {
	case fb.RequestID == "" || len(fb.RequestID) > 128:
		return fb, 0, "request_id must be the X-LLM-Request-Id of an answer (1 to 128 characters)"
	case !printableASCII(fb.RequestID):
		return fb, 0, "request_id must be printable ASCII without spaces"
	case fb.Score == nil:
		return fb, 0, "score is required"
	case len(fb.Comment) > maxComment:
		return fb, 0, fmt.Sprintf("comment is longer than %d bytes", maxComment)
	}
	s := *fb.Score
	switch {
	case math.IsNaN(s) || s < 0 || s > 5:
		return fb, 0, "score must be within 0..1, or 1..5 (stars)"
	case fb.Scale == 5:
		if s < 1 {
			return fb, 0, "a score on scale 5 must be within 1..5"
		}
		norm = (s - 1) / 4
	case fb.Scale != 0 && fb.Scale != 1:
		return fb, 0, "scale must be 1 (score within 0..1) or 5 (score within 1..5)"
	case fb.Scale == 1 && s > 1:
		return fb, 0, "a score on scale 1 must be within 0..1"
	case s <= 1:
		norm = s
	default:
		norm = (s - 1) / 4
	}
	return fb, norm, ""
}

// validJSONObject says why body is not a JSON object without duplicate
// members, or "" when it is one.
func validJSONObject(body []byte) string {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return "feedback must be a JSON object"
	}
	seen := map[string]bool{}
	dup := ""
	jsonscan.EachMember(trimmed, 0, func(m jsonscan.Member) bool {
		name := m.Key()
		if seen[name] {
			dup = name
			return false
		}
		seen[name] = true
		return true
	})
	if dup != "" {
		return fmt.Sprintf("feedback names %q twice", truncate(dup, 64))
	}
	return ""
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
