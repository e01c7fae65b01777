package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
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
