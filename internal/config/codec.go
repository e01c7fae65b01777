package config

import (
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/codec"
)

// Codec is the payload codec that AUTOGLM_CODEC_KEYS (or its _FILE)
// configures, sealing with AUTOGLM_CODEC_KEY_ID (default the first key);
// nil when encryption is off. Workers, the server and the CLI must share
// the key ring, or they cannot read each other's payloads.
func Codec() (*codec.Codec, error) {
	e := env{}
	ring := e.secret("AUTOGLM_CODEC_KEYS")
	if e.err != nil || ring == "" {
		return nil, e.err
	}
	return codec.Parse(ring, e.str("AUTOGLM_CODEC_KEY_ID", ""))
}

func withCodec(opts *client.Options) error {
	c, err := Codec()
	if err != nil || c == nil {
		return err
	}
	opts.DataConverter = codec.DataConverter(c)
	opts.FailureConverter = codec.FailureConverter(opts.DataConverter)
	return nil
}
