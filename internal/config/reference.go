package config

import (
	"fmt"
	"strings"
)

// Var is one environment variable autoglm-flow reads.
type Var struct {
	Name    string
	Default string
	// Secret variables may also be given as a file named by Name_FILE,
	// and are never logged.
	Secret bool
	Doc    string
}

// Reference lists every variable the worker, the server and the CLI read.
// TestReferenceMatchesTheCode keeps it equal to the names in the code;
// docs/configuration.md is rendered from it (Markdown).
var Reference = []Var{
	{Name: "TEMPORAL_ADDRESS", Default: "127.0.0.1:7233", Doc: "the Temporal frontend; with TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE read by the SDK's envconfig"},
	{Name: "TEMPORAL_NAMESPACE", Default: "default", Doc: "the Temporal namespace"},
	{Name: "AUTOGLM_TEMPORAL_COMPRESSION", Default: "auto", Doc: "gRPC compression to Temporal: gzip, none, or auto (none on a loopback address, where gzip only costs CPU; gzip elsewhere)"},
	{Name: "AUTOGLM_S3_DRIVER", Default: "minio", Doc: "minio (minio-go) or aws (aws-sdk-go-v2)"},
	{Name: "AUTOGLM_S3_ENDPOINT", Default: "127.0.0.1:9000", Doc: "the S3 store, host:port or URL"},
	{Name: "AUTOGLM_S3_BUCKET", Default: DefaultBucket, Doc: "the bucket"},
	{Name: "AUTOGLM_S3_REGION", Default: "us-east-1", Doc: "the bucket's region"},
	{Name: "AUTOGLM_S3_ACCESS_KEY", Secret: true, Doc: "static S3 credentials (the worker's own, least-privilege account); with driver aws and none set, the AWS chain"},
	{Name: "AUTOGLM_S3_SECRET_KEY", Secret: true, Doc: "see AUTOGLM_S3_ACCESS_KEY"},
	{Name: "AUTOGLM_S3_INSECURE", Default: "true", Doc: "plain HTTP to the endpoint"},
	{Name: "AUTOGLM_S3_STAT_BEFORE_REPLACE", Default: "false", Doc: "read the current ETag before an If-Match write: needed on versitygw, whose If-Match misses deletes on a versioned bucket"},
	{Name: "AUTOGLM_LLM_BASE_URL", Doc: "the model server's API root, e.g. http://gpu1:8000/v1"},
	{Name: "AUTOGLM_LLM_API_KEY", Secret: true, Doc: "sent as Authorization: Bearer"},
	{Name: "AUTOGLM_LLM_TIMEOUT", Default: "60s", Doc: "per request"},
	{Name: "AUTOGLM_NODE", Default: DefaultNode, Doc: "this worker's node name; its queue is autoglm-node-<name>"},
	{Name: "AUTOGLM_MODELS", Default: "asked of the model server", Doc: "the models this node serves, comma-separated"},
	{Name: "AUTOGLM_CONCURRENCY", Default: "16", Doc: "requests in flight per piece"},
	{Name: "AUTOGLM_MAX_PIECES", Default: "4", Doc: "pieces a queue's pollers run at once (the node queue and each model queue have their own slots)"},
	{Name: "AUTOGLM_MAX_BATCHES", Default: "unset", Doc: "deprecated: read as AUTOGLM_MAX_PIECES when that is unset"},
	{Name: "AUTOGLM_PIECE_REQUESTS", Default: "50000", Doc: "batches larger than this are cut into pieces of this many requests that run in parallel"},
	{Name: "AUTOGLM_SHARD_REQUESTS", Default: "unset", Doc: "deprecated: read as AUTOGLM_PIECE_REQUESTS when that is unset"},
	{Name: "AUTOGLM_CHECKPOINT_INTERVAL", Default: "30s", Doc: "longest time between two checkpoints"},
	{Name: "AUTOGLM_HEARTBEAT_TIMEOUT", Default: "1m", Doc: "how soon a piece whose worker died is retried"},
	{Name: "AUTOGLM_OUTAGE_AFTER", Default: "the concurrency, 3 to 8", Doc: "requests in a row that fail without an answer or with a 5xx before the model server is held to be down: the piece stops sending and probes, and no item fails for it"},
	{Name: "AUTOGLM_OUTAGE_PROBE_MIN", Default: "1s", Doc: "the first wait between two probes of a model server that is down; it doubles up to AUTOGLM_OUTAGE_PROBE_MAX"},
	{Name: "AUTOGLM_OUTAGE_PROBE_MAX", Default: "15s", Doc: "the longest wait between two probes"},
	{Name: "AUTOGLM_OUTAGE_HAND_BACK", Default: "5m", Doc: "after holding this long for its model server, a piece checkpoints and goes back to dispatch, for another node serving the model (0: hold as long as the outage lasts)"},
	{Name: "AUTOGLM_NODE_START_TIMEOUT", Default: "10m", Doc: "how long a node's queue may hold a piece of inference before the task dispatches it again, avoiding that node (a node that died)"},
	{Name: "AUTOGLM_CONTINUE_AS_NEW_EVENTS", Default: "0 (the server suggests)", Doc: "a task's approval wait, pause and re-dispatch loops continue as new once a run's history has this many events (0, or at least 30)"},
	{Name: "AUTOGLM_POLICY_FILE", Default: "embedded default", Doc: "the tenant policy (YAML)"},
	{Name: "AUTOGLM_HEALTH_ADDR", Default: "off", Doc: "serves /healthz and /metrics (Prometheus: SDK and app metrics)"},
	{Name: "AUTOGLM_HEAP_PROFILE", Default: "off", Doc: "worker: a file where it keeps a heap profile (pprof) taken at its peak heap, to see what holds memory"},
	{Name: "AUTOGLM_CPU_PROFILE", Default: "off", Doc: "worker: a file where it writes a CPU profile (pprof) of its whole run, written when it stops, to see where the time goes"},
	{Name: "AUTOGLM_LOG_FORMAT", Default: "text", Doc: "text or json"},
	{Name: "AUTOGLM_LOG_LEVEL", Default: "info", Doc: "logrus level, also the SDK's"},
	{Name: "AUTOGLM_CODEC_KEYS", Secret: true, Doc: "turns payload encryption on: AES-256-GCM keys as id:base64key,... (workers, server and CLI share them)"},
	{Name: "AUTOGLM_CODEC_KEY_ID", Default: "the first key", Doc: "the key new payloads are sealed with; older ids still open what they sealed"},
	{Name: "AUTOGLM_RETENTION", Default: "on", Doc: "off leaves the bucket's lifecycle rules alone (stores without lifecycle)"},
	{Name: "AUTOGLM_RETENTION_LOG_DAYS", Default: "90", Doc: "task logs expire after (0 keeps them)"},
	{Name: "AUTOGLM_RETENTION_CHECKPOINT_DAYS", Default: "30", Doc: "checkpoints expire after (0 keeps them)"},
	{Name: "AUTOGLM_LOG_ARCHIVE_EVERY", Default: "unset", Doc: "the worker installs the log archive schedule with this interval"},
	{Name: "AUTOGLM_LOG_ARCHIVE_OLDER_THAN", Default: "168h", Doc: "the schedule archives logs older than this"},
	{Name: "AUTOGLM_SERVER_ADDR", Default: "127.0.0.1:8080", Doc: "where `autoglm server` listens (or --addr)"},
	{Name: "AUTOGLM_SERVER_TLS_CERT", Doc: "with AUTOGLM_SERVER_TLS_KEY: the server speaks HTTPS (else put it behind a TLS proxy)"},
	{Name: "AUTOGLM_SERVER_TLS_KEY", Secret: false, Doc: "see AUTOGLM_SERVER_TLS_CERT (a file path)"},
	{Name: "AUTOGLM_ASSERTION_PRIVATE_KEY", Secret: true, Doc: "server only: the ed25519 key (base64 seed) that signs actor assertions; `autoglm keys assertion` makes one"},
	{Name: "AUTOGLM_TRAINER_COMMAND", Default: "unset (no fine-tuning)", Doc: "node: the trainer's command line, split on spaces (no shell), ${AUTOGLM_…} expanded from the job; see the README's trainer contract"},
	{Name: "AUTOGLM_TRAINER_DIR", Default: "$TMPDIR/autoglm-training", Doc: "node: the jobs' folders (training data, checkpoints) on its disk"},
	{Name: "AUTOGLM_TRAINER_INTERVAL", Default: "10m", Doc: "node: ask the trainer for a checkpoint (SIGUSR1) this long after the last (0: off)"},
	{Name: "AUTOGLM_TRAINER_SAVE_STEPS", Default: "500", Doc: "node: the trainer saves every this many steps by itself (AUTOGLM_SAVE_STEPS)"},
	{Name: "AUTOGLM_TRAINER_MAX_KEEP", Default: "2", Doc: "node: checkpoints kept in the bucket and on its disk; the trainer waits while the disk holds one more"},
	{Name: "AUTOGLM_TRAINING_SLOTS", Default: "1 with AUTOGLM_TRAINER_COMMAND, else 0", Doc: "node: fine-tuning jobs it trains at once, apart from its inference (AUTOGLM_MAX_PIECES); 0: it trains none"},
	{Name: "AUTOGLM_TRAINER_STOP_TIMEOUT", Default: "5m", Doc: "node: how long a trainer told to stop (SIGTERM) has to save before it is killed"},
	{Name: "AUTOGLM_ASSERTION_PUBLIC_KEYS", Secret: true, Doc: "workers: base64 public keys, comma-separated, whose assertions the update validators accept; with none every update is refused"},
	{Name: "AUTOGLM_WEBHOOK_HOSTS", Doc: "worker: host=address pairs, comma-separated, used for webhook hosts instead of DNS (as curl's --resolve); the addresses are still checked when dialed"},
	{Name: "AUTOGLM_SERVER_UPLOADS", Default: "32", Doc: "server: request bodies spooled to disk at once, in all; past it, 429 with Retry-After"},
	{Name: "AUTOGLM_SERVER_UPLOADS_PER_USER", Default: "4", Doc: "server: request bodies one user may have spooling at once; past it, 429"},
	{Name: "AUTOGLM_SERVER_SPOOL_BYTES", Default: "4GiB", Doc: "server: bytes of request bodies on its disk at once, in all; past it, 507 Insufficient Storage"},
	{Name: "AUTOGLM_SERVER_SPOOL_BYTES_PER_USER", Default: "1GiB", Doc: "server: bytes of one user's request bodies on its disk at once; past it, 507"},
	{Name: "AUTOGLM_SERVER_LONG_POLLS_PER_USER", Default: "64", Doc: "server: change and result long polls one user may hold open at once; past it, 429"},
	{Name: "AUTOGLM_BREAK_GLASS_PUBLIC_KEYS", Secret: true, Doc: "workers: operators' break-glass public keys, trusted like AUTOGLM_ASSERTION_PUBLIC_KEYS; all approvals one of them signs count as one person"},
	{Name: "AUTOGLM_DEPLOYMENT", Default: DefaultDeployment, Doc: "workers: the Worker Deployment of the control plane (workflows and local activities on autoglm-tasks); node queues are unversioned"},
	{Name: "AUTOGLM_BUILD_ID", Default: "the executable's sha256", Doc: "workers: this build's ID within AUTOGLM_DEPLOYMENT; tasks stay pinned to the build that started them"},
	{Name: "AUTOGLM_PROMOTE", Default: PromoteIfNone, Doc: "workers: when this build becomes the deployment's current version: always (dev), if-none (a namespace's first build), never (an operator runs `temporal worker deployment set-current-version`)"},
	{Name: "AUTOGLM_WORKER_ROLE", Default: RoleAll, Doc: "workers: all (the control plane and a node), control (workflows and local activities on autoglm-tasks, no model server), node (a GPU node: its node and model queues only)"},
	{Name: "AUTOGLM_PRESIGN_TTL", Default: "5m", Doc: "how long a presigned results URL works"},
	{Name: "AUTOGLM_OIDC_JWKS_URL", Default: "off", Doc: "the server also accepts the identity provider's JWTs, checked against this JWKS"},
	{Name: "AUTOGLM_OIDC_ISSUER", Doc: "the JWTs' exact iss (required with AUTOGLM_OIDC_JWKS_URL)"},
	{Name: "AUTOGLM_OIDC_AUDIENCE", Doc: "the JWTs' exact aud (required with AUTOGLM_OIDC_JWKS_URL)"},
	{Name: "AUTOGLM_OIDC_USER_CLAIM", Default: "sub", Doc: "the claim that names the user"},
	{Name: "AUTOGLM_UI_ORIGINS", Doc: "server: the Temporal Web UI origins (scheme://host:port, comma-separated) allowed to call its /codec endpoint"},
	{Name: "AUTOGLM_SERVER", Doc: "CLI: the API server's URL (or `autoglm login`); `direct` is the operators' break-glass path to Temporal"},
	{Name: "AUTOGLM_API_KEY", Secret: true, Doc: "CLI: the API key (or a JWT); overrides the key `autoglm login` saved"},
	{Name: "AUTOGLM_LABELS", Doc: "this node's labels, key=value,... (gpu, region), for `fleet exec --selector`"},
	{Name: "AUTOGLM_CACHE_DIR", Default: "<user cache dir>/autoglm/<node>/models", Doc: "the node's model cache"},
	{Name: "AUTOGLM_LORA_ADAPTERS", Default: "none", Doc: "node: how it loads its base models' fine-tuned models into its model server: vllm (POST /v1/load_lora_adapter; vLLM needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora), sglang (POST /load_lora_adapter), or none (it serves no fine-tuned model)"},
	{Name: "AUTOGLM_CACHE_BUDGET", Default: "unlimited", Doc: "the model cache's size budget; least recently used models are evicted past it"},
	{Name: "AUTOGLM_HF_ENDPOINT", Default: "HF_ENDPOINT, else https://huggingface.co", Doc: "the Hugging Face-style upstream of the model mirror"},
	{Name: "AUTOGLM_HF_TOKEN", Secret: true, Doc: "the upstream's token (also HF_TOKEN)"},
	{Name: "AUTOGLM_MODELS_HTTP_URL", Doc: "a plain HTTP upstream with a manifest, instead of the Hugging Face-style one"},
	{Name: "AUTOGLM_MIRROR_STAGING_DIR", Default: "the system temp folder", Doc: "where a mirror stages a file it must resume"},
	{Name: "AUTOGLM_USER", Doc: "who the CLI acts as (or --as)"},
	{Name: "AUTOGLM_TENANT", Default: "demo", Doc: "the CLI's tenant (or --tenant)"},
	{Name: "AUTOGLM_BIN_DIR", Default: "./bin", Doc: "where dev, demo and the tests find the pinned temporal, minio and versitygw"},
}

// Lookup is the reference entry of name.
func Lookup(name string) (Var, bool) {
	for _, v := range Reference {
		if v.Name == name {
			return v, true
		}
	}
	return Var{}, false
}

// Markdown renders Reference as a table.
func Markdown() string {
	var b strings.Builder
	b.WriteString("<!-- Generated from internal/config/reference.go by `go test ./internal/config -run TestReference -update`. -->\n\n")
	b.WriteString("| variable | default | what |\n|---|---|---|\n")
	for _, v := range Reference {
		name := "`" + v.Name + "`"
		if v.Secret {
			name += " (or `" + v.Name + "_FILE`)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, v.Default, v.Doc)
	}
	return b.String()
}
