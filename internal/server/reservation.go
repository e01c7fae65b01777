package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// A reservation ties a task ID that does not exist yet to the user who
// attaches files to it before submitting it: only that user may attach
// more or submit under the ID, and only until it expires. Without it, any
// submitter of the tenant could attach files to an ID a colleague is
// about to use, and the colleague's task would carry them. An expired
// reservation still holds the ID: its files are someone's, and task IDs
// are never reused.
const (
	reservationName = "reservation.json"
	// ReservationTTL is how long a reservation lets its user submit.
	ReservationTTL = 24 * time.Hour
)

// reservation is the record kept beside the attachments.
type reservation struct {
	Submitter string    `json:"submitter"`
	ExpiresAt time.Time `json:"expires_at"`
}

// errUnavailable is the answer for a task ID the caller may not use and
// may not learn about: the same whether another tenant's task has it or
// another user reserved it, with nothing of its state.
func errUnavailable(id string) error {
	return task.Errorf(task.Conflict, "task ID %s is not available; choose another --id, or leave it out for a new one", id)
}

func (s *Server) readReservation(ctx context.Context, tenant, id string) (reservation, bool, error) {
	key, err := storage.Key(storage.Data, tenant, id, reservationName)
	if err != nil {
		return reservation{}, false, err
	}
	rc, _, err := s.Tasks.Store.Get(ctx, key)
	if errors.Is(err, task.ErrNotFound) {
		return reservation{}, false, nil
	}
	if err != nil {
		return reservation{}, false, err
	}
	defer rc.Close()
	var r reservation
	if err := json.NewDecoder(io.LimitReader(rc, 4<<10)).Decode(&r); err != nil {
		return reservation{}, false, err
	}
	return r, true, nil
}

// checkReservation says whether user may use task ID id of tenant, which
// has no task: yes if nobody reserved it, or user did and it has not
// expired.
func (s *Server) checkReservation(ctx context.Context, tenant, id, user string) error {
	r, ok, err := s.readReservation(ctx, tenant, id)
	switch {
	case err != nil:
		return err
	case !ok:
		return nil
	case r.Submitter != user:
		return errUnavailable(id)
	case time.Now().After(r.ExpiresAt):
		return task.Errorf(task.Conflict, "your reservation of task ID %s expired at %s; attach the files again under a new ID", id, r.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

// reserve ties task ID id of tenant to user, or checks that it already
// is: the first attachment creates the record (create-only, so of two
// users racing for an ID exactly one wins), later ones find it.
func (s *Server) reserve(ctx context.Context, tenant, id, user string) error {
	key, err := storage.Key(storage.Data, tenant, id, reservationName)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(reservation{Submitter: user, ExpiresAt: time.Now().Add(ReservationTTL).UTC()})
	_, err = s.Tasks.Store.Create(ctx, key, bytes.NewReader(b), int64(len(b)), storage.PutOptions{ContentType: "application/json"})
	if err == nil {
		return nil
	}
	if !errors.Is(err, task.ErrConflict) {
		return err
	}
	return s.checkReservation(ctx, tenant, id, user)
}
