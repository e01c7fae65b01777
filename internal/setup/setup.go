// Package setup prepares a real cluster for autoglm-flow: the namespace's
// search attributes, the bucket's versioning and lifecycle rules, and the
// dynamic config that priority and fairness need. `autoglm setup` runs it;
// the worker uses Missing to refuse to start on a namespace that is not
// ready.
package setup

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// SearchAttributes are the attributes a task sets, with their types.
func SearchAttributes() map[string]enumspb.IndexedValueType {
	out := map[string]enumspb.IndexedValueType{}
	for _, sa := range task.SearchAttributeTypes() {
		name, typ, _ := strings.Cut(sa, "=")
		out[name] = enumspb.IndexedValueType(enumspb.IndexedValueType_value["INDEXED_VALUE_TYPE_"+strings.ToUpper(typ)])
	}
	return out
}

// Missing lists the search attributes the namespace lacks (or has with
// another type), sorted.
func Missing(ctx context.Context, tc client.Client, namespace string) ([]string, error) {
	res, err := tc.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return nil, fmt.Errorf("setup: listing the search attributes of namespace %s: %w", namespace, err)
	}
	var missing []string
	for name, typ := range SearchAttributes() {
		if have, ok := res.GetCustomAttributes()[name]; !ok || have != typ {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	return missing, nil
}

// RegisterSearchAttributes creates the missing search attributes and
// returns their names; run again, it creates none. An attribute that
// exists with another type is an error: renaming it is a person's call.
func RegisterSearchAttributes(ctx context.Context, tc client.Client, namespace string) ([]string, error) {
	res, err := tc.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return nil, fmt.Errorf("setup: listing the search attributes of namespace %s: %w", namespace, err)
	}
	add := map[string]enumspb.IndexedValueType{}
	for name, typ := range SearchAttributes() {
		have, ok := res.GetCustomAttributes()[name]
		switch {
		case !ok:
			add[name] = typ
		case have != typ:
			return nil, fmt.Errorf("setup: search attribute %s exists in namespace %s as %s; autoglm-flow needs %s", name, namespace, have, typ)
		}
	}
	if len(add) > 0 {
		if _, err := tc.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: add}); err != nil {
			return nil, fmt.Errorf("setup: adding search attributes to namespace %s: %w", namespace, err)
		}
	}
	var names []string
	for n := range add {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, waitMapped(ctx, tc, namespace)
}

// waitMapped waits until the frontend takes queries (and so starts) that
// use every attribute. With SQL visibility an added attribute is a
// namespace update, which each frontend's namespace cache picks up only at
// its next refresh (seconds): until then a start that sets it fails with
// "no mapping defined for search attribute".
func waitMapped(ctx context.Context, tc client.Client, namespace string) error {
	attrs := SearchAttributes()
	var terms []string
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		v := "''"
		if attrs[name] == enumspb.INDEXED_VALUE_TYPE_INT {
			v = "0"
		}
		terms = append(terms, name+" = "+v)
	}
	probe := &workflowservice.CountWorkflowExecutionsRequest{Namespace: namespace, Query: strings.Join(terms, " AND ")}
	err := retry(ctx, 2*time.Minute, func(ctx context.Context) error {
		_, err := tc.WorkflowService().CountWorkflowExecutions(ctx, probe)
		return err
	})
	if err != nil {
		return fmt.Errorf("setup: the search attributes of namespace %s are registered, but the frontend does not take them within two minutes: %v", namespace, err)
	}
	return nil
}

// ErrNotReady is the worker's refusal when the namespace lacks search
// attributes.
func ErrNotReady(namespace string, missing []string) error {
	return fmt.Errorf("namespace %s lacks the search attributes %s that tasks set (their first upsert would fail the workflow task): run `autoglm setup` once against this cluster", namespace, strings.Join(missing, ", "))
}
