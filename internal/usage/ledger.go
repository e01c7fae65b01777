// Package usage is the token ledger: one record per task that ran, kept in
// the bucket under usage/<tenant>/<day>/<task>.json when the task is
// archived. The usage report (`autoglm usage`, GET /api/v1/usage), the
// server's token metrics and the tenant's daily token quota all read it,
// so they agree with each other and with the tasks' own totals.
package usage

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Prefix is the ledger's folder in the bucket. It is no category of
// task objects, so no retention rule of theirs expires it.
const Prefix = "usage/"

// DayLayout is how a day is written: in keys, flags and the report.
const DayLayout = "2006-01-02"

// MaxDays bounds the days one report reads.
const MaxDays = 366

// Record is one task's tokens, on the day (UTC) it ended; or, with
// Attempt set, the training seconds of one attempt of a fine-tuning task,
// on the day (UTC) the attempt started.
type Record struct {
	Task   string     `json:"task"`
	Tenant string     `json:"tenant"`
	Model  string     `json:"model"`
	Day    string     `json:"day"`
	Usage  task.Usage `json:"usage"`
	// Attempt names the training attempt whose seconds this is; "" for
	// the task's own record, written when it is archived.
	Attempt string `json:"attempt,omitempty"`
	// TrainingSeconds is how long the attempt held a node's training
	// slot: the tenant's GPU time.
	TrainingSeconds float64 `json:"training_seconds,omitempty"`
}

// Row is the usage of one tenant and model on one day: the report's line.
type Row struct {
	Day              string `json:"day"`
	Tenant           string `json:"tenant"`
	Model            string `json:"model"`
	Tasks            int    `json:"tasks"`
	PromptTokens     int64  `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
	TotalTokens      int64  `json:"total_tokens"`
	// TrainingSeconds is the fine-tuning attempts' GPU time.
	TrainingSeconds float64 `json:"training_seconds,omitempty"`
}

// Day is the day of t, in UTC.
func Day(t time.Time) string { return t.UTC().Format(DayLayout) }

func dayPrefix(tenant, day string) (string, error) {
	if err := storage.CheckID("tenant", tenant); err != nil {
		return "", err
	}
	return Prefix + tenant + "/" + day + "/", nil
}

// Write keeps r in the ledger. Its key is a function of the task (and
// the attempt), so writing it again (an archive retried, an attempt's
// seconds brought up to date) replaces it.
func Write(ctx context.Context, s storage.Store, r Record) error {
	if err := storage.CheckID("task id", r.Task); err != nil {
		return err
	}
	name := r.Task
	if r.Attempt != "" {
		if err := storage.CheckID("attempt", r.Attempt); err != nil {
			return err
		}
		name += "." + r.Attempt
	}
	p, err := dayPrefix(r.Tenant, r.Day)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(r)
	_, err = s.Put(ctx, p+name+".json", bytes.NewReader(b), int64(len(b)), storage.PutOptions{ContentType: "application/json"})
	return err
}

// Read returns the records of tenant from day since to day until, both
// included.
func Read(ctx context.Context, s storage.Store, tenant string, since, until time.Time) ([]Record, error) {
	since, until = since.UTC().Truncate(24*time.Hour), until.UTC().Truncate(24*time.Hour)
	if until.Before(since) {
		return nil, task.Errorf(task.InvalidInput, "until %s is before since %s", Day(until), Day(since))
	}
	if days := int(until.Sub(since).Hours()/24) + 1; days > MaxDays {
		return nil, task.Errorf(task.InvalidInput, "%d days asked for; at most %d at once", days, MaxDays)
	}
	var out []Record
	for d := since; !d.After(until); d = d.AddDate(0, 0, 1) {
		p, err := dayPrefix(tenant, Day(d))
		if err != nil {
			return nil, err
		}
		infos, err := s.List(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("usage: listing %s: %w", p, err)
		}
		for _, in := range infos {
			if !strings.HasSuffix(in.Key, ".json") {
				continue
			}
			r, err := get(ctx, s, in.Key)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
	}
	return out, nil
}

func get(ctx context.Context, s storage.Store, key string) (Record, error) {
	var r Record
	rc, _, err := s.Get(ctx, key)
	if err != nil {
		return r, fmt.Errorf("usage: reading %s: %w", key, err)
	}
	defer rc.Close()
	if err := json.NewDecoder(io.LimitReader(rc, 64<<10)).Decode(&r); err != nil {
		return r, fmt.Errorf("usage: reading %s: %w", key, err)
	}
	return r, nil
}

// Rows sums records per day, tenant and model, in that order.
func Rows(recs []Record) []Row {
	type k struct{ day, tenant, model string }
	idx := map[k]int{}
	rows := []Row{}
	for _, r := range recs {
		key := k{r.Day, r.Tenant, r.Model}
		i, ok := idx[key]
		if !ok {
			i = len(rows)
			idx[key] = i
			rows = append(rows, Row{Day: r.Day, Tenant: r.Tenant, Model: r.Model})
		}
		row := &rows[i]
		row.TrainingSeconds += r.TrainingSeconds
		if r.Attempt != "" {
			continue // an attempt's seconds; its task has a record of its own
		}
		row.Tasks++
		row.PromptTokens += r.Usage.PromptTokens
		row.CompletionTokens += r.Usage.CompletionTokens
		row.TotalTokens += r.Usage.TotalTokens
	}
	slices.SortFunc(rows, func(a, b Row) int {
		return cmp.Or(cmp.Compare(a.Day, b.Day), cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.Model, b.Model))
	})
	return rows
}

// TrainingSeconds is the sum of the records' training seconds.
func TrainingSeconds(recs []Record) float64 {
	var n float64
	for _, r := range recs {
		n += r.TrainingSeconds
	}
	return n
}

// Total is the sum of records.
func Total(recs []Record) task.Usage {
	var u task.Usage
	for _, r := range recs {
		u.Add(r.Usage)
	}
	return u
}
