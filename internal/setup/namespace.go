package setup

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"
)

// DefaultNamespaceRetention is how long a namespace setup registers keeps
// closed workflows (their histories, the Web UI's view of finished tasks).
const DefaultNamespaceRetention = 30 * 24 * time.Hour

// SQLColumns are how many custom search attributes of each type one
// namespace can hold on SQL visibility (PostgreSQL, MySQL, SQLite): each
// maps to a pre-made column (Keyword01…Keyword10, Int01…Int03, …) of
// executions_visibility. Elasticsearch holds more.
var SQLColumns = map[enumspb.IndexedValueType]int{
	enumspb.INDEXED_VALUE_TYPE_KEYWORD:      10,
	enumspb.INDEXED_VALUE_TYPE_INT:          3,
	enumspb.INDEXED_VALUE_TYPE_BOOL:         3,
	enumspb.INDEXED_VALUE_TYPE_DOUBLE:       3,
	enumspb.INDEXED_VALUE_TYPE_DATETIME:     3,
	enumspb.INDEXED_VALUE_TYPE_TEXT:         3,
	enumspb.INDEXED_VALUE_TYPE_KEYWORD_LIST: 3,
}

// EnsureNamespace registers the namespace with retention unless it
// exists, and waits until the frontend serves it (a new namespace reaches
// the servers' caches within seconds).
func EnsureNamespace(ctx context.Context, tc client.Client, namespace string, retention time.Duration) Check {
	c := Check{What: "namespace " + namespace}
	desc, err := tc.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
	var nf *serviceerror.NamespaceNotFound
	switch {
	case err == nil:
		have := desc.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration()
		c.OK, c.Detail = true, "exists, retention "+days(have)
		if have < retention {
			c.Warning, c.Detail = true, fmt.Sprintf("exists with retention %s, under the %s asked: finished tasks leave the Web UI sooner (`temporal operator namespace update -n %s --retention %s` changes it)", days(have), days(retention), namespace, retention)
		}
		return c
	case !errors.As(err, &nf):
		c.Detail = fmt.Sprintf("describing it: %v", err)
		return c
	}
	if _, err := tc.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace:                        namespace,
		Description:                      "autoglm-flow tasks",
		WorkflowExecutionRetentionPeriod: durationpb.New(retention),
	}); err != nil && !errors.As(err, new(*serviceerror.NamespaceAlreadyExists)) {
		c.Detail = fmt.Sprintf("registering it: %v", err)
		return c
	}
	if err := waitServed(ctx, tc, namespace); err != nil {
		c.Detail = err.Error()
		return c
	}
	c.OK, c.Detail = true, "registered, retention "+days(retention)
	return c
}

// waitServed waits until the operator API knows the namespace.
func waitServed(ctx context.Context, tc client.Client, namespace string) error {
	err := retry(ctx, time.Minute, func(ctx context.Context) error {
		_, err := tc.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
		return err
	})
	if err != nil {
		return fmt.Errorf("namespace %s registered but not served within a minute: %v", namespace, err)
	}
	return nil
}

// retry calls f every half second until it succeeds or limit has passed,
// and returns its last error then.
func retry(ctx context.Context, limit time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// ColumnsCheck says whether the task's search attributes fit SQL
// visibility's columns beside the namespace's other custom attributes
// (have), type by type.
func ColumnsCheck(have map[string]enumspb.IndexedValueType) Check {
	c := Check{What: "search attribute columns (SQL visibility)", OK: true}
	used := map[enumspb.IndexedValueType][]string{}
	for name, typ := range have {
		used[typ] = append(used[typ], name)
	}
	for name, typ := range SearchAttributes() {
		if _, ok := have[name]; !ok {
			used[typ] = append(used[typ], name)
		}
	}
	var parts, over []string
	for _, typ := range slices.Sorted(maps.Keys(used)) {
		names := used[typ]
		slices.Sort(names)
		limit := SQLColumns[typ]
		short := strings.TrimPrefix(typ.String(), "INDEXED_VALUE_TYPE_")
		parts = append(parts, fmt.Sprintf("%s %d of %d", short, len(names), limit))
		if len(names) > limit {
			over = append(over, fmt.Sprintf("%d %s attributes (%s) for %d columns", len(names), short, strings.Join(names, ", "), limit))
		}
	}
	c.Detail = strings.Join(parts, ", ")
	if len(over) > 0 {
		c.OK = false
		c.Detail = "the namespace would need " + strings.Join(over, "; ") + ": remove attributes it no longer uses (`temporal operator search-attribute remove`), or use Elasticsearch visibility"
	}
	return c
}

// NotReadyError is why a worker or the API server refuses a namespace:
// it does not exist, or lacks search attributes.
type NotReadyError struct {
	Namespace string
	Missing   []string // search attributes; empty when the namespace is absent
}

func (e *NotReadyError) Error() string {
	if len(e.Missing) == 0 {
		return fmt.Sprintf("namespace %s does not exist on this Temporal cluster: run `autoglm setup` once against it (it registers the namespace and its search attributes)", e.Namespace)
	}
	return ErrNotReady(e.Namespace, e.Missing).Error()
}

// Ready returns a *NotReadyError when the namespace is absent or lacks
// the search attributes, nil when it is ready, and another error when it
// could not tell (credentials without operator rights).
func Ready(ctx context.Context, tc client.Client, namespace string) error {
	missing, err := Missing(ctx, tc, namespace)
	var nf *serviceerror.NamespaceNotFound
	switch {
	case errors.As(err, &nf):
		return &NotReadyError{Namespace: namespace}
	case err != nil:
		return err
	case len(missing) > 0:
		return &NotReadyError{Namespace: namespace, Missing: missing}
	}
	return nil
}
