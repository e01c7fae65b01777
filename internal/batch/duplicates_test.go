package batch

import (
	"fmt"
	"os"
	"slices"
	"testing"
)

// TestDuplicatesAreExactBeyondTheMemoryBound: with a bound a few dozen ids
// wide, 5,000 ids spill to hundreds of runs (more than one merge pass), and
// the duplicates found are exactly those a map finds: every repeat, with
// its first line, and nothing else, even for ids that are prefixes of one
// another or differ in one byte.
func TestDuplicatesAreExactBeyondTheMemoryBound(t *testing.T) {
	dir := t.TempDir()
	d := &Duplicates{Memory: 512, Dir: dir}
	ids := make([]string, 0, 5000)
	for i := range 5000 {
		id := fmt.Sprintf("req-%d", i)
		switch {
		case i%997 == 5:
			id = "same" // repeats far apart, in different runs
		case i%1000 == 999:
			id = fmt.Sprintf("req-%d", i-900) // an earlier line's id
		case i == 42:
			id = "req-4" // a prefix of req-4x ids, and an earlier id
		case i == 43:
			id = "" // an empty id is an id
		case i == 4000:
			id = ""
		}
		ids = append(ids, id)
	}
	var want [][2]int
	first := map[string]int{}
	for i, id := range ids {
		line := i + 1
		if f, ok := first[id]; ok {
			want = append(want, [2]int{line, f})
		} else {
			first[id] = line
		}
		if err := d.Add(id, line); err != nil {
			t.Fatal(err)
		}
	}
	if len(d.runs) <= maxFanIn {
		t.Fatalf("the test must spill more than %d runs, got %d", maxFanIn, len(d.runs))
	}
	var got [][2]int
	if err := d.Each(func(line, f int) error { got = append(got, [2]int{line, f}); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b [2]int) int { return a[0] - b[0] })
	if !slices.Equal(got, want) {
		t.Errorf("duplicates (line, first line):\ngot  %v\nwant %v", got, want)
	}
	if len(want) < 10 {
		t.Fatalf("the test plants too few duplicates: %v", want)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("Close left %d run files", len(left))
	}
}

// TestDuplicatesWithinTheBoundWriteNoFile: a small batch is sorted in
// memory.
func TestDuplicatesWithinTheBoundWriteNoFile(t *testing.T) {
	dir := t.TempDir()
	d := &Duplicates{Dir: dir}
	defer d.Close()
	for i, id := range []string{"a", "b", "a", "ab", "b", "a"} {
		if err := d.Add(id, i+1); err != nil {
			t.Fatal(err)
		}
	}
	var got [][2]int
	if err := d.Each(func(line, f int) error { got = append(got, [2]int{line, f}); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b [2]int) int { return a[0] - b[0] })
	if want := [][2]int{{3, 1}, {5, 2}, {6, 1}}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("a batch within the bound wrote %d files", len(left))
	}
}
