package metrics

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// States are the task states the tasks gauge reports, in lifecycle order.
var States = []task.State{
	task.Submitted, task.Authorized, task.Screened, task.AwaitingApproval, task.Approved,
	task.Dispatched, task.Running, task.Paused, task.Archiving,
	task.Completed, task.Rejected, task.Failed, task.Cancelled, task.Expired,
}

// Tasks reports, at each scrape, how many tasks are in each state and how
// long the approvals have waited, from Temporal's visibility store: the
// numbers are the cluster's, whichever worker or server is scraped.
type Tasks struct {
	Temporal  client.Client
	Namespace string

	tasks, waiting, oldest, up *prometheus.Desc
}

// RegisterTasks adds the Tasks collector to m's registry.
func (m *Metrics) RegisterTasks(tc client.Client, namespace string) error {
	return m.Registry.Register(newReading(&Tasks{
		Temporal: tc, Namespace: namespace,
		tasks:   prometheus.NewDesc(Namespace+"_tasks", "Tasks by state, from Temporal's visibility store.", []string{"state"}, nil),
		waiting: prometheus.NewDesc(Namespace+"_approvals_waiting", "Tasks waiting for approval now.", nil, nil),
		oldest:  prometheus.NewDesc(Namespace+"_approval_oldest_age_seconds", "How long the oldest task waiting for approval has existed (0 when none waits).", nil, nil),
		up:      prometheus.NewDesc(Namespace+"_visibility_up", "1 if the last scrape could read the visibility store.", nil, nil),
	}, ReadingWait))
}

// Describe implements prometheus.Collector.
func (t *Tasks) Describe(ch chan<- *prometheus.Desc) {
	ch <- t.tasks
	ch <- t.waiting
	ch <- t.oldest
	ch <- t.up
}

// Collect implements prometheus.Collector.
func (t *Tasks) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	up := 1.0
	for _, s := range States {
		res, err := t.Temporal.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			Namespace: t.Namespace,
			// A task that continued as new counts once, by its latest run.
			Query: fmt.Sprintf("%s = '%s' AND ExecutionStatus != 'ContinuedAsNew'", task.AttrState.GetName(), s),
		})
		if err != nil {
			up = 0
			break
		}
		ch <- prometheus.MustNewConstMetric(t.tasks, prometheus.GaugeValue, float64(res.GetCount()), string(s))
	}
	waiting, oldest, err := t.approvals(ctx)
	if err != nil {
		up = 0
	} else {
		ch <- prometheus.MustNewConstMetric(t.waiting, prometheus.GaugeValue, float64(waiting))
		ch <- prometheus.MustNewConstMetric(t.oldest, prometheus.GaugeValue, oldest.Seconds())
	}
	ch <- prometheus.MustNewConstMetric(t.up, prometheus.GaugeValue, up)
}

// approvals lists the open tasks awaiting approval; their number is small
// (people decide them), so one page is read.
func (t *Tasks) approvals(ctx context.Context) (int, time.Duration, error) {
	res, err := t.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: t.Namespace,
		PageSize:  1000,
		Query:     fmt.Sprintf("%s = '%s' AND ExecutionStatus = 'Running'", task.AttrState.GetName(), task.AwaitingApproval),
	})
	if err != nil {
		return 0, 0, err
	}
	var oldest time.Duration
	for _, e := range res.GetExecutions() {
		if age := time.Since(e.GetStartTime().AsTime()); age > oldest {
			oldest = age
		}
	}
	return len(res.GetExecutions()), oldest, nil
}
