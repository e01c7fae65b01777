package batch

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// PromptLine is the OpenAI Batch line that asks model one prompt: how an
// inline prompt is stored, so that every task is a batch and no prompt
// travels through Temporal.
func PromptLine(model, prompt string) ([]byte, error) {
	body, err := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": prompt}}})
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(Request{CustomID: "prompt-1", Method: "POST", URL: ChatCompletionsURL, Body: body})
	return append(b, '\n'), err
}

// CheckEncoding names the real problem of a batch file that is not plain
// UTF-8, from its first bytes: without it, a UTF-16 file or one with a
// byte-order mark is only "malformed" or "has no body.model" on every
// line. It is an InvalidInput error.
func CheckEncoding(head []byte) error {
	fix := "; save it as UTF-8 without a byte-order mark (one JSON object per line)"
	switch {
	case bytes.HasPrefix(head, []byte{0xef, 0xbb, 0xbf}):
		return task.Errorf(task.InvalidInput, "the batch file starts with a UTF-8 byte-order mark (EF BB BF)%s", fix)
	case bytes.HasPrefix(head, []byte{0xff, 0xfe}), bytes.HasPrefix(head, []byte{0xfe, 0xff}):
		return task.Errorf(task.InvalidInput, "the batch file is UTF-16 (it starts with a UTF-16 byte-order mark)%s", fix)
	case looksUTF16(head):
		return task.Errorf(task.InvalidInput, "the batch file looks like UTF-16 without a byte-order mark (every other byte is zero)%s", fix)
	}
	return nil
}

// looksUTF16 spots UTF-16 text without a BOM: ASCII in UTF-16 has a zero
// in every other byte and none in the others, which neither JSONL nor a
// binary format's header has.
func looksUTF16(head []byte) bool {
	n := min(len(head), 64) &^ 1
	if n < 4 {
		return false
	}
	var zeros [2]int
	for i := range n {
		if head[i] == 0 {
			zeros[i%2]++
		}
	}
	half := n / 2
	return zeros[0] == 0 && zeros[1]*10 >= half*9 || zeros[1] == 0 && zeros[0]*10 >= half*9
}

// MaxReportedProblems bounds how many invalid lines a Problems keeps in
// full (those with the lowest line numbers); the rest are counted. A batch
// of millions of bad lines then costs the same memory as one of a hundred.
const MaxReportedProblems = 100

// Problems collects the invalid lines of a batch file as validation finds
// them, so that a refused batch names every bad line at once (as OpenAI's
// validation does), not only the first. Messages name lines and what is
// wrong, never their content: they end up in workflow history. Lines may
// be added out of order (duplicates are found after the whole file is
// read); the report lists them in order.
type Problems struct {
	// File names the file in the report ("the training file"); "the
	// batch file" when empty.
	File string

	lines []problem
	count int
	fatal int
}

type problem struct {
	n   int
	msg string
}

// Add records that line n is invalid. A fatal problem (a duplicate
// custom_id) fails the batch; the others are answered line by line in
// errors.jsonl if the batch runs.
func (p *Problems) Add(n int, fatal bool, format string, args ...any) {
	p.count++
	if fatal {
		p.fatal++
	}
	if len(p.lines) < MaxReportedProblems {
		p.lines = append(p.lines, problem{n, fmt.Sprintf(format, args...)})
		return
	}
	// Full: keep the lowest line numbers, replacing the highest kept.
	hi := 0
	for i, q := range p.lines {
		if q.n > p.lines[hi].n {
			hi = i
		}
	}
	if n < p.lines[hi].n {
		p.lines[hi] = problem{n, fmt.Sprintf(format, args...)}
	}
}

// Count is how many invalid lines were found.
func (p *Problems) Count() int { return p.count }

// Err is nil unless a fatal problem was found; then it is an InvalidInput
// error listing every invalid line (up to MaxReportedProblems).
func (p *Problems) Err() error {
	if p.fatal == 0 {
		return nil
	}
	sorted := slices.SortedStableFunc(slices.Values(p.lines), func(a, b problem) int { return cmp.Compare(a.n, b.n) })
	lines := make([]string, len(sorted))
	for i, q := range sorted {
		lines[i] = fmt.Sprintf("line %d: %s", q.n, q.msg)
	}
	file := p.File
	if file == "" {
		file = "the batch file"
	}
	msg := fmt.Sprintf("%s has %d invalid line(s):\n  %s", file, p.count, strings.Join(lines, "\n  "))
	if more := p.count - len(p.lines); more > 0 {
		msg += fmt.Sprintf("\n  … and %d more", more)
	}
	return task.Errorf(task.InvalidInput, "%s", msg)
}
