// Package fleetclient is what the fleet verbs of the CLI do, as a library
// that takes the authenticated user: the CLI and the server call the same
// functions, and each checks the role table before it acts.
package fleetclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Client runs fleet operations.
type Client struct {
	Temporal client.Client
	Store    storage.Store
	Policy   *authz.Source
	// Signer vouches for the actor of access decisions (the API server's
	// key, or an operator's break-glass key); without it the workflow
	// refuses them.
	Signer *assertion.Signer
}

func (c *Client) checkFleet(user string) error {
	p, err := c.Policy.Current()
	if err != nil {
		return err
	}
	return p.CheckFleet(user)
}

// Exec runs a fleet command as user (a fleet operator) and waits for
// its per-node result. cmd.Actor is set to user whatever it held.
func (c *Client) Exec(ctx context.Context, user string, cmd task.FleetCommand) (task.FleetResult, error) {
	if err := c.checkFleet(user); err != nil {
		return task.FleetResult{}, err
	}
	cmd.Actor = user
	if cmd.ID == "" {
		cmd.ID = newID()
	}
	if err := cmd.Validate(); err != nil {
		return task.FleetResult{}, err
	}
	run, err := c.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: task.FleetWorkflowID(cmd.ID), TaskQueue: task.TaskQueue,
		StaticSummary: fmt.Sprintf("%s by %s on %s", cmd.Action, user, cmd.Selector),
	}, task.FleetCommandWorkflowType, cmd)
	if err != nil {
		return task.FleetResult{}, err
	}
	var res task.FleetResult
	err = run.Get(ctx, &res)
	return res, err
}

func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
