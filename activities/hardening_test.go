package activities

import (
	"errors"
	"strings"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// A duplicate custom_id fails the batch, and the refusal names every
// invalid line, not only the duplicate.
func TestScanReportsEveryInvalidLineAtOnce(t *testing.T) {
	input := line("a", "x") + "not json\n" + line("b", "y") + line("a", "secret-canary") + `{"custom_id":"c"}` + "\n" + line("b", "z")
	_, err := scan(strings.NewReader(input), rules, words, "m", &cutter{}, func() {})
	if !errors.Is(err, task.ErrInvalidInput) {
		t.Fatalf("want InvalidInput, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"4 invalid line(s)", "line 2:", "line 4:", "line 5:", "line 6:", "line 1", "line 3"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal lacks %q:\n%s", want, msg)
		}
	}
	// The message goes into workflow history: no line's content in it.
	if strings.Contains(msg, "secret-canary") || strings.Contains(msg, `"a"`) {
		t.Errorf("the refusal quotes user content:\n%s", msg)
	}
}

// Malformed lines alone do not fail the batch: each is answered in
// errors.jsonl with its line number.
func TestScanRunsABatchWithOnlyMalformedLines(t *testing.T) {
	sc, err := scan(strings.NewReader(line("a", "x")+"not json\n"), rules, words, "m", &cutter{}, func() {})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Requests != 2 || !strings.Contains(strings.Join(sc.Reasons, ";"), "1 malformed line(s)") {
		t.Errorf("%+v", sc)
	}
}
