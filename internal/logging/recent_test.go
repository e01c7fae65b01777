package logging

import (
	"io"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestRecentKeepsTheLastLinesInOrder(t *testing.T) {
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})
	r := NewRecent(3)
	l.AddHook(r)
	for _, m := range []string{"one", "two", "three", "four", "five"} {
		l.Info(m)
	}
	got := string(r.Bytes())
	if strings.Contains(got, "two") || !strings.Contains(got, "three") || strings.Index(got, "three") > strings.Index(got, "five") {
		t.Fatalf("kept %q; want three, four, five in order", got)
	}
}
