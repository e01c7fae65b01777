// Package trainer runs fine-tuning on a node: the contract a trainer
// command meets, the runner that starts it, asks it to save and uploads
// what it saved, and the checkpoints in the bucket that a later attempt,
// on any node, resumes from.
//
// The contract, in short (the README's "Fine-tuning: the trainer
// contract" says it in full): the node runs its configured command with
// the AUTOGLM_* variables of Spec in its environment (and "${VAR}" in the
// command expanded from them). The trainer writes Hugging Face-style
// checkpoint-<step>/ folders in AUTOGLM_OUTPUT_DIR, each with
// trainer_state.json, and writes CompleteMarker in a folder last, once
// every other file of it is written and closed. It saves every
// AUTOGLM_SAVE_STEPS steps by itself; SIGUSR1 means save now and go on;
// SIGTERM means save now and exit. Before it starts a checkpoint folder it
// waits while the output folder holds AUTOGLM_MAX_LOCAL_CHECKPOINTS
// checkpoint folders (the runner deletes them as uploads finish), so a
// slow bucket never fills the disk. When training ends it writes the
// model to final/ (with CompleteMarker) and exits 0. Progress lines on
// stdout are JSON objects with "step" (and "epoch", "loss").
package trainer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"syscall"
)

// CompleteMarker is the file a trainer writes last in a checkpoint (or
// final) folder: its presence says every other file is complete. A folder
// without it is being written, or was cut mid-save, and never counts.
const CompleteMarker = "autoglm-complete"

// StateFile is the Hugging Face trainer state every checkpoint holds.
const StateFile = "trainer_state.json"

// FinalDir is the folder, in the output folder, the trained model goes to.
const FinalDir = "final"

// The signals of the contract.
const (
	// SaveAndExit asks the trainer to write a checkpoint and exit 0.
	SaveAndExit = syscall.SIGTERM
	// SaveAndGoOn asks the trainer to write a checkpoint and keep training.
	SaveAndGoOn = syscall.SIGUSR1
)

// The environment of a trainer command (see Spec).
const (
	EnvModelPath      = "AUTOGLM_MODEL_PATH"
	EnvTrainingFile   = "AUTOGLM_TRAINING_FILE"
	EnvValidationFile = "AUTOGLM_VALIDATION_FILE"
	EnvOutputDir      = "AUTOGLM_OUTPUT_DIR"
	EnvResumeFrom     = "AUTOGLM_RESUME_FROM"
	EnvEpochs         = "AUTOGLM_N_EPOCHS"
	EnvBatchSize      = "AUTOGLM_BATCH_SIZE"
	EnvLearningRate   = "AUTOGLM_LEARNING_RATE_MULTIPLIER"
	EnvSeed           = "AUTOGLM_SEED"
	EnvSaveSteps      = "AUTOGLM_SAVE_STEPS"
	EnvMaxLocal       = "AUTOGLM_MAX_LOCAL_CHECKPOINTS"
	EnvSpec           = "AUTOGLM_TRAINER_SPEC"
)

const (
	specFileName     = "autoglm-spec.json"
	checkpointPrefix = "checkpoint-"
	defaultSaveSteps = 500
	defaultMaxKeep   = 2
	// What "auto" means.
	defaultEpochs       = 3
	defaultBatchSize    = 8
	defaultLRMultiplier = 1.0
)

// ContractEnv are the variables the runner sets for a trainer: the
// contract's, not settings of autoglm-flow (the configuration reference
// leaves them to the README's trainer contract).
var ContractEnv = []string{
	EnvModelPath, EnvTrainingFile, EnvValidationFile, EnvOutputDir, EnvResumeFrom,
	EnvEpochs, EnvBatchSize, EnvLearningRate, EnvSeed, EnvSaveSteps, EnvMaxLocal, EnvSpec,
}

// Auto is a hyperparameter as OpenAI's method.supervised takes it: a
// number, or "auto" (the zero value), which the runner resolves before
// the trainer starts so that a checkpoint's config digest is the same on
// every attempt.
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

// Resolved are hyperparameters with every "auto" decided.
type Resolved struct {
	NEpochs                int     `json:"n_epochs"`
	BatchSize              int     `json:"batch_size"`
	LearningRateMultiplier float64 `json:"learning_rate_multiplier"`
}

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

