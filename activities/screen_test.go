package activities

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func line(id, content string) string {
	return fmt.Sprintf(`{"custom_id":%q,"method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":%q}]}}`, id, content) + "\n"
}

var (
	rules = AuthorizeResult{AutoApproveMaxRequests: 3, MaxBatchRequests: 100, MaxRequestBytes: 1 << 20}
	words = []string{"Password"}
)

func TestScanAutoApprovesSmallCleanBatches(t *testing.T) {
	sc, err := scan(strings.NewReader(line("a", "hi")+"\n"+line("b", "there")), rules, words, "m", &cutter{}, func() {})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Requests != 2 || !sc.AutoApprove {
		t.Errorf("%+v", sc)
	}
}

func TestScanFlagsSensitiveWordsWhateverTheCase(t *testing.T) {
	sc, err := scan(strings.NewReader(line("a", "my PASSWORD is x")), rules, words, "m", &cutter{}, func() {})
	if err != nil {
		t.Fatal(err)
	}
	if sc.AutoApprove || !strings.Contains(strings.Join(sc.Reasons, ";"), "line 1") {
		t.Errorf("a flagged line must need approval and say where: %+v", sc)
	}
}

func TestScanRefuses(t *testing.T) {
	var overQuota strings.Builder
	for i := range rules.MaxBatchRequests + 1 {
		overQuota.WriteString(line(fmt.Sprint(i), "y"))
	}
	for name, c := range map[string]struct {
		input string
		want  *task.Error
	}{
		"duplicate custom_id": {line("a", "x") + line("b", "y") + line("a", "z"), task.ErrInvalidInput},
		"no requests":         {"\n\n", task.ErrInvalidInput},
		"over quota":          {overQuota.String(), task.ErrQuotaExceeded},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := scan(strings.NewReader(c.input), rules, words, "m", &cutter{}, func() {})
			if !errors.Is(err, c.want) {
				t.Fatalf("want %v, got %v", c.want.Type, err)
			}
		})
	}
}

// TestScanCountsMalformedLinesWithoutRefusing: the engine answers them in
// errors.jsonl, so screening only notes them.
func TestScanCountsMalformedLinesWithoutRefusing(t *testing.T) {
	sc, err := scan(strings.NewReader(line("a", "x")+"{not json\n"+"\xef\xbb\xbf"+line("b", "y")), rules, words, "m", &cutter{}, func() {})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Requests != 3 || !strings.Contains(strings.Join(sc.Reasons, ";"), "2 malformed") {
		t.Errorf("%+v", sc)
	}
}

// TestPiecesStartAtLineBoundaries: each piece's offset is where its first
// line starts in the file.
func TestPiecesStartAtLineBoundaries(t *testing.T) {
	var b strings.Builder
	for i := range 10 {
		b.WriteString(line(fmt.Sprint(i), strings.Repeat("x", i)))
		if i == 4 {
			b.WriteString("\n") // a blank line is not a request
		}
	}
	input := b.String()
	cut := &cutter{size: 4}
	big := rules
	big.AutoApproveMaxRequests = 0
	if _, err := scan(strings.NewReader(input), big, words, "m", cut, func() {}); err != nil {
		t.Fatal(err)
	}
	pieces := cut.result()
	if len(pieces) != 3 {
		t.Fatalf("10 requests in pieces of 4: want 3 pieces, got %+v", pieces)
	}
	total := 0
	for i, s := range pieces {
		total += s.Requests
		if !strings.HasPrefix(input[s.Offset:], `{"custom_id"`) {
			t.Errorf("piece %d does not start at a line: %q", i, input[s.Offset:s.Offset+20])
		}
		if i > 0 && pieces[i-1].LastLine != s.FirstLine-1 {
			t.Errorf("pieces %d and %d leave a gap or overlap: %+v", i-1, i, pieces)
		}
	}
	if total != 10 || pieces[2].LastLine != 0 {
		t.Errorf("pieces: %+v", pieces)
	}
	if (&cutter{size: 100}).result() != nil {
		t.Error("a batch within one piece must run whole")
	}
}

func TestPickPrefersLiveLeastBusyNodesThatServeTheModel(t *testing.T) {
	now := time.Now()
	nodes := []Node{
		{Name: "a", Models: []string{"m"}, Running: 3, LastSeen: now},
		{Name: "b", Models: []string{"m"}, Running: 1, LastSeen: now},
		{Name: "c", Models: []string{"other"}, Running: 0, LastSeen: now},
		{Name: "d", Models: []string{"m"}, Running: 0, LastSeen: now.Add(-time.Hour)},
	}
	if n, err := pick(nodes, "m", nil, now); err != nil || n.Name != "b" {
		t.Errorf("want b, got %v %v", n.Name, err)
	}
	if n, err := pick(nodes, "m", []string{"b"}, now); err != nil || n.Name != "a" {
		t.Errorf("avoiding b: want a, got %v %v", n.Name, err)
	}
	if n, err := pick(nodes, "m", []string{"a", "b"}, now); err != nil || n.Name != "b" {
		t.Errorf("avoiding all: still the least busy, got %v %v", n.Name, err)
	}
	if _, err := pick(nodes, "nobody-serves", nil, now); err == nil {
		t.Error("no node for a model must be an error")
	}
}

// TestScanNamesEveryDuplicateWithItsFirstLine: past the duplicate
// finder's memory bound (here a few hundred bytes, so the ids spill to
// disk), every repeated custom_id is named with the line that had it
// first, in line order, and distinct ids are never taken for repeats.
func TestScanNamesEveryDuplicateWithItsFirstLine(t *testing.T) {
	var b strings.Builder
	for i := range 2000 {
		id := fmt.Sprint("id-", i)
		switch i {
		case 1500:
			id = "id-3"
		case 1999:
			id = "id-1000"
		case 1998:
			id = "id-3"
		}
		b.WriteString(line(id, "x"))
	}
	big := rules
	big.MaxBatchRequests = 0
	_, err := scanWith(strings.NewReader(b.String()), big, nil, "m", &cutter{}, func() {}, &batch.Duplicates{Memory: 256, Dir: t.TempDir()})
	if !errors.Is(err, task.ErrInvalidInput) {
		t.Fatalf("want InvalidInput, got %v", err)
	}
	want := "the batch file has 3 invalid line(s):\n" +
		"  line 1501: its custom_id is also the custom_id of line 4; custom_ids must be unique\n" +
		"  line 1999: its custom_id is also the custom_id of line 4; custom_ids must be unique\n" +
		"  line 2000: its custom_id is also the custom_id of line 1001; custom_ids must be unique"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}
