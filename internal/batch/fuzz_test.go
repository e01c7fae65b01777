package batch

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParseRequest: any line, whatever its bytes, is either a request the
// engine can send or a LineError with a known code; it never panics, and
// an accepted line holds what the engine relies on.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4","messages":[{"role":"user","content":"hi"}]}}`), "glm-4")
	f.Add([]byte(`{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4","messages":[]}}`), "")
	f.Add([]byte("\xef\xbb\xbf{}"), "glm-4")
	f.Add([]byte(`{"custom_id":"","method":"GET"}`), "glm-4")
	f.Add([]byte(`{"custom_id":"r","method":"POST","url":"/v1/chat/completions","body":"x"}`), "")
	f.Add([]byte("\xff\xfe{"), "")
	f.Fuzz(func(t *testing.T, raw []byte, model string) {
		r, lerr := ParseRequest(raw, model)
		if lerr != nil {
			switch lerr.Code {
			case CodeMalformedLine, CodeInvalidRequest, CodeModelMismatch:
			default:
				t.Fatalf("unknown error code %q", lerr.Code)
			}
			if lerr.Message == "" {
				t.Fatal("a LineError without a message")
			}
			return
		}
		if r.CustomID == "" || r.Method != "POST" || r.URL != ChatCompletionsURL || len(r.Body) == 0 {
			t.Fatalf("accepted %q as %+v", raw, r)
		}
		var body struct {
			Model    string          `json:"model"`
			Messages json.RawMessage `json:"messages"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil || len(body.Messages) == 0 {
			t.Fatalf("accepted a body the engine cannot read: %s", r.Body)
		}
		if model != "" && body.Model != model {
			t.Fatalf("accepted model %q for a task of %q", body.Model, model)
		}
	})
}

// FuzzLineReader: lines come back in order, none longer than the limit,
// and together (with their newlines) they are the input.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc"), 2)
	f.Add([]byte(strings.Repeat("x", 100)+"\n"), 8)
	f.Add([]byte("\r\n\r\n"), 1)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max <= 0 || max > 1<<16 {
			return
		}
		lr := NewLineReader(bytes.NewReader(in), max)
		last := 0
		for i := 0; ; i++ {
			line, n, tooLong, err := lr.Next()
			if err != nil {
				break
			}
			if n <= last {
				t.Fatalf("line number %d after %d", n, last)
			}
			last = n
			if !tooLong && len(line) > max {
				t.Fatalf("a %d-byte line past the %d-byte limit", len(line), max)
			}
			if i > len(in)+1 {
				t.Fatal("more lines than bytes")
			}
		}
		if lr.Offset() != int64(len(in)) {
			t.Fatalf("offset %d after %d bytes", lr.Offset(), len(in))
		}
	})
}
