// Package storage is the object store of autoglm-flow: outputs,
// attachments, checkpoints, logs and reports in one S3-compatible bucket.
//
// Two drivers sit behind Store: "minio" (minio-go, the default) and "aws"
// (aws-sdk-go-v2, for AWS-native credentials: profiles, SSO, IRSA). Both
// pass the same contract tests against a real MinIO.
//
// Activities run at least once, so writes say what they expect: Create
// writes only a new key (If-None-Match: *), Replace only the version the
// caller read (If-Match: ETag), and a lost race is an error matching
// ErrConflict, never a silent overwrite. Put is for content that is the same
// on every attempt (checkpoint parts).
//
// Every write streams: memory holds at most three parts (16 MiB each: two
// being sent while the next is read) whatever the size of the object, and
// the sha256 of what was written comes back in Info.SHA256. Content up to
// one part goes in one PUT; more goes as a multipart upload, whose
// precondition S3 checks when it completes. An object of unknown size may
// have up to 10,000 parts (156 GiB); a known size gets parts large enough
// to fit.
//
// Around that core: UploadFile (resumable uploads of local files),
// UpdateManifest (each task's manifest.json, merged on conflict),
// ApplyRetention (lifecycle rules per category) and ListPage.
package storage

import (
	"context"
	"io"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Store is one bucket.
type Store interface {
	// Bucket is the bucket's name.
	Bucket() string

	// Create writes key only if no object has it (If-None-Match: *). A lost
	// race or an existing key is an error matching ErrConflict. size may be
	// -1 when unknown.
	//
	// The winner of a race can be this write's own earlier attempt (an
	// activity retried after a crash, or a client retry after a lost
	// response): a caller that must tell compares Stat's SHA256 with its own.
	Create(ctx context.Context, key string, r io.Reader, size int64, o PutOptions) (Info, error)
	// Replace writes key only if its current ETag is etag (If-Match).
	// Otherwise, and when the key no longer exists, it is an error matching
	// ErrConflict.
	Replace(ctx context.Context, key, etag string, r io.Reader, size int64, o PutOptions) (Info, error)
	// Put writes key unconditionally: for idempotent writes of
	// deterministic content, such as sealed checkpoint parts.
	Put(ctx context.Context, key string, r io.Reader, size int64, o PutOptions) (Info, error)

	// Get streams key; ErrNotFound if absent. The caller closes the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, Info, error)
	// GetRange streams key from byte offset on, to resume a download.
	// Info.Size is the size of the whole object; an offset equal to it
	// gives an empty reader.
	GetRange(ctx context.Context, key string, offset int64) (io.ReadCloser, Info, error)
	// Stat is the Info of key without its content; ErrNotFound if absent.
	Stat(ctx context.Context, key string) (Info, error)
	// List returns the objects under prefix, at any depth, sorted by key.
	// Listed Infos have no ContentType, VersionID, SHA256 or Metadata.
	List(ctx context.Context, prefix string) ([]Info, error)
	// Versions returns the stored versions of key, newest first, without
	// delete markers. It needs a versioned bucket (EnsureBucket); in an
	// unversioned one there is at most one version, with VersionID "null"
	// or empty.
	Versions(ctx context.Context, key string) ([]Info, error)
	// Delete removes key. Deleting a missing key is not an error. In a
	// versioned bucket the old versions stay (behind a delete marker).
	Delete(ctx context.Context, key string) error
}

// PutOptions describe an object being written.
type PutOptions struct {
	// ContentType is sniffed from the content when empty (see Sniff).
	ContentType string
	// Metadata is stored as user metadata (x-amz-meta-*). Keys are
	// lower-cased by S3; MetaSHA256 is reserved.
	Metadata map[string]string
	// Tags are stored as object tags, which lifecycle rules can select
	// (see Retention): the key's category alone cannot tell a log archive
	// from an uploaded zip.
	Tags map[string]string
	// Stream sends a body of known size past 1 MiB as it is read, in
	// parts of 5 MiB sent one at a time, holding none in memory: for a
	// body that is itself a stream from the store (a merge), where memory
	// matters more than sending parts in parallel. Like every multipart
	// write, its sha256 comes back in Info, not in the object's metadata
	// (unless SHA256 declares it).
	Stream bool
	// PartSize, if set, is the part size of a multipart write (at least
	// S3's 5 MiB) instead of the smallest S3 allows: fewer, larger parts
	// cost the store less per byte (each part is a request and a file of
	// its own), and hold partsInFlight+1 of this size in memory.
	PartSize int64
	// SHA256, if set, is the hex sha256 the content must have. The write
	// hashes exactly the bytes it sends and checks them against it before
	// the single PUT goes or the multipart upload completes: content that
	// does not match is never stored (the error matches
	// ErrSHA256Mismatch), whenever its reader reports EOF. The object then
	// carries the digest as MetaSHA256, multipart or not, so Stat tells a
	// verified object.
	SHA256 string
}

// MetaSHA256 is the user-metadata key that holds the sha256 of an object
// written in one part (≤ 16 MiB), uploaded from a file (UploadFile hashes
// the file first), or written with a declared PutOptions.SHA256, so that
// Stat and Get can return it. Any other streamed multipart object's digest
// is known only once its last part is read, after its metadata was sent,
// so it has none: keep the digest that the write returned (the task's
// manifest does).
const MetaSHA256 = "sha256"

// Info describes an object.
type Info struct {
	Key          string
	Size         int64
	ETag         string // without quotes
	VersionID    string // empty in an unversioned bucket
	ContentType  string
	LastModified time.Time // zero in what a write returns
	// SHA256 is the hex digest of the content. Every write returns it,
	// computed while the bytes went out; Get and Stat return it only when
	// it was stored as metadata (MetaSHA256); List never does.
	SHA256 string
	// Metadata is the user metadata, keys lower-case (Get and Stat only).
	Metadata map[string]string
}

// The errors a Store returns are the project's typed errors, so that a
// caller tests them with errors.Is against either name, and the activity
// layer turns them into Temporal application errors of a stable type.
var (
	// ErrConflict: Create found the key, or Replace found another ETag.
	ErrConflict = task.ErrConflict
	// ErrNotFound: the key (or the bucket) does not exist.
	ErrNotFound = task.ErrNotFound
)
