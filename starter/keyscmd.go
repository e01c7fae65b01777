package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/authz"
)

func (c *cli) keysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Make API keys for users, and the server's assertion key pair",
	}
	var tenant, name, policy string
	create := &cobra.Command{
		Use:   "create USER",
		Short: "Make an API key for USER: the key is printed once, only its sha256 is kept in the policy",
		Example: `  autoglm keys create alice --tenant demo --policy policy.yaml
  autoglm keys create ci-bot --tenant acme --name "nightly batches" --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, entry, err := authz.NewAPIKey(args[0], tenant, name)
			if err != nil {
				return err
			}
			if policy != "" {
				if err := addKey(policy, entry); err != nil {
					return err
				}
			}
			out := struct {
				Key   string       `json:"key"`
				Entry authz.APIKey `json:"entry"`
				File  string       `json:"policy_file,omitempty"`
			}{key, entry, policy}
			text := fmt.Sprintf("API key of %s (shown once; give it to them, they run `autoglm login`):\n  %s\n", args[0], key)
			if policy != "" {
				text += fmt.Sprintf("its sha256 is in %s; the server picks it up when the file changes", policy)
			} else {
				b, _ := yaml.Marshal([]authz.APIKey{entry})
				text += "add this under api_keys: in the policy file:\n" + string(b)
			}
			return c.print(out, text)
		},
	}
	create.Flags().StringVar(&tenant, "tenant", envOr("AUTOGLM_TENANT", "demo"), "the key's tenant (the tenant of its OpenAI API calls)")
	create.Flags().StringVar(&name, "name", "", "what the key is for")
	create.Flags().StringVar(&policy, "policy", os.Getenv("AUTOGLM_POLICY_FILE"), "the policy file to add the key's hash to ($AUTOGLM_POLICY_FILE)")

	var dir string
	pair := &cobra.Command{
		Use:   "assertion",
		Short: "Make the ed25519 key pair of actor assertions: the private key for the server, the public one for the workers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, priv, err := assertion.GenerateKey()
			if err != nil {
				return err
			}
			path := filepath.Join(dir, "assertion.key")
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintln(f, assertion.EncodePrivate(priv)); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			out := map[string]string{"private_key_file": path, "public_key": assertion.EncodePublic(pub)}
			return c.print(out, fmt.Sprintf("private key in %s (mode 0600): the server's AUTOGLM_ASSERTION_PRIVATE_KEY_FILE\npublic key, for every worker:\n  AUTOGLM_ASSERTION_PUBLIC_KEYS=%s", path, assertion.EncodePublic(pub)))
		},
	}
	pair.Flags().StringVar(&dir, "dir", ".", "where to write assertion.key")
	cmd.AddCommand(create, pair)
	return cmd
}

// addKey adds entry to the api_keys of the policy file, keeping the rest
// of the file (comments included) as it is, and checks the result parses.
func addKey(path string, entry authz.APIKey) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("%s is not a policy (a YAML mapping)", path)
	}
	root := doc.Content[0]
	var keys *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "api_keys" {
			keys = root.Content[i+1]
		}
	}
	if keys == nil {
		keys = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "api_keys"}, keys)
	}
	var item yaml.Node
	if err := item.Encode(entry); err != nil {
		return err
	}
	if keys.Kind != yaml.SequenceNode {
		keys.Kind, keys.Tag, keys.Value = yaml.SequenceNode, "!!seq", ""
	}
	keys.Style = 0
	keys.Content = append(keys.Content, &item)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	if _, err := authz.Parse(out.Bytes()); err != nil {
		return fmt.Errorf("the policy with the new key would not parse: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out.Bytes(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