// Spec is what a trainer is given: its environment, and the same as JSON
// in the file AUTOGLM_TRAINER_SPEC names.
type Spec struct {
	ModelPath       string   `json:"model_path"`
	TrainingFile    string   `json:"training_file"`
	ValidationFile  string   `json:"validation_file,omitempty"`
	OutputDir       string   `json:"output_dir"`
	ResumeFrom      string   `json:"resume_from,omitempty"`
	Hyperparameters Resolved `json:"hyperparameters"`
	Seed            int64    `json:"seed"`
	SaveSteps       int      `json:"save_steps"`
	MaxLocal        int      `json:"max_local_checkpoints"`
}

// Env is the spec as the trainer's environment variables.
func (s Spec) Env(specPath string) []string {
	return []string{
		EnvModelPath + "=" + s.ModelPath,
		EnvTrainingFile + "=" + s.TrainingFile,
		EnvValidationFile + "=" + s.ValidationFile,
		EnvOutputDir + "=" + s.OutputDir,
		EnvResumeFrom + "=" + s.ResumeFrom,
		EnvEpochs + "=" + strconv.Itoa(s.Hyperparameters.NEpochs),
		EnvBatchSize + "=" + strconv.Itoa(s.Hyperparameters.BatchSize),
		EnvLearningRate + "=" + strconv.FormatFloat(s.Hyperparameters.LearningRateMultiplier, 'g', -1, 64),
		EnvSeed + "=" + strconv.FormatInt(s.Seed, 10),
		EnvSaveSteps + "=" + strconv.Itoa(s.SaveSteps),
		EnvMaxLocal + "=" + strconv.Itoa(s.MaxLocal),
		EnvSpec + "=" + specPath,
	}
}

// SpecFromEnv is the spec a trainer finds in its environment: the file
// AUTOGLM_TRAINER_SPEC names. A trainer written in Go (the test trainer)
// calls it.
func SpecFromEnv() (Spec, error) {
	var s Spec
	path := os.Getenv(EnvSpec)
	if path == "" {
		return s, fmt.Errorf("%s is not set: this program is started by a node's trainer runner", EnvSpec)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

// State is the part of trainer_state.json the runner reads.
type State struct {
	GlobalStep int        `json:"global_step"`
	Epoch      float64    `json:"epoch"`
	LogHistory []LogEntry `json:"log_history"`
}

// LogEntry is one entry of log_history.
type LogEntry struct {
	Step  int      `json:"step"`
	Epoch float64  `json:"epoch"`
	Loss  *float64 `json:"loss,omitempty"`
}

// LastLoss is the loss of the newest log entry that has one.
func (s State) LastLoss() float64 {
	for i := len(s.LogHistory) - 1; i >= 0; i-- {
		if l := s.LogHistory[i].Loss; l != nil {
			return *l
		}
	}
	return 0
}

// ReadState reads dir/trainer_state.json.
func ReadState(dir string) (State, error) {
	var s State
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("trainer: %s/%s: %w", filepath.Base(dir), StateFile, err)
	}
	return s, nil
}

// Progress is one progress line of a trainer, and what the runner reports:
// small, whatever the run's length.
type Progress struct {
	Step  int     `json:"step"`
	Epoch float64 `json:"epoch"`
	Loss  float64 `json:"loss"`
	// Checkpoint is the step of the newest committed checkpoint (runner
	// only).
	Checkpoint int `json:"checkpoint,omitempty"`
}

var checkpointName = regexp.MustCompile(`^checkpoint-([0-9]+)$`)

// localCheckpoint is a checkpoint folder in the output folder.
type localCheckpoint struct {
	step     int
	dir      string
	complete bool
}

// scanOutput lists the checkpoint folders of dir, oldest step first.
func scanOutput(dir string) ([]localCheckpoint, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []localCheckpoint
	for _, e := range entries {
		m := checkpointName.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		step, _ := strconv.Atoi(m[1])
		p := filepath.Join(dir, e.Name())
		out = append(out, localCheckpoint{step: step, dir: p, complete: isComplete(p)})
	}
	slices.SortFunc(out, func(a, b localCheckpoint) int { return a.step - b.step })
	return out, nil
}

func isComplete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, CompleteMarker))
	return err == nil
}

// CheckpointDir is the name of the folder of a checkpoint at step.
func CheckpointDir(step int) string { return checkpointPrefix + strconv.Itoa(step) }

// CountCheckpoints is how many checkpoint folders dir holds, complete or
// not: what a trainer compares with AUTOGLM_MAX_LOCAL_CHECKPOINTS before it
// starts another.
func CountCheckpoints(dir string) (int, error) {
	cs, err := scanOutput(dir)
	return len(cs), err
}
