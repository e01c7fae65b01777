package trainer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// MinExamples is the fewest examples a training file may hold (OpenAI's
// floor).
const MinExamples = 10

// Message is one message of a chat fine-tuning example.
type Message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	// Weight, on an assistant message, is 0 (do not learn from it) or 1.
	Weight *float64 `json:"weight,omitempty"`
}

// Example is one line of a training file in OpenAI's chat fine-tuning
// format.
type Example struct {
	Messages []Message `json:"messages"`
}

// ParseExample checks one line of a training file and says what is wrong
// with it, naming fields, never content.
func ParseExample(raw []byte) (Example, string) {
	var ex Example
	if bytes.HasPrefix(raw, []byte("\xef\xbb\xbf")) {
		return ex, "the line starts with a byte-order mark; save the file as UTF-8 without BOM"
	}
	if !utf8.Valid(raw) {
		return ex, "the line is not valid UTF-8"
	}
	if err := json.Unmarshal(raw, &ex); err != nil {
		return ex, "the line is not a JSON object with a messages array"
	}
	if len(ex.Messages) == 0 {
		return ex, "messages is missing or empty"
	}
	assistant := false
	for i, m := range ex.Messages {
		n := i + 1
		switch m.Role {
		case "system", "user":
			if m.Weight != nil {
				return ex, fmt.Sprintf("message %d (%s) has a weight; only assistant messages may", n, m.Role)
			}
		case "assistant":
			assistant = true
			if m.Weight != nil && *m.Weight != 0 && *m.Weight != 1 {
				return ex, fmt.Sprintf("message %d has weight %g; a weight is 0 or 1", n, *m.Weight)
			}
		case "":
			return ex, fmt.Sprintf("message %d has no role", n)
		default:
			return ex, fmt.Sprintf("message %d has role %q; roles are system, user and assistant", n, m.Role)
		}
		var s string
		if json.Unmarshal(m.Content, &s) != nil {
			return ex, fmt.Sprintf("message %d's content is missing or not a string", n)
		}
		if strings.TrimSpace(s) == "" {
			return ex, fmt.Sprintf("message %d's content is empty", n)
		}
	}
	if !assistant {
		return ex, "no assistant message: an example must show the answer to learn"
	}
	return ex, ""
}

// FileScreening is what screening a training file found.
type FileScreening struct {
	Examples int   `json:"examples"`
	Bytes    int64 `json:"bytes"`
	// Flagged are the first lines (up to batch.MaxReportedProblems) that
	// mention a word on the screening list: the line, never the word;
	// FlaggedLines counts them all.
	Flagged      []int `json:"flagged,omitempty"`
	FlaggedLines int   `json:"flagged_lines,omitempty"`
}

// ScreenFile reads a training (or validation) file once, in memory
// bounded whatever its size, and refuses it with an InvalidInput error
// naming every bad line (up to batch.MaxReportedProblems), or holding
// fewer than MinExamples examples. what names the file in messages ("the
// training file"). words is the screening list; a line that mentions one
// is flagged, not refused.
func ScreenFile(r io.Reader, what string, maxLine int, words []string) (FileScreening, error) {
	var sc FileScreening
	if maxLine <= 0 {
		maxLine = 1 << 20
	}
	head := make([]byte, 64)
	n, _ := io.ReadFull(r, head)
	if err := batch.CheckEncoding(head[:n]); err != nil {
		return sc, task.Errorf(task.InvalidInput, "%s", strings.Replace(err.Error(), "the batch file", what, 1))
	}
	lr := batch.NewLineReader(io.MultiReader(bytes.NewReader(head[:n]), r), maxLine)
	problems := batch.Problems{File: what}
	for {
		raw, line, tooLong, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return sc, fmt.Errorf("reading %s: %w", what, err)
		}
		sc.Bytes += int64(len(raw)) + 1
		if !tooLong && len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		if tooLong {
			problems.Add(line, true, "longer than %d bytes", maxLine)
			continue
		}
		if _, why := ParseExample(raw); why != "" {
			problems.Add(line, true, "%s", why)
			continue
		}
		sc.Examples++
		for _, w := range words {
			if bytes.Contains(bytes.ToLower(raw), []byte(strings.ToLower(w))) {
				if sc.FlaggedLines++; len(sc.Flagged) < batch.MaxReportedProblems {
					sc.Flagged = append(sc.Flagged, line)
				}
				break
			}
		}
	}
	if err := problems.Err(); err != nil {
		return sc, err
	}
	if sc.Examples < MinExamples {
		return sc, task.Errorf(task.InvalidInput, "%s has %d example(s); fine-tuning needs at least %d", what, sc.Examples, MinExamples)
	}
	return sc, nil
}
