package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func (c *cli) modelsCmd() *cobra.Command {
	models := &cobra.Command{Use: "models", Short: "Bring models in: access requests (anyone asks, reviewers decide) and mirrors (fleet operators)"}
	var req task.AccessRequest
	request := &cobra.Command{
		Use:   "request NAME --repo OWNER/NAME [--revision REV] --reason WHY",
		Short: "Ask for a model: screening, security audit, a reviewer, then it is mirrored and allowed for your tenant",
		Example: `  autoglm models request glm-4-9b --repo THUDM/glm-4-9b --revision main --reason "for the support bot"
  autoglm models status REQUEST`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ops, err := c.ops(cmd)
			if err != nil {
				return err
			}
			// Your tenant (the key's, through the server) unless --tenant.
			req.Tenant, req.Model.Name = tenantFlag(cmd, c.tenant), args[0]
			stop := waiting("screening " + req.Model.Repo + "@" + req.Model.Revision + " at the upstream")
			r, err := ops.RequestAccess(cmd.Context(), req)
			stop()
			if err != nil {
				return c.reach(err, req.Model.Upstream)
			}
			return c.print(r, fmt.Sprintf("access request %s for %s (%s@%s) started; follow it with: autoglm models status %s", r.ID, r.Model.Name, r.Model.Repo, r.Model.Revision, r.ID))
		},
	}
	f := request.Flags()
	f.StringVar(&req.Model.Repo, "repo", "", "the model's repo at the upstream, OWNER/NAME")
	f.StringVar(&req.Model.Revision, "revision", "main", "the revision (branch, tag or commit)")
	f.StringVar(&req.Model.Upstream, "upstream", task.UpstreamHF, "hf (a Hugging Face-style hub, AUTOGLM_HF_ENDPOINT) or http (AUTOGLM_MODELS_HTTP_URL)")
	f.StringVar(&req.Reason, "reason", "", "why the tenant needs it, for the reviewer")
	f.StringVar(&req.ID, "id", "", "the request ID (default: a new one)")

	status := &cobra.Command{
		Use: "status REQUEST", Short: "Show an access request's stage, findings and audit trail", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ops, err := c.ops(cmd)
			if err != nil {
				return err
			}
			st, err := ops.AccessStatus(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return c.print(st, accessText(st))
		},
	}
	decide := func(use string, approve bool, short string) *cobra.Command {
		var reason string
		cmd := &cobra.Command{
			Use: use + " REQUEST", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				ops, err := c.ops(cmd)
				if err != nil {
					return err
				}
				st, err := ops.DecideAccess(cmd.Context(), args[0], approve, reason)
				if err != nil {
					return err
				}
				return c.print(st, fmt.Sprintf("%s access request %s", use+"d", args[0]))
			},
		}
		cmd.Flags().StringVar(&reason, "reason", "", "why (required to reject)")
		return cmd
	}
	var mir task.MirrorInput
	mirrorCmd := &cobra.Command{
		Use:   "mirror NAME --repo OWNER/NAME [--revision REV]",
		Short: "Copy a model into the bucket, verified, without an approval (fleet operators); it allows the model for no tenant",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ops, err := c.ops(cmd)
			if err != nil {
				return err
			}
			mir.Name = args[0]
			stop := waiting("mirroring " + mir.Repo + "@" + mir.Revision + " into the bucket")
			res, err := ops.Mirror(cmd.Context(), mir)
			stop()
			if err != nil {
				return c.reach(err, mir.Upstream)
			}
			return c.print(res, fmt.Sprintf("mirrored %s@%s: %d file(s), %d bytes (%d already there, verified); %s", res.Name, res.Revision, res.Files, res.Bytes, res.Skipped, res.Meta.URI()))
		},
	}
	mf := mirrorCmd.Flags()
	mf.StringVar(&mir.Repo, "repo", "", "the model's repo at the upstream, OWNER/NAME")
	mf.StringVar(&mir.Revision, "revision", "main", "the revision (branch, tag or commit)")
	mf.StringVar(&mir.Upstream, "upstream", task.UpstreamHF, "hf (a Hugging Face-style hub, AUTOGLM_HF_ENDPOINT) or http (AUTOGLM_MODELS_HTTP_URL)")
	models.AddCommand(request, status, mirrorCmd,
		decide("approve", true, "Approve an access request (reviewers of its tenant; never your own)"),
		decide("reject", false, "Reject an access request, with a reason"))
	return models
}

func accessText(st task.AccessStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "access request %s: %s for tenant %s by %s — %s (stage %s)\n", st.ID, st.Model, st.Tenant, st.Requester, st.State, st.Stage)
	if st.Reason != "" {
		fmt.Fprintf(&b, "reason: %s\n", st.Reason)
	}
	for _, f := range st.Findings {
		fmt.Fprintf(&b, "  finding: %s\n", f)
	}
	for _, t := range st.Audit {
		fmt.Fprintf(&b, "  %s  %-18s %-10s %s\n", t.Time.Format("15:04:05"), t.To, t.Actor, t.Reason)
	}
	if st.State == task.Completed && st.Mirror.Revision != "" {
		// The mirror is kept under the screened commit: what nodes load.
		fmt.Fprintf(&b, "mirrored at %s; bring it into nodes with: autoglm fleet exec --arg model=%s@%s ensure-model\n", st.Mirror.Revision, st.Model, st.Mirror.Revision)
	}
	return strings.TrimRight(b.String(), "\n")
}

// upstreamSetting is the setting that says where an upstream is.
func upstreamSetting(upstream string) string {
	if upstream == task.UpstreamHTTP {
		return "AUTOGLM_MODELS_HTTP_URL"
	}
	return "AUTOGLM_HF_ENDPOINT"
}
