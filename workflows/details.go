package workflows

import (
	"fmt"
	"strings"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// auditDetails is the audit trail as the Web UI's "current details" shows
// it (markdown), newest last, so a reviewer reads it on the task's page.
// The transitions of earlier runs, kept in the bucket, are named by their
// count and object: the Web UI cannot read the bucket, and `autoglm
// status` shows them.
func auditDetails(st task.Status) string {
	const keep = 20
	audit := st.Audit
	var b strings.Builder
	b.WriteString("**Audit trail**\n\n| time (UTC) | state | by | reason |\n|---|---|---|---|\n")
	if e := st.EarlierAudit; e != nil {
		b.WriteString(fmt.Sprintf("| … | %d in earlier runs | | %s |\n", e.Transitions, cell(e.Ref.URI())))
	}
	if len(audit) > keep {
		b.WriteString(fmt.Sprintf("| … | %d earlier | | |\n", len(audit)-keep))
		audit = audit[len(audit)-keep:]
	}
	for _, tr := range audit {
		b.WriteString(fmt.Sprintf("| %s | %s | %s | %s |\n", tr.Time.Format("2006-01-02 15:04:05"), tr.To, cell(tr.Actor), cell(tr.Reason)))
	}
	return b.String()
}

func cell(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}
