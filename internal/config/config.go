// Package config reads the settings of the worker and the CLI from flags
// and the environment. Secrets (S3 keys, the model server's API key) come
// from the environment or from files named there, never from payloads, and
// never appear in String.
package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/log"

	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
)

// Defaults a fresh checkout runs with: the bucket and credentials of the
// local MinIO that devstack starts.
const (
	DefaultBucket = "autoglm"
	DefaultNode   = "local"
)

// Config is everything the worker needs besides the Temporal connection,
// which the SDK's envconfig reads (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
// TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE and the config file).
type Config struct {
	S3  storage.Config
	LLM llm.Config
	// Node is this worker's node name: its own task queue is
	// task.NodeQueue(Node).
	Node string
	// Models are the models the node serves; empty means ask the model
	// server (GET /models).
	Models []string
	// PolicyFile is the tenant policy (YAML); empty uses the embedded
	// default policy.
	PolicyFile string
	// Concurrency is how many requests one piece keeps in flight.
	Concurrency int
	// PieceRequests cuts batches larger than this into pieces that run in
	// parallel on the nodes.
	PieceRequests int
	// MaxPieces is how many pieces each of this node's queues runs at once;
	// more wait in the queue, highest priority first.
	MaxPieces int
	// CheckpointInterval is the longest time between two checkpoints of a
	// running piece.
	CheckpointInterval time.Duration
	// HeartbeatTimeout is how soon the inference of a worker that died is
	// retried elsewhere.
	HeartbeatTimeout time.Duration
	// ContinueAsNewEvents makes a task's waits continue as new once a
	// run's history reaches this many events; 0 leaves it to the server's
	// suggestion. For tests and operators who want short histories.
	ContinueAsNewEvents int
	// NodeStartTimeout is how long a node's queue may hold a piece of
	// inference before the task dispatches it again, avoiding that node.
	NodeStartTimeout time.Duration
	// Outage are the thresholds of the model server outage hold.
	Outage Outage
	// HealthAddr serves /healthz and /metrics; empty turns it off.
	HealthAddr string
	// HeapProfile, if set, is where the worker keeps a heap profile taken
	// at its peak heap, for finding what holds memory.
	HeapProfile string
	// CPUProfile, if set, is where the worker writes a CPU profile of its
	// whole run, for finding where the engine's time goes (bench only).
	CPUProfile string
	LogFormat  string // text or json
	LogLevel   string
	// AssertionKeys are the base64 ed25519 public keys (comma-separated)
	// whose actor assertions the update validators accept: the API
	// server's, and any break-glass operator key.
	AssertionKeys string
	// BreakGlassKeys are trusted like AssertionKeys but held by operators,
	// who can sign any actor's name: the approvals one such key signs
	// count as one person towards a quorum.
	BreakGlassKeys string
	// Deployment is the Worker Deployment of the control plane (the task
	// queue's workflows and local activities); the nodes' queues are
	// unversioned.
	Deployment string
	// BuildID names this build of the control plane within Deployment;
	// empty: the executable's sha256, so two builds never share one.
	BuildID string
	// Promote says when this worker makes its build the deployment's
	// current version: "always" (dev), "if-none" (the first build a
	// namespace sees), "never" (an operator rolls out).
	Promote string
	// Role is what this process polls: "all" (the control plane's task
	// queue and this node's queues), "control" (the control plane only,
	// no model server), "node" (a GPU node: its node and model queues
	// only).
	Role string
	// Trainer is how this node runs fine-tuning jobs.
	Trainer Trainer
	// CacheDir is the node's model cache; empty is
	// <user cache dir>/autoglm/<node>/models.
	CacheDir string
	// LoRAAdapters is how the node loads fine-tuned models into its model
	// server: llm.LoRAVLLM, llm.LoRASGLang, or llm.LoRANone (it serves
	// none).
	LoRAAdapters string
}

