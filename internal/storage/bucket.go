package storage

import (
	"context"
	"fmt"
)

// EnsureBucket creates s's bucket if it does not exist and turns on
// versioning, so that Replace and Delete keep the history (see Versions).
// It needs the rights to create and configure buckets, which a worker
// usually lacks: run it from setup (`make demo`, devstack, tests), not on
// every start. Both drivers support it.
func EnsureBucket(ctx context.Context, s Store) error {
	b, ok := s.(interface{ ensureBucket(context.Context) error })
	if !ok {
		return fmt.Errorf("storage: %T cannot create buckets", s)
	}
	return b.ensureBucket(ctx)
}
