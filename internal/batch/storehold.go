package batch

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/llm"
)

// ErrStoreUnavailable marks a write the store did not take because it
// could not be reached (refused, reset, a 5xx): an outage of the bucket,
// which the engine holds through, keeping its answers, as it does through
// an outage of the model server.
var ErrStoreUnavailable = errors.New("batch: the bucket is unreachable")

// holdStore runs write until the bucket takes it. While the bucket is
// out of reach the answers stay where they are (the part being sealed,
// the window of results), nothing is answered twice, and the progress
// report goes on, so the attempt is not taken for dead; new work waits
// for the window to drain, as it waits for a model server that is down.
func (r *run) holdStore(ctx context.Context, write func() error) error {
	for try := 1; ; try++ {
		err := write()
		if err == nil || !errors.Is(err, ErrStoreUnavailable) || ctx.Err() != nil {
			if err == nil && !r.storeDown.IsZero() {
				r.storeDown = time.Time{}
				r.report()
			}
			return err
		}
		if r.storeDown.IsZero() {
			r.storeDown = time.Now().UTC()
		}
		r.report()
		if !sleep(ctx, llm.Backoff(try, r.cfg.ProbeBase, r.cfg.ProbeMax, 0)) {
			return err
		}
	}
}

// reopen opens the input again, holding while the bucket is out of reach.
func (r *run) reopen(ctx context.Context) (io.ReadCloser, error) {
	for try := 1; ; try++ {
		in, err := r.Reopen(ctx)
		if err == nil || !errors.Is(err, ErrStoreUnavailable) {
			return in, err
		}
		if !sleep(ctx, llm.Backoff(try, r.cfg.ProbeBase, r.cfg.ProbeMax, 0)) {
			return nil, err
		}
	}
}
