package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/logging"
	"github.com/autoglm-flow/autoglm-flow/internal/metrics"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

func serverCmd() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the API server: the native task API (/api/v1) and the OpenAI Files and Batches API (/v1)",
		Long: `server is the one front door: users authenticate with API keys (kept hashed in
the policy's api_keys; see autoglm keys create), and only the server holds the
Temporal connection, the bucket's credentials and the key that signs task
starts and actor assertions (AUTOGLM_ASSERTION_PRIVATE_KEY or _FILE; the
workers verify them with AUTOGLM_ASSERTION_PUBLIC_KEYS).

Settings: AUTOGLM_SERVER_ADDR (default 127.0.0.1:8080), AUTOGLM_SERVER_TLS_CERT
and AUTOGLM_SERVER_TLS_KEY (serve HTTPS), AUTOGLM_PRESIGN_TTL (results URLs,
default 5m), AUTOGLM_POLICY_FILE, and the TEMPORAL_* and AUTOGLM_S3_* settings
of the worker. To accept an identity provider's JWTs as well as API keys:
AUTOGLM_OIDC_JWKS_URL, AUTOGLM_OIDC_ISSUER, AUTOGLM_OIDC_AUDIENCE and
AUTOGLM_OIDC_USER_CLAIM (the claim naming the user; default sub).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.FromEnv()
			if err != nil {
				return err
			}
			log, err := logging.New(os.Stderr, cfg.LogFormat, cfg.LogLevel)
			if err != nil {
				return err
			}
			srv, closeFn, err := newAPIServer(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			defer closeFn()
			return serveAPI(cmd.Context(), addr, srv, log, nil)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", envOr("AUTOGLM_SERVER_ADDR", "127.0.0.1:8080"), "where to listen ($AUTOGLM_SERVER_ADDR)")
	return cmd
}

// newAPIServer opens the clients the server alone holds.
func newAPIServer(ctx context.Context, cfg config.Config, log *logrus.Logger) (*server.Server, func(), error) {
	signer, err := signerFromEnv()
	if err != nil {
		return nil, nil, err
	}
	if signer == nil {
		return nil, nil, errors.New("the server needs AUTOGLM_ASSERTION_PRIVATE_KEY (or _FILE) to sign actor assertions; make one with `autoglm keys assertion`")
	}
	var policy *authz.Source
	if cfg.PolicyFile != "" {
		if policy, err = authz.Load(cfg.PolicyFile); err != nil {
			return nil, nil, err
		}
	} else {
		policy = authz.Static(authz.Default())
	}
	opts, err := config.TemporalOptions(logging.NewSDK(log))
	if err != nil {
		return nil, nil, err
	}
	m, err := metrics.New()
	if err != nil {
		return nil, nil, err
	}
	opts.MetricsHandler = m.SDK
	cdc, err := config.Codec()
	if err != nil {
		return nil, nil, err
	}
	tc, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("server: connecting to Temporal at %s: %w", opts.HostPort, err)
	}
	store, err := storage.Open(ctx, cfg.S3)
	if err != nil {
		tc.Close()
		return nil, nil, fmt.Errorf("server: opening the bucket: %w", err)
	}
	ttl := server.DefaultPresignTTL
	if v := os.Getenv("AUTOGLM_PRESIGN_TTL"); v != "" {
		if ttl, err = time.ParseDuration(v); err != nil {
			tc.Close()
			return nil, nil, fmt.Errorf("AUTOGLM_PRESIGN_TTL=%q is not a duration", v)
		}
	}
	limits, err := server.LimitsFromEnv()
	if err != nil {
		tc.Close()
		return nil, nil, err
	}
	srv := &server.Server{
		Tasks:  &taskclient.Client{Temporal: tc, Store: store, Signer: signer, Policy: policy},
		Limits: limits,
		Policy: policy, PresignTTL: ttl, Log: log,
		Metrics: m.Handler(), Codec: cdc, Namespace: cmp.Or(opts.Namespace, client.DefaultNamespace),
		UIOrigins: strings.FieldsFunc(os.Getenv("AUTOGLM_UI_ORIGINS"), func(r rune) bool { return r == ',' || r == ' ' }),
	}
	if err := m.RegisterServer(srv.MetricsSources()); err != nil {
		tc.Close()
		return nil, nil, err
	}
	if jwks := os.Getenv("AUTOGLM_OIDC_JWKS_URL"); jwks != "" {
		srv.OIDC = &server.OIDC{
			JWKSURL: jwks, Issuer: os.Getenv("AUTOGLM_OIDC_ISSUER"), Audience: os.Getenv("AUTOGLM_OIDC_AUDIENCE"),
			UserClaim: os.Getenv("AUTOGLM_OIDC_USER_CLAIM"),
		}
		if srv.OIDC.Issuer == "" || srv.OIDC.Audience == "" {
			tc.Close()
			return nil, nil, errors.New("AUTOGLM_OIDC_JWKS_URL needs AUTOGLM_OIDC_ISSUER and AUTOGLM_OIDC_AUDIENCE")
		}
	}
	return srv, tc.Close, nil
}

// serveAPI serves until ctx ends, then shuts down gracefully. ready, if
// not nil, gets the address once the server listens.
func serveAPI(ctx context.Context, addr string, srv *server.Server, log *logrus.Logger, ready chan<- string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	hs := srv.HTTPServer()
	cert, key := os.Getenv("AUTOGLM_SERVER_TLS_CERT"), os.Getenv("AUTOGLM_SERVER_TLS_KEY")
	log.WithField("addr", ln.Addr().String()).WithField("tls", cert != "").Info("API server listening")
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() {
		if cert != "" {
			errc <- hs.ServeTLS(ln, cert, key)
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}