// Trainer is a node's trainer command and its auto-save settings (see
// internal/trainer and the README's trainer contract).
type Trainer struct {
	// Command is the trainer's argv, split on spaces (no shell), with
	// ${AUTOGLM_…} expanded from the job's spec; empty runs no
	// fine-tuning on this node.
	Command []string
	// Dir holds the jobs' folders on the node's disk.
	Dir string
	// Interval asks for a checkpoint this long after the last one.
	Interval time.Duration
	// SaveSteps is how often, in steps, the trainer saves by itself.
	SaveSteps int
	// MaxKeep checkpoints stay in the bucket and on the node's disk.
	MaxKeep int
	// StopTimeout is how long a trainer told to stop has to save.
	StopTimeout time.Duration
	// Slots is how many fine-tuning jobs the node trains at once, apart
	// from the pieces of batches it runs (MaxPieces): 1 on a node with a trainer
	// command, 0 (no training) without one.
	Slots int
}

// FromEnv reads AUTOGLM_* variables.
func FromEnv() (Config, error) {
	e := env{}
	c := Config{
		S3: storage.Config{
			Driver:    e.str("AUTOGLM_S3_DRIVER", "minio"),
			Endpoint:  e.str("AUTOGLM_S3_ENDPOINT", "127.0.0.1:9000"),
			Bucket:    e.str("AUTOGLM_S3_BUCKET", DefaultBucket),
			Region:    e.str("AUTOGLM_S3_REGION", ""),
			AccessKey: e.secret("AUTOGLM_S3_ACCESS_KEY"),
			SecretKey: e.secret("AUTOGLM_S3_SECRET_KEY"),
			Insecure:  e.bool("AUTOGLM_S3_INSECURE", true),
			// versitygw needs it; see storage.Config.
			StatBeforeReplace: e.bool("AUTOGLM_S3_STAT_BEFORE_REPLACE", false),
		},
		LLM: llm.Config{
			BaseURL: e.str("AUTOGLM_LLM_BASE_URL", ""),
			APIKey:  e.secret("AUTOGLM_LLM_API_KEY"),
			Timeout: e.duration("AUTOGLM_LLM_TIMEOUT", 60*time.Second),
		},
		Node:                e.str("AUTOGLM_NODE", DefaultNode),
		Models:              e.list("AUTOGLM_MODELS"),
		PolicyFile:          e.str("AUTOGLM_POLICY_FILE", ""),
		Concurrency:         e.int("AUTOGLM_CONCURRENCY", 16),
		MaxPieces:           e.int("AUTOGLM_MAX_PIECES", e.int("AUTOGLM_MAX_BATCHES", 4)),
		PieceRequests:       e.int("AUTOGLM_PIECE_REQUESTS", e.int("AUTOGLM_SHARD_REQUESTS", 50000)),
		CheckpointInterval:  e.duration("AUTOGLM_CHECKPOINT_INTERVAL", 30*time.Second),
		HeartbeatTimeout:    e.duration("AUTOGLM_HEARTBEAT_TIMEOUT", time.Minute),
		ContinueAsNewEvents: e.int("AUTOGLM_CONTINUE_AS_NEW_EVENTS", 0),
		NodeStartTimeout:    e.duration("AUTOGLM_NODE_START_TIMEOUT", 10*time.Minute),
		Outage: Outage{
			After:    e.int("AUTOGLM_OUTAGE_AFTER", 0),
			ProbeMin: e.duration("AUTOGLM_OUTAGE_PROBE_MIN", time.Second),
			ProbeMax: e.duration("AUTOGLM_OUTAGE_PROBE_MAX", 15*time.Second),
			HandBack: e.duration("AUTOGLM_OUTAGE_HAND_BACK", 5*time.Minute),
		},
		HealthAddr:     e.str("AUTOGLM_HEALTH_ADDR", ""),
		HeapProfile:    e.str("AUTOGLM_HEAP_PROFILE", ""),
		CPUProfile:     e.str("AUTOGLM_CPU_PROFILE", ""),
		LogFormat:      e.str("AUTOGLM_LOG_FORMAT", "text"),
		LogLevel:       e.str("AUTOGLM_LOG_LEVEL", "info"),
		AssertionKeys:  e.secret("AUTOGLM_ASSERTION_PUBLIC_KEYS"),
		BreakGlassKeys: e.secret("AUTOGLM_BREAK_GLASS_PUBLIC_KEYS"),
		Deployment:     e.str("AUTOGLM_DEPLOYMENT", DefaultDeployment),
		BuildID:        e.str("AUTOGLM_BUILD_ID", ""),
		Promote:        e.str("AUTOGLM_PROMOTE", PromoteIfNone),
		Role:           e.str("AUTOGLM_WORKER_ROLE", RoleAll),
		CacheDir:       e.str("AUTOGLM_CACHE_DIR", ""),
		LoRAAdapters:   e.str("AUTOGLM_LORA_ADAPTERS", llm.LoRANone),
		Trainer: Trainer{
			Command:     strings.Fields(e.str("AUTOGLM_TRAINER_COMMAND", "")),
			Dir:         e.str("AUTOGLM_TRAINER_DIR", filepath.Join(os.TempDir(), "autoglm-training")),
			Interval:    e.duration("AUTOGLM_TRAINER_INTERVAL", 10*time.Minute),
			SaveSteps:   e.int("AUTOGLM_TRAINER_SAVE_STEPS", 500),
			MaxKeep:     e.int("AUTOGLM_TRAINER_MAX_KEEP", 2),
			StopTimeout: e.duration("AUTOGLM_TRAINER_STOP_TIMEOUT", 5*time.Minute),
		},
	}
	defSlots := 0
	if len(c.Trainer.Command) > 0 {
		defSlots = 1
	}
	c.Trainer.Slots = e.int("AUTOGLM_TRAINING_SLOTS", defSlots)
	c.LLM.MaxIdleConnsPerHost = c.Concurrency
	if e.err == nil {
		e.err = c.check()
	}
	return c, e.err
}

