package batch

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func utf16LE(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return b
}

func TestCheckEncodingNamesTheRealProblem(t *testing.T) {
	line := `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}` + "\n"
	for name, c := range map[string]struct {
		head []byte
		want string // "" for no error
	}{
		"plain UTF-8":      {[]byte(line), ""},
		"UTF-8 with BOM":   {append([]byte{0xef, 0xbb, 0xbf}, line...), "UTF-8 byte-order mark"},
		"UTF-16LE, BOM":    {append([]byte{0xff, 0xfe}, utf16LE(line)...), "UTF-16"},
		"UTF-16BE, BOM":    {[]byte{0xfe, 0xff, 0, '{'}, "UTF-16"},
		"UTF-16LE, no BOM": {utf16LE(line), "UTF-16 without a byte-order mark"},
		"short":            {[]byte("{}"), ""},
	} {
		t.Run(name, func(t *testing.T) {
			err := CheckEncoding(c.head)
			if c.want == "" {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			if !errors.Is(err, task.ErrInvalidInput) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want InvalidInput naming %q, got %v", c.want, err)
			}
		})
	}
}

func TestProblemsReportsEveryLineInBoundedMemory(t *testing.T) {
	var p Problems
	p.Add(2, false, "not JSON")
	if p.Err() != nil {
		t.Fatal("malformed lines alone are answered in errors.jsonl, not fatal")
	}
	p.Add(5, true, "duplicate of line %d", 1)
	for i := range 1000 {
		p.Add(10+i, false, "not JSON")
	}
	err := p.Err()
	if !errors.Is(err, task.ErrInvalidInput) {
		t.Fatalf("a duplicate must fail the batch as InvalidInput: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"1002 invalid line(s)", "line 2: not JSON", "line 5: duplicate of line 1", "and 902 more"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the report lacks %q:\n%s", want, msg)
		}
	}
	if len(p.lines) != MaxReportedProblems {
		t.Errorf("kept %d lines, want at most %d", len(p.lines), MaxReportedProblems)
	}
}

func TestPromptLineIsAValidRequest(t *testing.T) {
	b, err := PromptLine("m", "say \"hi\"\n")
	if err != nil {
		t.Fatal(err)
	}
	r, lerr := ParseRequest([]byte(strings.TrimSuffix(string(b), "\n")), "m")
	if lerr != nil {
		t.Fatalf("%s: %v", b, lerr)
	}
	var body struct {
		Messages []struct{ Content string } `json:"messages"`
	}
	if json.Unmarshal(r.Body, &body) != nil || body.Messages[0].Content != "say \"hi\"\n" {
		t.Errorf("the prompt did not survive: %s", b)
	}
}

func TestCheckEncodingLeavesBinariesToTheContentCheck(t *testing.T) {
	elf := []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0x3e, 0, 1, 0, 0, 0}
	if err := CheckEncoding(elf); err != nil {
		t.Errorf("an ELF header is not UTF-16: %v", err)
	}
}
