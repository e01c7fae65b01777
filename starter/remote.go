package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// remote is the API server's client when one is configured
// (AUTOGLM_SERVER, or `autoglm login`), else nil: then the CLI talks to
// Temporal and the bucket itself, the operators' break-glass path.
func (c *cli) remote(cmd *cobra.Command) (*apiclient.Client, error) {
	if c.api != nil {
		return c.api, nil
	}
	api, err := apiclient.FromEnv()
	if err != nil || api == nil {
		return nil, err
	}
	if f := cmd.Flags().Lookup("as"); f != nil && f.Changed {
		return nil, fmt.Errorf("%w: --as does not apply through the server: you are who your API key says (see `autoglm whoami`)", errUsage)
	}
	c.api = api
	return api, nil
}

func (c *cli) loginCmd() *cobra.Command {
	var srv, keyFile string
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Keep your API key for the autoglm server in your config folder (mode 0600)",
		Long: `login checks an API key against the server and keeps both in
<config dir>/autoglm/credentials.json, readable by you only. The key is read
from --key-file, from AUTOGLM_API_KEY, or from standard input (never from a
flag, which would leave it in your shell history).`,
		Example: `  autoglm login --server https://autoglm.example.com
  autoglm login --server http://127.0.0.1:8080 --key-file ~/alice.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if srv == "" {
				return fmt.Errorf("%w: give the server with --server URL or AUTOGLM_SERVER", errUsage)
			}
			key := os.Getenv("AUTOGLM_API_KEY")
			if keyFile != "" {
				b, err := os.ReadFile(keyFile)
				if err != nil {
					return err
				}
				key = string(b)
			}
			if key == "" {
				if term.IsTerminal(int(os.Stdin.Fd())) {
					fmt.Fprint(os.Stderr, "API key: ")
					b, err := term.ReadPassword(int(os.Stdin.Fd()))
					fmt.Fprintln(os.Stderr)
					if err != nil {
						return err
					}
					key = string(b)
				} else {
					line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
					key = line
				}
			}
			key = strings.TrimSpace(key)
			api := apiclient.New(srv, key)
			who, err := api.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			path, err := apiclient.CredentialsPath()
			if err != nil {
				return err
			}
			if err := apiclient.SaveCredentials(path, apiclient.Credentials{Server: api.BaseURL, Key: key}); err != nil {
				return err
			}
			return c.print(map[string]any{"server": api.BaseURL, "user": who.User, "tenant": who.Tenant, "credentials": path},
				fmt.Sprintf("logged in to %s as %s (tenant %s); the key is in %s", api.BaseURL, who.User, who.Tenant, path))
		},
	}
	cmd.Flags().StringVar(&srv, "server", os.Getenv("AUTOGLM_SERVER"), "the server's URL ($AUTOGLM_SERVER)")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "read the key from this file")
	return cmd
}

func (c *cli) whoamiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show who your API key authenticates, and your roles per tenant",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.remote(cmd)
			if err != nil {
				return err
			}
			if api == nil {
				return fmt.Errorf("%w: no server: set AUTOGLM_SERVER or run `autoglm login`", errUsage)
			}
			who, err := api.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			var roles []string
			for t, rs := range who.Tenants {
				roles = append(roles, fmt.Sprintf("%s %v", t, rs))
			}
			return c.print(who, fmt.Sprintf("%s (key's tenant %s); roles: %s", who.User, who.Tenant, strings.Join(roles, ", ")))
		},
	}
}

// tenantFlag is --tenant if the user gave it, else "" (the key's tenant).
func tenantFlag(cmd *cobra.Command, v string) string {
	if f := cmd.Flags().Lookup("tenant"); f != nil && f.Changed {
		return v
	}
	if os.Getenv("AUTOGLM_TENANT") != "" {
		return v
	}
	return ""
}

func (c *cli) remoteSubmit(cmd *cobra.Command, api *apiclient.Client, r taskclient.SubmitRequest, wait bool) error {
	r.Tenant = tenantFlag(cmd, c.tenant)
	sub, err := api.Submit(cmd.Context(), r, nil)
	if err != nil {
		return err
	}
	if !wait {
		return c.print(sub, fmt.Sprintf("submitted task %s (%s, model %s); follow it with: autoglm watch %s", sub.ID, sub.Kind, sub.Model, sub.ID))
	}
	if !c.json {
		fmt.Fprintf(c.out, "submitted task %s (%s, model %s)\n", sub.ID, sub.Kind, sub.Model)
	}
	return c.remoteWatch(cmd.Context(), api, sub.ID)
}

// remoteWatch follows the task through the events endpoint (state the
// server already has, one follower per task however many watch) and ends
// with its result: no worker is asked for any of it, so many watchers, a
// busy worker or a restarting one do not make watching fail.
func (c *cli) remoteWatch(ctx context.Context, api *apiclient.Client, id string) error {
	var after int64
	var last task.State
	var res *task.Result
	for res == nil {
		evs, err := api.Events(ctx, id, after, 30*time.Second)
		if err != nil {
			if task.TypeOf(err) != "" || ctx.Err() != nil {
				return err
			}
			// The server restarting: ask again.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		for _, e := range evs.Events {
			after = e.Seq
			if e.State != last && !c.json {
				fmt.Fprintf(c.out, "%s  %s\n", e.Time.Local().Format("15:04:05"), e.State)
			}
			last = e.State
			if e.Progress != nil && !c.json {
				fmt.Fprintf(c.out, "          progress: %d of %d (%d failed, %.0f/s)\n", e.Progress.Done(), e.Progress.Total, e.Progress.Failed, e.Progress.RatePerSecond)
			}
			if e.Result != nil {
				res = e.Result
			}
		}
		if evs.Final && res == nil {
			r, err := api.Wait(ctx, id)
			if err != nil {
				return err
			}
			res = &r
		}
	}
	// The full status (audit trail, artifacts) needs a worker to answer;
	// the result alone does not, and is enough when none answers soon.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	st, err := api.Status(sctx, id)
	cancel()
	if err == nil && st.State.Final() {
		err = c.print(st, formatStatus(st.Status))
	} else {
		text := fmt.Sprintf("task %s: %s; requests: %d total, %d completed, %d failed", id, res.State, res.Counts.Total, res.Counts.Completed, res.Counts.Failed)
		if res.Reason != "" {
			text += "; " + res.Reason
		}
		err = c.print(res, text)
	}
	if err != nil {
		return err
	}
	if res.State != task.Completed {
		return fmt.Errorf("%w: task %s is %s", errNotCompleted, id, res.State)
	}
	return nil
}

func (c *cli) remoteResults(cmd *cobra.Command, api *apiclient.Client, id, dir string, partial bool) error {
	st, err := api.Status(cmd.Context(), id)
	if err != nil {
		return err
	}
	if err := taskclient.CheckFinished(st.Status, partial); err != nil {
		return err
	}
	files, err := api.Results(cmd.Context(), id)
	if err != nil {
		return err
	}
	if dir == "" {
		dir = id
	}
	var paths []string
	seen := map[string]bool{}
	for _, f := range files {
		p, err := resultPath(dir, f.Name)
		if err == nil && seen[p] {
			err = fmt.Errorf("the server named two result files %q", f.Name)
		}
		if err != nil {
			return err
		}
		seen[p] = true
		if err := api.Download(cmd.Context(), f, p); err != nil {
			return err
		}
		paths = append(paths, p)
	}
	return c.print(paths, fmt.Sprintf("downloaded %d file(s) of task %s, sha256 checked:\n  %s", len(paths), id, strings.Join(paths, "\n  ")))
}

// resultPath is where a result file the server names is written: the
// name is checked again here, whatever the server sent, so that it stays
// a relative path inside dir (no "..", no absolute path, no volume name)
// and a safe object name.
func resultPath(dir, name string) (string, error) {
	safe, err := storage.SafeName(name)
	if err != nil || safe != name || !filepath.IsLocal(filepath.FromSlash(name)) {
		return "", task.Errorf(task.InvalidInput, "the server named a result file %q, which is not a file name inside %s; nothing written under it", name, dir)
	}
	return filepath.Join(dir, filepath.FromSlash(name)), nil
}

func (c *cli) remoteStatus(cmd *cobra.Command, api *apiclient.Client, id string) error {
	st, err := api.Status(cmd.Context(), id)
	if err != nil {
		return err
	}
	text := formatStatus(st.Status)
	for k, v := range st.Metadata {
		text += fmt.Sprintf("\n  metadata %s: %s", k, v)
	}
	return c.print(st, text)
}

func (c *cli) remoteDecide(cmd *cobra.Command, api *apiclient.Client, id, action string, body server.DecisionBody) (task.Status, error) {
	st, err := api.Decide(cmd.Context(), id, action, body)
	return st.Status, err
}