// DefaultDeployment is the Worker Deployment name of the control plane.
const DefaultDeployment = "autoglm-control"

// The values of AUTOGLM_PROMOTE.
const (
	PromoteAlways = "always"
	PromoteIfNone = "if-none"
	PromoteNever  = "never"
)

// The values of AUTOGLM_WORKER_ROLE.
const (
	RoleAll     = "all"
	RoleControl = "control"
	RoleNode    = "node"
)

// Polls tells whether a process of this role runs the control plane
// (control) and a node (node).
func (c Config) Polls() (control, node bool) {
	return c.Role != RoleNode, c.Role != RoleControl
}

// Outage holds the thresholds that tell a model server down as a whole
// from a bad item (see internal/batch/health.go).
type Outage struct {
	// After is how many requests in a row must fail without an answer
	// (connection refused, reset, timeout) or with a 5xx before the
	// server is held to be down; 0 picks the concurrency, between 3 and 8.
	After int
	// ProbeMin and ProbeMax bound the wait between two probes of a server
	// that is down; it doubles from ProbeMin.
	ProbeMin, ProbeMax time.Duration
	// HandBack is how long a batch holds for its node's model server
	// before it hands the work back to dispatch, for another node serving
	// the model; 0 holds for as long as the outage lasts.
	HandBack time.Duration
}

// minContinueAsNewEvents keeps a run from continuing as new at once, run
// after run: a fresh run's history is a dozen events.
const minContinueAsNewEvents = 30

