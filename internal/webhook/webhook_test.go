package webhook

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The example of the Standard Webhooks specification: a known secret, id,
// timestamp and body give a known signature.
func TestSignMatchesTheSpecificationExample(t *testing.T) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	body := []byte(`{"test": 2432232314}`)
	got, err := Sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), body)
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
}

func TestSendIsVerifiedAndRefusedWithAnotherSecret(t *testing.T) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var verified, refused int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if Verify(secret, r.Header, body, time.Now(), 5*time.Minute) == nil {
			verified++
		}
		if Verify("whsec_b3RoZXJzZWNyZXQ=", r.Header, body, time.Now(), 5*time.Minute) != nil {
			refused++
		}
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	if _, err := Send(context.Background(), NewClient(Options{AllowLoopback: true}), srv.URL+"/ok", secret, "evt_1", []byte(`{"id":"evt_1"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := Send(context.Background(), NewClient(Options{AllowLoopback: true}), srv.URL+"/down", secret, "evt_2", []byte(`{}`)); err == nil {
		t.Fatal("a 503 counted as delivered")
	}
	if verified != 2 || refused != 2 {
		t.Fatalf("verified %d, refused with another secret %d; want 2 and 2", verified, refused)
	}
}
