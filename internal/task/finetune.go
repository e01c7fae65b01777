package task

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// KindFineTune is a fine-tuning task: a base model trained on an OpenAI
// chat fine-tuning file (Input.Source) into a model of the tenant's own.
const KindFineTune Kind = "fine_tune"

// FineTuneJobPrefix makes a fine-tuning task's ID its OpenAI job's ID
// (ftjob-<task id>), in the API and in webhook events.
const FineTuneJobPrefix = "ftjob-"

// FineTune is what a fine-tuning task adds to its Input: the rest of
// OpenAI's fine-tuning job request. The training file is Input.Source,
// the base model Input.Model.
type FineTune struct {
	// ValidationFile is optional, under the task's own prefix as the
	// training file is.
	ValidationFile  *ObjectRef      `json:"validation_file,omitempty"`
	Hyperparameters Hyperparameters `json:"hyperparameters"`
	Seed            int64           `json:"seed"`
	// Suffix goes in the fine-tuned model's name (FineTunedName).
	Suffix string `json:"suffix,omitempty"`
}

// MaxSuffixLength bounds a fine-tuned model's suffix, as OpenAI does.
const MaxSuffixLength = 64

// Validate checks what can be checked before the files are screened.
func (f FineTune) Validate() error {
	if len(f.Suffix) > MaxSuffixLength {
		return Errorf(InvalidInput, "the suffix is %d characters; at most %d", len(f.Suffix), MaxSuffixLength)
	}
	for _, r := range f.Suffix {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return Errorf(InvalidInput, "the suffix %q may hold only letters, digits, '-', '_' and '.'", f.Suffix)
		}
	}
	// A number given is checked now; "auto" needs the example count.
	if _, err := f.Hyperparameters.Resolve(1); err != nil && f.Hyperparameters.anySet() {
		return Errorf(InvalidInput, "%v", err)
	}
	return nil
}

// FineTunedName is the name of the model a fine-tuning task produces,
// as OpenAI shapes it: ft:<base>:<tenant>:<suffix>:<task id>. Only the
// tenant may use it.
func FineTunedName(base, tenant, suffix, id string) string {
	return strings.Join([]string{"ft", base, tenant, suffix, id}, ":")
}

// CheckFineTuneBase refuses a fine-tuned model as the base of a
// fine-tuning task: it is an adapter on its base, and training one on
// another would need a trainer that stacks them.
func CheckFineTuneBase(model string) error {
	if !IsFineTuned(model) {
		return nil
	}
	base := "its base model"
	if m, err := ParseFineTunedName(model); err == nil {
		base = m.Base
	}
	return Errorf(InvalidInput, "%s is a fine-tuned model, and fine-tuning starts from a base model: fine-tune %s on the earlier training data and the new together", model, base)
}

// FineTunedModel is a fine-tuned model's name taken apart.
type FineTunedModel struct {
	Base, Tenant, Suffix, TaskID string
}

// IsFineTuned tells a fine-tuned model's name (ft:…) from a base model's.
func IsFineTuned(model string) bool { return strings.HasPrefix(model, "ft:") }

// ParseFineTunedName takes apart a name FineTunedName made. Tenant and
// task ID are the last fields but two and the last (neither holds a
// colon), the suffix the one between, the base what comes before; none
// may hold a path separator, so the name is one folder in the bucket and
// in a node's cache.
func ParseFineTunedName(name string) (FineTunedModel, error) {
	bad := func(why string) (FineTunedModel, error) {
		return FineTunedModel{}, Errorf(InvalidInput, "%q is not a fine-tuned model's name (ft:<base>:<tenant>:<suffix>:<job id>): %s", name, why)
	}
	rest, ok := strings.CutPrefix(name, "ft:")
	if !ok {
		return bad("it does not start with ft:")
	}
	if len(name) > 400 || strings.ContainsAny(name, "/\\\x00 ") {
		return bad("it is too long or holds a slash or a space")
	}
	f := strings.Split(rest, ":")
	if len(f) < 4 {
		return bad("it has fewer than five fields")
	}
	n := len(f)
	m := FineTunedModel{Base: strings.Join(f[:n-3], ":"), Tenant: f[n-3], Suffix: f[n-2], TaskID: f[n-1]}
	switch {
	case m.Base == "" || m.Tenant == "" || m.TaskID == "":
		return bad("base, tenant and job id are required")
	case m.Base == ".." || m.Tenant == ".." || m.TaskID == "..":
		return bad("a field is ..")
	}
	return m, nil
}