func (c Config) check() error {
	switch {
	case c.ContinueAsNewEvents != 0 && c.ContinueAsNewEvents < minContinueAsNewEvents:
		return fmt.Errorf("config: AUTOGLM_CONTINUE_AS_NEW_EVENTS=%d: 0 or at least %d", c.ContinueAsNewEvents, minContinueAsNewEvents)
	case c.NodeStartTimeout <= 0:
		return fmt.Errorf("config: AUTOGLM_NODE_START_TIMEOUT=%s: want more than 0", c.NodeStartTimeout)
	case c.Outage.After < 0:
		return fmt.Errorf("config: AUTOGLM_OUTAGE_AFTER=%d: 0 or more", c.Outage.After)
	case c.Outage.ProbeMin <= 0 || c.Outage.ProbeMax < c.Outage.ProbeMin:
		return fmt.Errorf("config: AUTOGLM_OUTAGE_PROBE_MIN=%s, AUTOGLM_OUTAGE_PROBE_MAX=%s: want 0 < min <= max", c.Outage.ProbeMin, c.Outage.ProbeMax)
	case c.Outage.HandBack < 0:
		return fmt.Errorf("config: AUTOGLM_OUTAGE_HAND_BACK=%s: 0 or more", c.Outage.HandBack)
	case c.Promote != PromoteAlways && c.Promote != PromoteIfNone && c.Promote != PromoteNever:
		return fmt.Errorf("config: AUTOGLM_PROMOTE=%q: want %s, %s or %s", c.Promote, PromoteAlways, PromoteIfNone, PromoteNever)
	case c.Trainer.Slots < 0:
		return fmt.Errorf("config: AUTOGLM_TRAINING_SLOTS=%d: 0 or more", c.Trainer.Slots)
	case c.Trainer.Slots > 0 && len(c.Trainer.Command) == 0:
		return fmt.Errorf("config: AUTOGLM_TRAINING_SLOTS=%d needs AUTOGLM_TRAINER_COMMAND: a node trains with its trainer", c.Trainer.Slots)
	case c.Role != RoleAll && c.Role != RoleControl && c.Role != RoleNode:
		return fmt.Errorf("config: AUTOGLM_WORKER_ROLE=%q: want %s, %s or %s", c.Role, RoleAll, RoleControl, RoleNode)
	case !slices.Contains(llm.LoRAAPIs, c.LoRAAdapters):
		return fmt.Errorf("config: AUTOGLM_LORA_ADAPTERS=%q: want %s", c.LoRAAdapters, strings.Join(llm.LoRAAPIs, ", "))
	}
	return nil
}

// String describes the config for the start-up log, without secrets.
func (c Config) String() string {
	return fmt.Sprintf("node=%s s3=%s llm=%s policy=%q concurrency=%d", c.Node, c.S3, c.LLM.BaseURL, c.PolicyFile, c.Concurrency)
}

// TemporalOptions are the client options from the SDK's envconfig, with
// logger as the SDK's logger.
func TemporalOptions(logger log.Logger) (client.Options, error) {
	opts, err := envconfig.LoadDefaultClientOptions()
	if err != nil {
		return opts, fmt.Errorf("config: temporal client: %w", err)
	}
	if opts.HostPort == "" {
		opts.HostPort = client.DefaultHostPort
	}
	opts.Logger = logger
	if err := withCompression(&opts); err != nil {
		return opts, err
	}
	if err := withCodec(&opts); err != nil {
		return opts, err
	}
	return opts, nil
}

// withCompression sets the gRPC compression to Temporal from
// AUTOGLM_TEMPORAL_COMPRESSION: gzip, none, or auto (the default): none
// when Temporal is on a loopback address, where gzip only spends CPU on
// both ends (measured: the server bench's share of it), gzip elsewhere.
func withCompression(opts *client.Options) error {
	switch v := strings.ToLower(os.Getenv("AUTOGLM_TEMPORAL_COMPRESSION")); v {
	case "", "auto":
		if !loopback(opts.HostPort) {
			return nil
		}
	case "gzip":
		opts.ConnectionOptions.GrpcCompression = &client.GrpcCompressionGzip{}
		return nil
	case "none":
	default:
		return fmt.Errorf("config: AUTOGLM_TEMPORAL_COMPRESSION=%q: want gzip, none or auto", v)
	}
	opts.ConnectionOptions.GrpcCompression = &client.GrpcCompressionNone{}
	return nil
}

func loopback(hostPort string) bool {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		host = hostPort
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// env reads variables and keeps the first error.
type env struct{ err error }

func (e *env) str(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

// secret reads KEY, or the file that KEY_FILE names (as Kubernetes and
// Docker secrets are mounted).
func (e *env) secret(key string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	path := os.Getenv(key + "_FILE")
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("config: %s_FILE: %w", key, err)
	}
	return strings.TrimSpace(string(b))
}

func (e *env) int(key string, def int) int {
	v := e.str(key, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("config: %s=%q is not a whole number", key, v)
	}
	return n
}

func (e *env) bool(key string, def bool) bool {
	v := e.str(key, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("config: %s=%q is not true or false", key, v)
	}
	return b
}

func (e *env) duration(key string, def time.Duration) time.Duration {
	v := e.str(key, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("config: %s=%q is not a duration like 30s", key, v)
	}
	return d
}

func (e *env) list(key string) []string {
	var out []string
	for _, s := range strings.Split(e.str(key, ""), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
