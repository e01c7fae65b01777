package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	tclient "github.com/autoglm-flow/autoglm-flow/internal/client"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// barWatch is a renderer drawing its bar into a buffer against a clock
// the test moves, redrawing on every update.
type barWatch struct {
	r        *renderer
	bar, out bytes.Buffer
	at       time.Time
}

func newBarWatch() *barWatch {
	w := &barWatch{at: time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)}
	w.r = &renderer{out: &w.out, bar: true, barOut: &w.bar, now: func() time.Time { return w.at }}
	return w
}

// frames are the bar's states as drawn, in order: the terminal shows
// each one over the last, separated by carriage returns.
func (w *barWatch) frames() []string {
	var fs []string
	for f := range strings.SplitSeq(w.bar.String(), "\r") {
		if f = strings.TrimSpace(f); f != "" {
			fs = append(fs, f)
		}
	}
	return fs
}

// requireDrawn fails unless every wanted frame was drawn, in this order.
func requireDrawn(t *testing.T, w *barWatch, want []string) {
	t.Helper()
	fs := w.frames()
	i := 0
	for _, f := range fs {
		if i < len(want) && f == want[i] {
			i++
		}
	}
	if i < len(want) {
		t.Fatalf("frame %q was not drawn (after the ones before it); drawn:\n%s", want[i], strings.Join(fs, "\n"))
	}
	if last := fs[len(fs)-1]; last != want[len(want)-1] {
		t.Fatalf("last frame drawn is %q, want %q", last, want[len(want)-1])
	}
}

// requireClosed fails unless the bar was closed once, after its full
// frame (ending in full): the line the terminal shows next goes below it.
func requireClosed(t *testing.T, w *barWatch, full string) {
	t.Helper()
	s := w.bar.String()
	if w.r.pb != nil || strings.Count(s, "\n") != 1 || !strings.HasSuffix(strings.TrimRight(s, " \n"), full) || !strings.HasSuffix(s, "\n") {
		t.Fatalf("the bar is not closed once after its full frame: %q", s)
	}
}

func TestWatchBarDrawsInferenceCountsRateAndETAToTheEnd(t *testing.T) {
	w := newBarWatch()
	// One update a second, two more items done each: 2.0/s from the
	// first one this watch saw.
	for _, c := range []task.Counts{{Completed: 0}, {Completed: 2}, {Completed: 3, Failed: 1}, {Completed: 5, Failed: 1}, {Completed: 7, Failed: 1}, {Completed: 9, Failed: 1}} {
		c.Total = 10
		w.r.seen(tclient.Change{Progress: &task.Progress{Counts: c}})
		w.at = w.at.Add(time.Second)
	}
	requireDrawn(t, w, []string{
		"inference, 0 failed, 0.0/s, ETA unknown   0% |                                        | (0/10)",
		"inference, 0 failed, 2.0/s, ETA 4s  20% |████████                                | (2/10)",
		"inference, 1 failed, 2.0/s, ETA 3s  40% |████████████████                        | (4/10)",
		"inference, 1 failed, 2.0/s, ETA 2s  60% |████████████████████████                | (6/10)",
		"inference, 1 failed, 2.0/s, ETA 1s  80% |████████████████████████████████        | (8/10)",
		"inference, 1 failed, 2.0/s, ETA 0s 100% |████████████████████████████████████████| (10/10)",
	})
	if w.r.pb == nil || !w.r.pb.IsFinished() {
		t.Fatal("the bar is not finished once every item is done")
	}

	// The task's next transition closes the bar: its line goes below
	// the full bar, not over it.
	w.r.seen(tclient.Change{Transition: &task.Transition{Time: w.at, To: task.Completed, Actor: "system", Reason: "all answered"}})
	w.r.finish()
	requireClosed(t, w, "(10/10)")
	if got := w.out.String(); !strings.Contains(got, string(task.Completed)) || !strings.Contains(got, "all answered") || strings.Contains(got, "%") {
		t.Fatalf("the transition line is %q", got)
	}
}

func TestWatchBarDrawsTrainingStepEpochLossRateAndETAToTheEnd(t *testing.T) {
	w := newBarWatch()
	hp := &task.Resolved{NEpochs: 2, BatchSize: 8, LearningRateMultiplier: 1}
	// Ten steps an epoch, four steps a second.
	for i, loss := range []float64{2.5, 1.5, 1.0, 0.75, 0.625, 0.5} {
		w.r.seen(tclient.Change{Training: &task.FineTuneStatus{Hyperparameters: hp, Step: 4 * i, Epoch: 0.4 * float64(i), Loss: loss}})
		w.at = w.at.Add(time.Second)
	}
	drawn := []string{
		"step 0, epoch 0.00 of 2, loss 2.5000, 0.0 steps/s, ETA unknown   0% |                                        |",
		"step 4, epoch 0.40 of 2, loss 1.5000, 4.0 steps/s, ETA 4s  20% |████████                                |",
		"step 8, epoch 0.80 of 2, loss 1.0000, 4.0 steps/s, ETA 3s  40% |████████████████                        |",
		"step 12, epoch 1.20 of 2, loss 0.7500, 4.0 steps/s, ETA 2s  60% |████████████████████████                |",
		"step 16, epoch 1.60 of 2, loss 0.6250, 4.0 steps/s, ETA 1s  80% |████████████████████████████████        |",
		"step 20, epoch 2.00 of 2, loss 0.5000, 4.0 steps/s, ETA 0s 100% |████████████████████████████████████████|",
	}
	requireDrawn(t, w, drawn)
	if w.r.pb == nil || !w.r.pb.IsFinished() {
		t.Fatal("the bar is not finished after the last epoch")
	}
	w.r.finish()
	requireClosed(t, w, "100% |████████████████████████████████████████|")
	if w.out.Len() != 0 {
		t.Fatalf("the bar wrote to the output: %q", w.out.String())
	}
}
