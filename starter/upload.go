package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

func (c *cli) uploadCmd() *cobra.Command {
	var taskID, stateDir string
	cmd := &cobra.Command{
		Use:   "upload --task TASK FILE...",
		Short: "Attach files to a task: resumable, sha256-checked uploads listed in its manifest",
		Long: `upload stores files as attachments of a task, under a category taken from
their content (never their name), and lists them in the task's manifest.json,
so that 'autoglm results' downloads them and checks their sha256.

Files larger than one part (16 MiB) go as multipart uploads. If an upload is
interrupted, run the same command again: it asks the bucket which parts it
already has and sends only the others.`,
		Example: `  autoglm upload --task 20260520-101500-ab12cd34 spec.pdf photos.zip`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.tasks(cmd)
			if err != nil {
				return err
			}
			atts, err := cl.Attach(cmd.Context(), taskID, args, taskclient.AttachOptions{StateDir: stateDir, Progress: progressBars()})
			if err != nil {
				return err
			}
			return c.print(atts, describeAttachments(atts))
		},
	}
	cmd.Flags().StringVar(&taskID, "task", "", "the task to attach the files to (required)")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "where interrupted uploads keep their state (default: your cache folder)")
	_ = cmd.MarkFlagRequired("task")
	return cmd
}

// describeAttachments is the text `upload` and `submit --attach` print.
func describeAttachments(atts []taskclient.Attachment) string {
	var b strings.Builder
	for i, a := range atts {
		if i > 0 {
			b.WriteByte('\n')
		}
		e := a.Entry
		fmt.Fprintf(&b, "%s -> %s (%s, %s, %s, sha256 %s)", filepath.Base(a.Path), e.Ref().URI(), humanize.IBytes(uint64(e.Size)), e.Category, e.ContentType, e.SHA256)
		switch {
		case a.Existed:
			b.WriteString(" already there")
		case a.Reused > 0:
			fmt.Fprintf(&b, " resumed: %d part(s) were already stored", a.Reused)
		}
	}
	return b.String()
}

// progressBars draws one progress bar per file on stderr, when stderr is
// a terminal; otherwise it draws nothing (nil).
func progressBars() func(path string, size int64) func(done, total int64) {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	return func(path string, size int64) func(done, total int64) {
		bar := progressbar.NewOptions64(size,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription(filepath.Base(path)),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionShowCount(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(os.Stderr) }),
		)
		return func(done, total int64) { _ = bar.Set64(done) }
	}
}

// currentPolicy is the tenant policy the CLI checks a request against
// before it touches the bucket: AUTOGLM_POLICY_FILE, or the default.
func currentPolicy() (*authz.Policy, error) {
	path := os.Getenv("AUTOGLM_POLICY_FILE")
	if path == "" {
		return authz.Default(), nil
	}
	src, err := authz.Load(path)
	if err != nil {
		return nil, err
	}
	return src.Current()
}
