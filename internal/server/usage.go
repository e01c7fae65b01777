package server

import (
	"net/http"
	"slices"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/usage"
)

// DefaultUsageDays is how many days the usage report covers when the
// caller gives no since: the last 30, today included.
const DefaultUsageDays = 30

// UsageReport is the answer of GET /api/v1/usage: one row per day, tenant
// and model that used tokens.
type UsageReport struct {
	Data []usage.Row `json:"data"`
}

// usageReport answers GET /api/v1/usage?tenant=T&since=DAY&until=DAY from
// the usage ledger. Any role in a tenant lets a user read its usage;
// without tenant, every tenant the caller has a role in.
func (s *Server) usageReport(w http.ResponseWriter, r *http.Request, p principal) error {
	q := r.URL.Query()
	tenants := p.Policy.TenantsOf(p.User)
	if t := q.Get("tenant"); t != "" {
		if !slices.Contains(tenants, t) {
			return task.Errorf(task.PermissionDenied, "%s has no role in tenant %s", p.User, t)
		}
		tenants = []string{t}
	}
	until, err := dayParam(q.Get("until"), time.Now())
	if err != nil {
		return err
	}
	since, err := dayParam(q.Get("since"), until.AddDate(0, 0, -(DefaultUsageDays-1)))
	if err != nil {
		return err
	}
	var recs []usage.Record
	for _, t := range tenants {
		rs, err := usage.Read(r.Context(), s.Tasks.Store, t, since, until)
		if err != nil {
			return err
		}
		recs = append(recs, rs...)
	}
	writeJSON(w, http.StatusOK, UsageReport{Data: usage.Rows(recs)})
	return nil
}

// dayParam reads a YYYY-MM-DD day, def when empty.
func dayParam(v string, def time.Time) (time.Time, error) {
	if v == "" {
		return def.UTC(), nil
	}
	d, err := time.Parse(usage.DayLayout, v)
	if err != nil {
		return time.Time{}, task.Errorf(task.InvalidInput, "day %q is not YYYY-MM-DD", v)
	}
	return d, nil
}

// BatchUsage is the usage of an OpenAI batch object: the tokens of its
// answered requests, as the model server reported them.
type BatchUsage struct {
	InputTokens        int64 `json:"input_tokens"`
	OutputTokens       int64 `json:"output_tokens"`
	TotalTokens        int64 `json:"total_tokens"`
	InputTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokensDetails struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
}

func batchUsage(u task.Usage) BatchUsage {
	return BatchUsage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
}
