package batch

import (
	"bufio"
	"bytes"
	"cmp"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// DefaultDuplicatesMemory is how many bytes of custom_ids a Duplicates
// holds before it spills them, sorted, to a temporary file: about 50,000
// ids of 8 characters.
const DefaultDuplicatesMemory = 1 << 20

// maxFanIn bounds the runs merged at once, and so the read buffers open
// at once; more runs are first merged into fewer.
const maxFanIn = 32

// Duplicates finds the custom_ids that occur more than once in a batch,
// exactly (ids are compared, not hashes), in memory bounded by Memory
// whatever the batch's size: an external sort. Ids are kept in an arena
// until it is full, then sorted and written to a temporary file (a run);
// Each merges the runs. Add ids in line order, then call Each once, then
// Close.
type Duplicates struct {
	// Memory bounds the ids and index held in memory, in bytes (default
	// DefaultDuplicatesMemory).
	Memory int
	// Dir is where runs go (default os.TempDir()).
	Dir string
	// Alive, if set, is called every 65,536 ids merged, so that a long
	// merge can heartbeat.
	Alive func()

	arena   []byte
	entries []entry
	runs    []*os.File
}

// entry is one id in the arena and the line it came from.
type entry struct {
	off, len uint32
	line     int32
}

const entryBytes = 12

func (d *Duplicates) limit() int { return cmp.Or(d.Memory, DefaultDuplicatesMemory) }

// Add records that line holds id. Lines must come in increasing order.
func (d *Duplicates) Add(id string, line int) error {
	if len(d.arena)+len(id)+(len(d.entries)+1)*entryBytes > d.limit() && len(d.entries) > 0 {
		if err := d.spill(); err != nil {
			return err
		}
	}
	d.entries = append(d.entries, entry{uint32(len(d.arena)), uint32(len(id)), int32(line)})
	d.arena = append(d.arena, id...)
	return nil
}

// sortEntries orders the arena's entries by id, and by line among equal
// ids (the stable sort keeps the order they came in).
func (d *Duplicates) sortEntries() {
	slices.SortStableFunc(d.entries, func(a, b entry) int { return bytes.Compare(d.id(a), d.id(b)) })
}

func (d *Duplicates) id(e entry) []byte { return d.arena[e.off : e.off+e.len] }

// spill writes the arena's entries, sorted, as a run, and empties it.
func (d *Duplicates) spill() error {
	d.sortEntries()
	f, err := os.CreateTemp(d.Dir, "autoglm-ids-*.run")
	if err != nil {
		return fmt.Errorf("batch: spilling custom_ids: %w", err)
	}
	d.runs = append(d.runs, f)
	w := bufio.NewWriterSize(f, 64<<10)
	for _, e := range d.entries {
		writeRecord(w, d.id(e), int(e.line))
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("batch: spilling custom_ids: %w", err)
	}
	d.arena, d.entries = d.arena[:0], d.entries[:0]
	return nil
}

func writeRecord(w *bufio.Writer, id []byte, line int) {
	var b [2 * binary.MaxVarintLen64]byte
	n := binary.PutUvarint(b[:], uint64(len(id)))
	n += binary.PutUvarint(b[n:], uint64(line))
	w.Write(b[:n])
	w.Write(id)
}

// Each calls dup for every line whose custom_id an earlier line already
// has, with that first line, in the order of the ids. An error from dup
// stops it.
func (d *Duplicates) Each(dup func(line, first int) error) error {
	if len(d.runs) == 0 {
		// Everything fits in memory: no file at all.
		d.sortEntries()
		first := 0
		for i, e := range d.entries {
			if i > 0 && bytes.Equal(d.id(d.entries[i-1]), d.id(e)) {
				if err := dup(int(e.line), first); err != nil {
					return err
				}
				continue
			}
			first = int(e.line)
		}
		return nil
	}
	if len(d.entries) > 0 {
		if err := d.spill(); err != nil {
			return err
		}
	}
	for len(d.runs) > maxFanIn {
		// Merge the oldest runs into one; line order between runs holds,
		// as they are merged in the order they were written.
		merged, err := d.mergeRuns(d.runs[:maxFanIn])
		if err != nil {
			return err
		}
		d.runs = append([]*os.File{merged}, d.runs[maxFanIn:]...)
	}
	return d.scanRuns(d.runs, dup)
}

// mergeRuns merges runs into a new run and closes them.
func (d *Duplicates) mergeRuns(runs []*os.File) (*os.File, error) {
	f, err := os.CreateTemp(d.Dir, "autoglm-ids-*.run")
	if err != nil {
		return nil, fmt.Errorf("batch: merging custom_ids: %w", err)
	}
	w := bufio.NewWriterSize(f, 64<<10)
	err = d.merge(runs, func(id []byte, line int) error {
		writeRecord(w, id, line)
		return nil
	})
	if err == nil {
		err = w.Flush()
	}
	for _, r := range runs {
		closeRun(r)
	}
	if err != nil {
		closeRun(f)
		return nil, fmt.Errorf("batch: merging custom_ids: %w", err)
	}
	return f, nil
}

// scanRuns merges runs and reports the duplicates in the merged stream.
func (d *Duplicates) scanRuns(runs []*os.File, dup func(line, first int) error) error {
	var cur []byte
	first := 0
	return d.merge(runs, func(id []byte, line int) error {
		if first > 0 && bytes.Equal(id, cur) {
			return dup(line, first)
		}
		cur, first = append(cur[:0], id...), line
		return nil
	})
}

// Close removes the runs.
func (d *Duplicates) Close() error {
	var errs []error
	for _, r := range d.runs {
		errs = append(errs, closeRun(r))
	}
	d.runs, d.arena, d.entries = nil, nil, nil
	return errors.Join(errs...)
}

func closeRun(f *os.File) error {
	return errors.Join(f.Close(), os.Remove(f.Name()))
}

// runReader reads one run's records in order.
type runReader struct {
	r    *bufio.Reader
	id   []byte
	line int
	// order is the run's place among those merged: it breaks ties between
	// equal ids, so lines stay in increasing order.
	order int
}

func (rr *runReader) next() (bool, error) {
	n, err := binary.ReadUvarint(rr.r)
	if err == io.EOF {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	line, err := binary.ReadUvarint(rr.r)
	if err != nil {
		return false, unexpected(err)
	}
	if cap(rr.id) < int(n) {
		rr.id = make([]byte, n)
	}
	rr.id = rr.id[:n]
	if _, err := io.ReadFull(rr.r, rr.id); err != nil {
		return false, unexpected(err)
	}
	rr.line = int(line)
	return true, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// runHeap orders run readers by their current id, then by run.
type runHeap []*runReader

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	if c := bytes.Compare(h[i].id, h[j].id); c != 0 {
		return c < 0
	}
	return h[i].order < h[j].order
}
func (h runHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)   { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// merge calls emit with every record of runs, ordered by id and, among
// equal ids, by run: a k-way merge with one small read buffer per run.
func (d *Duplicates) merge(runs []*os.File, emit func(id []byte, line int) error) error {
	h := make(runHeap, 0, len(runs))
	for i, f := range runs {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		rr := &runReader{r: bufio.NewReaderSize(f, 16<<10), order: i}
		ok, err := rr.next()
		if err != nil {
			return fmt.Errorf("reading %s: %w", f.Name(), err)
		}
		if ok {
			h = append(h, rr)
		}
	}
	heap.Init(&h)
	for n := 1; h.Len() > 0; n++ {
		if n%(1<<16) == 0 && d.Alive != nil {
			d.Alive()
		}
		rr := h[0]
		if err := emit(rr.id, rr.line); err != nil {
			return err
		}
		ok, err := rr.next()
		if err != nil {
			return fmt.Errorf("reading a run of custom_ids: %w", err)
		}
		if ok {
			heap.Fix(&h, 0)
		} else {
			heap.Pop(&h)
		}
	}
	return nil
}
