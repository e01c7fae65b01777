// Package webhook sends events in the Standard Webhooks format, the one
// OpenAI uses for its batch events: headers webhook-id, webhook-timestamp
// and webhook-signature ("v1," + base64 HMAC-SHA256 over
// "id.timestamp.body" with the base64 key of a whsec_ secret), so that
// OpenAI's own SDKs (client.webhooks.unwrap) verify them.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Payload is the body of a delivery: a task.Event shaped as OpenAI's
// events.
type Payload struct {
	ID        string         `json:"id"`
	Object    string         `json:"object"` // always "event"
	CreatedAt int64          `json:"created_at"`
	Type      string         `json:"type"`
	Data      map[string]any `json:"data"`
}

// Sign is the webhook-signature header of body.
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return "", fmt.Errorf("webhook: the secret is not whsec_ + base64: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%d.", id, ts.Unix())
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// Verify checks a delivery's headers against the secret, within tolerance
// of now: what a receiver of ours does.
func Verify(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
	if err != nil {
		return fmt.Errorf("webhook: bad webhook-timestamp: %w", err)
	}
	t := time.Unix(ts, 0)
	if d := now.Sub(t); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook: timestamp %s is outside the tolerance", t)
	}
	want, err := Sign(secret, h.Get("webhook-id"), t, body)
	if err != nil {
		return err
	}
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return fmt.Errorf("webhook: no valid signature")
}

// Delivery is one successful send.
type Delivery struct {
	StatusCode int `json:"status_code"`
}

// Send posts body to url, signed now: every attempt has a fresh
// timestamp (receivers refuse old ones) and the same webhook-id (so they
// can drop duplicates). Any answer but 2xx is an error to retry; a URL or
// address the client refuses (see NewClient; nil is NewClient with no
// options) matches ErrRefused.
func Send(ctx context.Context, c *http.Client, url, secret, id string, body []byte) (Delivery, error) {
	now := time.Now()
	sig, err := Sign(secret, id, now, body)
	if err != nil {
		return Delivery{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Delivery{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "autoglm-flow-webhooks")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	if c == nil {
		c = NewClient(Options{})
	}
	resp, err := c.Do(req)
	if err != nil {
		// The URL may hold a token: say only why the receiver was not reached.
		err = unwrapURLError(err)
		if errors.Is(err, ErrRefused) {
			return Delivery{}, err
		}
		return Delivery{}, fmt.Errorf("webhook: receiver unreachable: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Delivery{StatusCode: resp.StatusCode}, fmt.Errorf("webhook: receiver answered %s", resp.Status)
	}
	return Delivery{StatusCode: resp.StatusCode}, nil
}

func unwrapURLError(err error) error {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && u.Unwrap() != nil {
		return u.Unwrap()
	}
	return err
}
