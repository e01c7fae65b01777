package trainer

import (
	"strings"
	"testing"
)

// FuzzParseExample: any line of a training file, whatever its bytes, is
// either an example a trainer can learn from or refused with a reason; it
// never panics, and an accepted example holds what trainers rely on.
func FuzzParseExample(f *testing.F) {
	f.Add([]byte(`{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}`))
	f.Add([]byte(`{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"2+2?"},{"role":"assistant","content":"4","weight":0}]}`))
	f.Add([]byte(`{"messages":[{"role":"assistant","content":"x","weight":0.5}]}`))
	f.Add([]byte(`{"messages":[{"role":"tool","content":"x"}]}`))
	f.Add([]byte(`{"messages":[{"role":"user","content":{"a":1}}]}`))
	f.Add([]byte("\xef\xbb\xbf{}"))
	f.Add([]byte("\xff\xfe{"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ex, problem := ParseExample(raw)
		if problem != "" {
			// A reason names fields, never content: no line's text in it.
			if len(raw) > 40 && strings.Contains(problem, string(raw)) {
				t.Fatalf("the reason %q repeats the line", problem)
			}
			return
		}
		assistant := false
		for _, m := range ex.Messages {
			switch m.Role {
			case "system", "user":
				if m.Weight != nil {
					t.Fatalf("accepted a weight on a %s message: %q", m.Role, raw)
				}
			case "assistant":
				assistant = true
				if m.Weight != nil && *m.Weight != 0 && *m.Weight != 1 {
					t.Fatalf("accepted weight %g: %q", *m.Weight, raw)
				}
			default:
				t.Fatalf("accepted role %q: %q", m.Role, raw)
			}
		}
		if !assistant {
			t.Fatalf("accepted an example with no assistant message: %q", raw)
		}
	})
}
