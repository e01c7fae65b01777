package config

import (
	"testing"

	"go.temporal.io/sdk/client"
)

// gzip is left off only where it buys nothing: Temporal on a loopback
// address, unless asked for; an unknown setting is an error, not a guess.
func TestCompression(t *testing.T) {
	for _, c := range []struct {
		env, host string
		want      client.GrpcCompression // nil: the SDK's default, gzip
		bad       bool
	}{
		{"", "127.0.0.1:7233", &client.GrpcCompressionNone{}, false},
		{"auto", "localhost:7233", &client.GrpcCompressionNone{}, false},
		{"", "[::1]:7233", &client.GrpcCompressionNone{}, false},
		{"", "temporal.example.com:7233", nil, false},
		{"", "10.0.0.5:7233", nil, false},
		{"gzip", "127.0.0.1:7233", &client.GrpcCompressionGzip{}, false},
		{"none", "temporal.example.com:7233", &client.GrpcCompressionNone{}, false},
		{"zstd", "127.0.0.1:7233", nil, true},
	} {
		t.Setenv("AUTOGLM_TEMPORAL_COMPRESSION", c.env)
		opts := client.Options{HostPort: c.host}
		err := withCompression(&opts)
		if (err != nil) != c.bad {
			t.Errorf("%q at %s: error %v; want an error: %v", c.env, c.host, err, c.bad)
			continue
		}
		got := opts.ConnectionOptions.GrpcCompression
		switch c.want.(type) {
		case nil:
			if got != nil {
				t.Errorf("%q at %s: compression %T; want the default (gzip)", c.env, c.host, got)
			}
		case *client.GrpcCompressionNone:
			if _, ok := got.(*client.GrpcCompressionNone); !ok {
				t.Errorf("%q at %s: compression %T; want none", c.env, c.host, got)
			}
		case *client.GrpcCompressionGzip:
			if _, ok := got.(*client.GrpcCompressionGzip); !ok {
				t.Errorf("%q at %s: compression %T; want gzip", c.env, c.host, got)
			}
		}
	}
}
