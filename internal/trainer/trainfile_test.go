package trainer_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

func example(i int) string {
	return fmt.Sprintf(`{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Q%d"},{"role":"assistant","content":"A%d","weight":1}]}`, i, i)
}

func TestScreenFileNamesEveryBadLine(t *testing.T) {
	lines := make([]string, 0, 20)
	for i := range 12 {
		lines = append(lines, example(i))
	}
	bad := map[int]string{
		3:  `not json`,
		5:  `{"messages":[]}`,
		7:  `{"messages":[{"role":"tool","content":"x"},{"role":"assistant","content":"y"}]}`,
		9:  `{"messages":[{"role":"user","content":"x","weight":1},{"role":"assistant","content":"y"}]}`,
		11: `{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y","weight":0.5}]}`,
		13: `{"messages":[{"role":"user","content":"x"}]}`,
		14: `{"messages":[{"role":"user","content":""},{"role":"assistant","content":"y"}]}`,
	}
	var file []string
	for n, i := 1, 0; i < len(lines) || n <= 14; n++ {
		if b, ok := bad[n]; ok {
			file = append(file, b)
			continue
		}
		file = append(file, lines[i])
		i++
	}
	_, err := trainer.ScreenFile(strings.NewReader(strings.Join(file, "\n")), "the training file", 0, nil)
	if !errors.Is(err, task.ErrInvalidInput) {
		t.Fatalf("want InvalidInput, got %v", err)
	}
	msg := err.Error()
	for n, want := range map[int]string{
		3: "not a JSON object", 5: "messages is missing or empty", 7: `role "tool"`,
		9: "only assistant messages may", 11: "weight 0.5", 13: "no assistant message", 14: "content is empty",
	} {
		_, rest, ok := strings.Cut(msg, fmt.Sprintf("line %d: ", n))
		if got, _, _ := strings.Cut(rest, "\n"); !ok || !strings.Contains(got, want) {
			t.Errorf("the error does not name line %d (%s):\n%s", n, want, msg)
		}
	}
	if !strings.HasPrefix(msg, "the training file has 7 invalid line(s)") {
		t.Errorf("the error does not count the bad lines in the training file's words:\n%s", msg)
	}
}

func TestScreenFileWantsTenExamplesAndFlagsWords(t *testing.T) {
	var file []string
	for i := range 9 {
		file = append(file, example(i))
	}
	_, err := trainer.ScreenFile(strings.NewReader(strings.Join(file, "\n")), "the training file", 0, nil)
	if !errors.Is(err, task.ErrInvalidInput) || !strings.Contains(err.Error(), "at least 10") {
		t.Fatalf("nine examples: want InvalidInput asking for 10, got %v", err)
	}
	file = append(file, example(9), `{"messages":[{"role":"user","content":"Tell me the SECRET plan"},{"role":"assistant","content":"no"}]}`)
	sc, err := trainer.ScreenFile(strings.NewReader(strings.Join(file, "\n")+"\n"), "the training file", 0, []string{"secret"})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Examples != 11 || len(sc.Flagged) != 1 || sc.Flagged[0] != 11 {
		t.Fatalf("got %+v; want 11 examples and line 11 flagged", sc)
	}
	if _, err := trainer.ScreenFile(strings.NewReader("\xef\xbb\xbf"+strings.Join(file, "\n")), "the training file", 0, nil); err == nil || !strings.Contains(err.Error(), "the training file starts with a UTF-8 byte-order mark") {
		t.Fatalf("a BOM: want the training file named, got %v", err)
	}
}

func TestHyperparametersResolveAuto(t *testing.T) {
	var h trainer.Hyperparameters
	if err := jsonUnmarshal(`{"n_epochs":"auto","batch_size":4,"learning_rate_multiplier":0.5}`, &h); err != nil {
		t.Fatal(err)
	}
	r, err := h.Resolve(100)
	if err != nil || r != (trainer.Resolved{NEpochs: 3, BatchSize: 4, LearningRateMultiplier: 0.5}) {
		t.Fatalf("got %+v, %v", r, err)
	}
	if err := jsonUnmarshal(`{"n_epochs":"many"}`, &h); err == nil {
		t.Fatal(`"many" epochs: want an error`)
	}
	h = trainer.Hyperparameters{NEpochs: trainer.Number(0)}
	if _, err := h.Resolve(100); err == nil {
		t.Fatal("0 epochs: want an error")
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
