package task

import "go.temporal.io/sdk/temporal"

// Search attributes of a task, kept current by the workflow so that the Web
// UI and `autoglm list` can filter on them. The dev server registers them at
// start (see internal/devstack); a cluster gets them from `autoglm setup`.
var (
	AttrTenant    = temporal.NewSearchAttributeKeyKeyword("Tenant")
	AttrSubmitter = temporal.NewSearchAttributeKeyKeyword("Submitter")
	AttrModel     = temporal.NewSearchAttributeKeyKeyword("Model")
	AttrKind      = temporal.NewSearchAttributeKeyKeyword("TaskKind")
	AttrState     = temporal.NewSearchAttributeKeyKeyword("TaskState")
	AttrPriority  = temporal.NewSearchAttributeKeyInt64("TaskPriority")
)

// SearchAttributeTypes lists every search attribute with its Temporal type,
// in the NAME=Type form `temporal server start-dev --search-attribute` takes.
func SearchAttributeTypes() []string {
	return []string{
		AttrTenant.GetName() + "=Keyword",
		AttrSubmitter.GetName() + "=Keyword",
		AttrModel.GetName() + "=Keyword",
		AttrKind.GetName() + "=Keyword",
		AttrState.GetName() + "=Keyword",
		AttrPriority.GetName() + "=Int",
	}
}
