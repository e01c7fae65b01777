package storage

import (
	"errors"
	"strings"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
)

// testStore is one real S3 implementation the contract suite runs on.
// Its feature table is in the README; lacks holds the cases
// it cannot pass, each with the feature it lacks, what the code does
// instead, and a check of that.
type testStore struct {
	name  string
	stack *devstack.Stack
	// statBeforeReplace opens the drivers with Config.StatBeforeReplace.
	statBeforeReplace bool
	// abortMultipart: the store keeps a lifecycle rule that aborts
	// incomplete multipart uploads (the pinned MinIO refuses it).
	abortMultipart bool
	lacks          map[string]lack
}

type lack struct {
	feature, instead string
	check            func(t *testing.T, s Store)
}

func testStores() []testStore {
	return []testStore{
		{name: "minio", stack: stack},
		{
			name: "versitygw", stack: versity,
			// If-Match is checked against the ETag of a deleted object's
			// last version, so a Replace of a deleted key succeeds.
			statBeforeReplace: true,
			lacks: map[string]lack{
				"RetentionRulesReadBack": {
					feature: "bucket lifecycle configuration (501 NotImplemented)",
					instead: "ApplyRetention fails with the store's NotImplemented, the worker warns and runs on, `autoglm setup` reports the rules missing",
					check:   refusesLifecycle,
				},
			},
		},
	}
}

func refusesLifecycle(t *testing.T, s Store) {
	t.Helper()
	err := ApplyRetention(testContext(t), s, DefaultRetention())
	if err == nil || !strings.Contains(err.Error(), "NotImplemented") && !strings.Contains(err.Error(), "not implemented") {
		t.Fatalf("ApplyRetention on a store without lifecycle: %v; want a clear NotImplemented error", err)
	}
}

// Why versitygw runs with StatBeforeReplace: on a versioned bucket,
// If-Match with the ETag of a deleted object succeeds and resurrects the object, so a
// writer that lost to a delete would not know. With it, the write is
// refused as a Conflict, like on MinIO.
func TestVersityIfMatchAfterDeleteNeedsStatBeforeReplace(t *testing.T) {
	if versity == nil {
		t.Skip("-short: no versitygw")
	}
	current = testStores()[1]
	defer func() { current = testStores()[0] }()
	for _, guarded := range []bool{false, true} {
		current.statBeforeReplace = guarded
		s := openTestStore(t, DriverMinIO, testBucket, 0)
		if err := EnsureBucket(testContext(t), s); err != nil {
			t.Fatal(err)
		}
		key := "ifmatch-after-delete/" + map[bool]string{false: "plain", true: "guarded"}[guarded]
		v1 := create(t, s, key, "v1")
		if err := s.Delete(testContext(t), key); err != nil {
			t.Fatal(err)
		}
		_, err := s.Replace(testContext(t), key, v1.ETag, strings.NewReader("v2"), 2, PutOptions{})
		switch {
		case guarded && !errors.Is(err, ErrConflict):
			t.Errorf("with StatBeforeReplace: %v; want ErrConflict", err)
		case !guarded && err != nil:
			t.Logf("versitygw now refuses If-Match after a delete (%v): StatBeforeReplace may be dropped for it", err)
		}
	}
}
