package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// The key layout is <category>/<hash>/<tenant>/<task-id>/<name>. The tenant
// hash (first 2 hex of sha256(tenant)) spreads tenants over 256 prefixes,
// which S3 scales per prefix; a task's objects stay together under one
// prefix per category, so a task is listed or expired with one prefix.

// Limits of a name within a task.
const (
	MaxNameLen      = 200 // bytes, after NFC normalization
	MaxNameSegments = 3   // e.g. checkpoints/000042/metadata.json
)

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// CheckID checks a tenant or task ID: [a-z0-9][a-z0-9._-]{0,62} and no
// "..". These go into keys unescaped, so they must not hold a slash.
func CheckID(what, id string) error {
	if !idPattern.MatchString(id) || strings.Contains(id, "..") {
		return task.Errorf(task.InvalidInput, "storage: %s %q must match [a-z0-9][a-z0-9._-]{0,62} without \"..\"", what, id)
	}
	return nil
}

// TenantHash is the folder between category and tenant in every key: the
// first 2 hex of sha256(tenant).
func TenantHash(tenant string) string {
	sum := sha256.Sum256([]byte(tenant))
	return hex.EncodeToString(sum[:1])
}

// Key is the object key of name in a task's folder of category c. name goes
// through SafeName; a bad tenant, task ID, category or name is an error
// matching task.ErrInvalidInput.
func Key(c Category, tenant, taskID, name string) (string, error) {
	if !c.Valid() {
		return "", task.Errorf(task.InvalidInput, "storage: unknown category %q", c)
	}
	if err := CheckID("tenant", tenant); err != nil {
		return "", err
	}
	if err := CheckID("task id", taskID); err != nil {
		return "", err
	}
	safe, err := SafeName(name)
	if err != nil {
		return "", err
	}
	return TaskPrefix(c, tenant, taskID) + safe, nil
}

// TaskPrefix is the folder (ending in "/") that holds a task's objects of
// category c. Callers pass a validated tenant and task ID (as Key checks
// them); for an invalid one the prefix is under "invalid/", where Key never
// puts anything, so listing it cannot reach another task's objects.
func TaskPrefix(c Category, tenant, taskID string) string {
	if !c.Valid() || CheckID("tenant", tenant) != nil || CheckID("task id", taskID) != nil {
		return "invalid/"
	}
	return string(c) + "/" + TenantHash(tenant) + "/" + tenant + "/" + taskID + "/"
}

// SafeName checks a name within a task's folder and returns it in Unicode
// NFC form (so "é" typed on macOS and on Linux is one key). A name is one to
// MaxNameSegments segments joined by "/", e.g. "output.jsonl" or
// "parts/output-00001.jsonl", at most MaxNameLen bytes of valid UTF-8.
// Refused, as task.ErrInvalidInput: an empty name or segment (so no leading,
// trailing or double "/"), "." and ".." segments, backslashes, control
// characters (NUL included) and bidirectional overrides, which can make a
// name display as another.
func SafeName(name string) (string, error) {
	bad := func(why string) (string, error) {
		return "", task.Errorf(task.InvalidInput, "storage: name %q: %s", name, why)
	}
	if name == "" {
		return bad("empty")
	}
	if !utf8.ValidString(name) {
		return bad("not valid UTF-8")
	}
	name = norm.NFC.String(name)
	if len(name) > MaxNameLen {
		return bad("longer than 200 bytes")
	}
	for _, r := range name {
		switch {
		case r == '\\':
			return bad(`holds a backslash`)
		case unicode.IsControl(r):
			return bad("holds a control character")
		case r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069' || r == '\u200e' || r == '\u200f':
			return bad("holds a bidirectional control character")
		}
	}
	segs := strings.Split(name, "/")
	if len(segs) > MaxNameSegments {
		return bad("more than 3 segments")
	}
	for _, s := range segs {
		switch s {
		case "":
			return bad("empty segment (leading, trailing or double slash)")
		case ".", "..":
			return bad(`"." or ".." segment`)
		}
	}
	return name, nil
}

// CheckOwnKey refuses a key that is not an object of the given task: any
// category, but the task's own <category>/<hash>/<tenant>/<task-id>/
// prefix and a safe name. A worker handed a key by a caller checks it
// before reading, so that nobody can point a task at another tenant's
// (or another task's) objects. A refusal is PermissionDenied.
func CheckOwnKey(tenant, taskID, key string) error {
	c := CategoryOf(key)
	prefix := TaskPrefix(c, tenant, taskID)
	name, ok := strings.CutPrefix(key, prefix)
	if prefix == "invalid/" || !ok {
		return task.Errorf(task.PermissionDenied, "storage: %s is not an object of task %s of tenant %s: a task reads only under its own prefix", key, taskID, tenant)
	}
	if safe, err := SafeName(name); err != nil || safe != name {
		return task.Errorf(task.PermissionDenied, "storage: %s is not a canonical key of task %s of tenant %s", key, taskID, tenant)
	}
	return nil
}
