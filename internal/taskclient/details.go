package taskclient

import (
	"fmt"
	"strings"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// staticDetails are the task's key facts as the Web UI shows them on its
// page (markdown): who, what, where its input is, and how to act on it.
// No prompt or file content: the input is named by key, size and sha256.
func staticDetails(in task.Input) string {
	var b strings.Builder
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	b.WriteString("| | |\n|---|---|\n")
	row("task", "`"+in.ID+"`")
	row("tenant", in.Tenant)
	row("submitter", in.Submitter)
	row("model", in.Model)
	row("kind", string(in.Kind))
	row("priority", fmt.Sprintf("%d (1 highest … 5)", in.Priority))
	if in.Source.Key != "" {
		row("input", fmt.Sprintf("`%s` (%d bytes, sha256 `%.12s…`)", in.Source.URI(), in.Source.Size, in.Source.SHA256))
	}
	fmt.Fprintf(&b, "\nThe audit trail is under *Current Details*; `autoglm status %s` shows it too. Reviewers: `autoglm approve %s` or `autoglm reject %s --reason …`.\n", in.ID, in.ID, in.ID)
	return b.String()
}
