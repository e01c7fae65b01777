package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	tclient "github.com/autoglm-flow/autoglm-flow/internal/client"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func (c *cli) watchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch TASK",
		Short: "Follow a task until it ends: each transition, and a progress bar while it runs",
		Long: `watch prints each transition of the task's audit trail (its time, actor and
reason) and, while inference runs, a progress bar with rate and ETA on a
terminal (a progress line every few seconds otherwise). It exits 0 when the
task completes, with the code of its failure's type when it failed (2 for
InvalidInput, 3 for PermissionDenied, 7 for the model server…), 6 when it was
rejected, cancelled or expired, and 8 when it completed but every item
failed. Ctrl-C leaves quietly (130); the task goes on.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.tasks(cmd)
			if err != nil {
				return err
			}
			st, err := c.follow(cmd.Context(), cl, args[0])
			if err != nil {
				return err
			}
			return c.printEnding(st)
		},
	}
}

// follow watches task id until it ends, showing its transitions and
// progress (nothing with --json), and returns its final status.
func (c *cli) follow(ctx context.Context, cl tclient.Client, id string) (tclient.Status, error) {
	r := &renderer{out: c.out, quiet: c.json, bar: term.IsTerminal(int(os.Stderr.Fd())),
		barOut: os.Stderr, barThrottle: barThrottle, now: time.Now}
	st, err := cl.Watch(ctx, id, r.seen)
	r.finish()
	return st, err
}

// printEnding prints the final status and returns the error its ending
// maps to.
func (c *cli) printEnding(st tclient.Status) error {
	if err := c.print(st, formatStatus(st)); err != nil {
		return err
	}
	return ending(st)
}

// ending is nil for a task that COMPLETED with an answer; otherwise an
// error whose exit code says how it ended: the failure's own type, 6 for
// the other endings, 8 for a completed task whose every item failed.
func ending(st tclient.Status) error {
	p := st.Progress.Counts
	switch {
	case st.State == task.Completed && p.Completed == 0 && p.Failed > 0:
		return fmt.Errorf("%w: task %s is COMPLETED, but all %d item(s) failed; their errors are in errors.jsonl (autoglm results %s)", errAllFailed, st.ID, p.Failed, st.ID)
	case st.State == task.Completed:
		return nil
	case st.LastErrorType != "":
		return fmt.Errorf("%w: task %s is %s: %w", errNotCompleted, st.ID, st.State, task.Errorf(st.LastErrorType, "%s", st.LastError))
	}
	return fmt.Errorf("%w: task %s is %s", errNotCompleted, st.ID, st.State)
}

// printAnswer prints a prompt's output line: whole with --json, else the
// answer's text, or the item's error.
func (c *cli) printAnswer(line json.RawMessage) error {
	if c.json {
		_, err := fmt.Fprintf(c.out, "%s\n", line)
		return err
	}
	var ol struct {
		Response *struct {
			Body struct {
				Choices []struct {
					Message struct {
						Content string `json:"content"`
					} `json:"message"`
				} `json:"choices"`
			} `json:"body"`
		} `json:"response"`
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(line, &ol)
	switch {
	case ol.Error != nil:
		_, err := fmt.Fprintf(c.out, "no answer: %s: %s\n", ol.Error.Code, ol.Error.Message)
		return err
	case ol.Response != nil && len(ol.Response.Body.Choices) > 0:
		_, err := fmt.Fprintln(c.out, ol.Response.Body.Choices[0].Message.Content)
		return err
	}
	_, err := fmt.Fprintf(c.out, "%s\n", line)
	return err
}

// plainEvery is how often a watch without a terminal prints a progress
// line.
const plainEvery = 5 * time.Second

// barThrottle is how often at most the bar is redrawn, so a fast task
// does not flood the terminal; its last state is always drawn.
const barThrottle = 200 * time.Millisecond

// renderer shows what Watch learns: transitions as lines, progress as a
// bar on a terminal or as a line now and then. Rate and ETA are measured
// from what this watch saw, so a resumed task does not claim the work of
// its earlier runs was done in an instant.
type renderer struct {
	out   io.Writer
	quiet bool
	bar   bool // stderr is a terminal

	// barOut is where the bar draws (stderr), barThrottle how often at
	// most, now the clock rates and ETAs are measured with: fields so a
	// test can watch the bar drawn against a clock it moves.
	barOut      io.Writer
	barThrottle time.Duration
	now         func() time.Time

	pb        *progressbar.ProgressBar
	base      int       // items done when this watch first saw progress
	baseAt    time.Time // and when
	lastPlain time.Time
}

func (r *renderer) seen(u tclient.Change) {
	if r.quiet {
		return
	}
	if t := u.Transition; t != nil {
		r.closeBar()
		fmt.Fprintf(r.out, "%s  %-17s %-10s %s\n", t.Time.Local().Format("15:04:05"), t.To, t.Actor, t.Reason)
	}
	if p := u.Progress; p != nil && p.Total > 0 {
		r.progress(*p)
	}
	if t := u.Training; t != nil {
		r.training(*t)
	}
}

func (r *renderer) progress(p task.Progress) {
	now := r.now()
	rate := r.rateAt(p.Done(), now)
	eta := "ETA unknown"
	if rate > 0 {
		eta = etaOf(float64(p.Total-p.Done()), rate)
	}
	if !p.WaitingSince.IsZero() {
		eta = "waiting for the model server since " + p.WaitingSince.Local().Format("15:04:05")
	}
	desc := fmt.Sprintf("inference, %d failed, %.1f/s, %s", p.Failed, rate, eta)
	if !r.bar {
		if now.Sub(r.lastPlain) >= plainEvery || p.Done() == p.Total {
			fmt.Fprintf(r.out, "          progress: %d of %d (%s)\n", p.Done(), p.Total, strings.TrimPrefix(desc, "inference, "))
			r.lastPlain = now
		}
		return
	}
	if r.pb == nil {
		r.pb = r.newBar(p.Total, progressbar.OptionShowCount())
	}
	r.pb.Describe(desc)
	_ = r.pb.Set(p.Done())
}

// rateAt is how fast done has grown, per second, since this watch first
// saw it; 0 until it has grown.
func (r *renderer) rateAt(done int, now time.Time) float64 {
	if r.baseAt.IsZero() {
		r.base, r.baseAt = done, now
	}
	if el := now.Sub(r.baseAt).Seconds(); el > 0 && done > r.base {
		return float64(done-r.base) / el
	}
	return 0
}

// etaOf says how long the units left take at rate, to the second.
func etaOf(left, rate float64) string {
	return "ETA " + time.Duration(left/rate*float64(time.Second)).Round(time.Second).String()
}

// newBar is a progress bar on barOut of so many units.
func (r *renderer) newBar(units int, opts ...progressbar.Option) *progressbar.ProgressBar {
	return progressbar.NewOptions(units, append([]progressbar.Option{
		progressbar.OptionSetWriter(r.barOut),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionThrottle(r.barThrottle)}, opts...)...)
}

func (r *renderer) closeBar() {
	if r.pb != nil {
		_ = r.pb.Finish()
		fmt.Fprintln(r.barOut)
		r.pb = nil
	}
}

func (r *renderer) finish() { r.closeBar() }

// formatStatus is the text form of a status.
func formatStatus(s tclient.Status) string {
	st := s.Status
	var b strings.Builder
	fmt.Fprintf(&b, "task %s: %s (stage %s)\n", st.ID, st.State, st.Stage)
	prio := "3 (default)"
	if st.Priority > 0 {
		prio = strconv.Itoa(st.Priority)
	}
	fmt.Fprintf(&b, "  tenant %s, submitter %s, model %s, %s, priority %s\n", st.Tenant, st.Submitter, st.Model, st.Kind, prio)
	if st.Origin != "" {
		fmt.Fprintf(&b, "  resubmitted from task %s\n", st.Origin)
	}
	p := st.Progress
	fmt.Fprintf(&b, "  requests: %d total, %d completed, %d failed", p.Total, p.Completed, p.Failed)
	if p.RatePerSecond > 0 && !st.State.Final() {
		fmt.Fprintf(&b, " (%.1f/s, about %s left)", p.RatePerSecond, (time.Duration(p.ETASeconds) * time.Second).String())
	}
	b.WriteString("\n")
	if u := st.Usage; !u.IsZero() {
		fmt.Fprintf(&b, "  tokens: %d prompt, %d completion, %d total\n", u.PromptTokens, u.CompletionTokens, u.TotalTokens)
	}
	if !p.WaitingSince.IsZero() && !st.State.Final() {
		fmt.Fprintf(&b, "  waiting for the model server since %s\n", p.WaitingSince.Format(time.RFC3339))
	}
	if !p.StoreWaitingSince.IsZero() && !st.State.Final() {
		fmt.Fprintf(&b, "  waiting for the bucket since %s\n", p.StoreWaitingSince.Format(time.RFC3339))
	}
	if st.Node != "" {
		fmt.Fprintf(&b, "  node %s\n", st.Node)
	}
	if len(st.Approvals) > 0 || st.Quorum > 1 {
		var names []string
		for _, d := range st.Approvals {
			names = append(names, d.Actor)
		}
		fmt.Fprintf(&b, "  approvals %d of %d: %s\n", len(st.Approvals), st.Quorum, strings.Join(names, ", "))
	}
	if st.LastError != "" {
		fmt.Fprintf(&b, "  last error: %s\n", st.LastError)
	}
	for _, a := range st.Artifacts {
		fmt.Fprintf(&b, "  %-8s %s (%d bytes)\n", a.Category, a.URI(), a.Size)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Metadata)) {
		fmt.Fprintf(&b, "  metadata %s: %s\n", k, s.Metadata[k])
	}
	b.WriteString("  audit:\n")
	for _, t := range st.Audit {
		fmt.Fprintf(&b, "    %s  %-17s %-10s %s\n", t.Time.Format(time.RFC3339), t.To, t.Actor, t.Reason)
	}
	return strings.TrimRight(b.String(), "\n")
}
