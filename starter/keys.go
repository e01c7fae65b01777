package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
)

// signerFromEnv is the signer of AUTOGLM_ASSERTION_PRIVATE_KEY (or
// …_FILE), or nil when neither is set.
func signerFromEnv() (*assertion.Signer, error) {
	v, err := assertion.FromEnv("AUTOGLM_ASSERTION_PRIVATE_KEY")
	if err != nil || v == "" {
		return nil, err
	}
	k, err := assertion.ParsePrivateKey(v)
	if err != nil {
		return nil, fmt.Errorf("AUTOGLM_ASSERTION_PRIVATE_KEY: %w", err)
	}
	return assertion.NewSigner(k), nil
}

// devAssertionKey makes (once) the local stack's signing key in dir, and
// points this process's worker, server and CLI at it.
func devAssertionKey(dir string) error {
	path := filepath.Join(dir, "assertion.key")
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		_, priv, gerr := assertion.GenerateKey()
		if gerr != nil {
			return gerr
		}
		b = []byte(assertion.EncodePrivate(priv) + "\n")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		err = os.WriteFile(path, b, 0o600)
	}
	if err != nil {
		return err
	}
	k, err := assertion.ParsePrivateKey(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	abs, _ := filepath.Abs(path)
	os.Setenv("AUTOGLM_ASSERTION_PRIVATE_KEY_FILE", abs)
	os.Setenv("AUTOGLM_ASSERTION_PUBLIC_KEYS", assertion.EncodePublic(assertion.NewSigner(k).Public()))
	return nil
}