// FineTunedPrefix is the folder of a fine-tuned model in the bucket:
// models/<tenant>/<fine-tuned name>/, with its files and a manifest
// (CacheMetaName).
func FineTunedPrefix(tenant, name string) string { return ModelPrefix(tenant, name) }

// Auto is a hyperparameter as OpenAI's method.supervised takes it: a
// number, or "auto" (the zero value), resolved once the examples are
// counted, before the trainer starts, so that every attempt trains the
// same.
type Auto struct {
	// Value is the number; ignored unless Set.
	Value float64
	// Set is true when a number was given, false for "auto".
	Set bool
}

// Number is a hyperparameter given as a number.
func Number(v float64) Auto { return Auto{Value: v, Set: true} }

// MarshalJSON writes "auto" or the number.
func (a Auto) MarshalJSON() ([]byte, error) {
	if !a.Set {
		return []byte(`"auto"`), nil
	}
	return json.Marshal(a.Value)
}

// UnmarshalJSON reads "auto", a number, or null (auto).
func (a *Auto) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == `"auto"` || string(b) == "null" {
		*a = Auto{}
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf(`a hyperparameter is a number or "auto", not %s`, b)
	}
	*a = Number(v)
	return nil
}

func (a Auto) or(def float64) float64 {
	if a.Set {
		return a.Value
	}
	return def
}

// Hyperparameters are OpenAI's method.supervised.hyperparameters.
type Hyperparameters struct {
	NEpochs                Auto `json:"n_epochs"`
	BatchSize              Auto `json:"batch_size"`
	LearningRateMultiplier Auto `json:"learning_rate_multiplier"`
}

func (h Hyperparameters) anySet() bool {
	return h.NEpochs.Set || h.BatchSize.Set || h.LearningRateMultiplier.Set
}

// Resolved are hyperparameters with every "auto" decided.
type Resolved struct {
	NEpochs                int     `json:"n_epochs"`
	BatchSize              int     `json:"batch_size"`
	LearningRateMultiplier float64 `json:"learning_rate_multiplier"`
}

// What "auto" means.
const (
	defaultEpochs       = 3
	defaultBatchSize    = 8
	defaultLRMultiplier = 1.0
)

// Resolve decides "auto": 3 epochs, a batch of 8 (fewer for a file of
// fewer examples), a learning rate multiplier of 1. A number out of range
// is an error.
func (h Hyperparameters) Resolve(examples int) (Resolved, error) {
	r := Resolved{
		NEpochs:                int(h.NEpochs.or(defaultEpochs)),
		BatchSize:              int(h.BatchSize.or(float64(min(defaultBatchSize, max(1, examples))))),
		LearningRateMultiplier: h.LearningRateMultiplier.or(defaultLRMultiplier),
	}
	switch {
	case r.NEpochs < 1 || r.NEpochs > 50:
		return r, fmt.Errorf("n_epochs is %d; it must be between 1 and 50", r.NEpochs)
	case r.BatchSize < 1 || r.BatchSize > 256:
		return r, fmt.Errorf("batch_size is %d; it must be between 1 and 256", r.BatchSize)
	case r.LearningRateMultiplier <= 0 || r.LearningRateMultiplier > 10:
		return r, fmt.Errorf("learning_rate_multiplier is %g; it must be above 0 and at most 10", r.LearningRateMultiplier)
	}
	return r, nil
}

// FineTuneStatus is what a fine-tuning task's status adds.
type FineTuneStatus struct {
	// Hyperparameters are the ones trained with, "auto" decided once the
	// examples were counted.
	Hyperparameters *Resolved `json:"hyperparameters,omitempty"`
	Seed            int64     `json:"seed"`
	// Step, Epoch and Loss are the trainer's, as of the run's end or its
	// last stop; ResumedFrom the step the last attempt resumed from.
	Step        int     `json:"step,omitempty"`
	Epoch       float64 `json:"epoch,omitempty"`
	Loss        float64 `json:"loss,omitempty"`
	ResumedFrom int     `json:"resumed_from,omitempty"`
	// WaitingForSlot: the job waits in its base model's training queue
	// until a node serving the model has a free training slot (OpenAI's
	// "queued"); from the pending Train activity, not the history.
	WaitingForSlot bool `json:"waiting_for_slot,omitempty"`
	// FineTunedModel is the model's name once it is published.
	FineTunedModel string `json:"fine_tuned_model,omitempty"`
}
