package webhook

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

// The address check alone, on addresses no test may dial: each is refused
// with its reason, and public addresses pass.
func TestCheckAddrRefusesInternalAddresses(t *testing.T) {
	for addr, reason := range map[string]string{
		"10.0.0.1":               "private",
		"172.16.5.4":             "private",
		"192.168.1.1":            "private",
		"fd00::1":                "private",
		"169.254.169.254":        "metadata",
		"fd00:ec2::254":          "metadata",
		"100.100.100.200":        "metadata",
		"169.254.10.1":           "link-local",
		"fe80::1":                "link-local",
		"127.0.0.1":              "loopback",
		"127.8.9.10":             "loopback",
		"::1":                    "loopback",
		"::ffff:127.0.0.1":       "loopback",
		"::ffff:10.0.0.1":        "private",
		"::ffff:169.254.169.254": "metadata",
		"0.0.0.0":                "unspecified",
		"::":                     "unspecified",
		"239.1.2.3":              "multicast",
		"100.64.0.1":             "not the public internet",
		"64:ff9b::a00:1":         "not the public internet",
		"2002:a00:1::":           "not the public internet",
	} {
		err := CheckAddr(netip.MustParseAddr(addr), false)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), reason) {
			t.Errorf("%s: %v, want refused as %s", addr, err, reason)
		}
	}
	for _, addr := range []string{"93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "8.8.8.8"} {
		if err := CheckAddr(netip.MustParseAddr(addr), false); err != nil {
			t.Errorf("%s: %v, want allowed", addr, err)
		}
	}
	// Development: loopback passes, nothing else that was refused.
	if err := CheckAddr(netip.MustParseAddr("127.0.0.1"), true); err != nil {
		t.Errorf("127.0.0.1 with loopback allowed: %v", err)
	}
	for _, addr := range []string{"10.0.0.1", "169.254.169.254", "fd00::1"} {
		if err := CheckAddr(netip.MustParseAddr(addr), true); !errors.Is(err, ErrRefused) {
			t.Errorf("%s with loopback allowed: %v, want refused", addr, err)
		}
	}
}

// The form of a URL; its addresses, literal or looked up, are checked
// at dial time (see the tests above and below).
func TestCheckURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://hooks.example.com/autoglm":        true,
		"https://hooks.example.com:8443/x?token=1": true,
		"http://hooks.example.com/autoglm":         false,
		"ftp://hooks.example.com/":                 false,
		"https://user:pw@hooks.example.com/":       false,
		"https:///nohost":                          false,
		"http://127.0.0.1:8080/":                   false,
		"mailto:ops@example.com":                   false,
		"://bad":                                   false,
	} {
		if _, err := CheckURL(raw, false); (err == nil) != ok {
			t.Errorf("%s: %v, want allowed %v", raw, err, ok)
		}
	}
	for raw, ok := range map[string]bool{
		"http://127.0.0.1:8080/":    true,
		"http://localhost:8080/":    true,
		"http://[::1]:8080/":        true,
		"https://127.0.0.1/":        true,
		"http://hooks.example.com/": false,
		"http://10.0.0.1/":          false,
	} {
		if _, err := CheckURL(raw, true); (err == nil) != ok {
			t.Errorf("%s with loopback allowed: %v, want allowed %v", raw, err, ok)
		}
	}
}

// A receiver on 127.0.0.1 (the only place a test may dial): refused by
// the strict client whether the URL names the address or a host name that
// the test resolver maps to it, before any connection; reached with
// loopback allowed; and its redirect is not followed.
func TestClientChecksTheAddressAtDialTime(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	resolve := func(ctx context.Context, host string) ([]netip.Addr, error) {
		if host == "hooks.example.test" {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
		return nil, errors.New("no such host in the test resolver")
	}
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	strict := NewClient(Options{Resolve: resolve})
	for _, url := range []string{srv.URL + "/hook", "http://hooks.example.test" + port + "/hook"} {
		_, err := Send(context.Background(), strict, url, secret, "evt_1", []byte(`{}`))
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "127.0.0.1 is loopback") {
			t.Errorf("%s: %v, want refused as loopback", url, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the refused deliveries reached the receiver %d times", n)
	}
	dev := NewClient(Options{Resolve: resolve, AllowLoopback: true})
	if _, err := Send(context.Background(), dev, "http://hooks.example.test"+port+"/hook", secret, "evt_2", []byte(`{}`)); err != nil {
		t.Fatalf("with loopback allowed: %v", err)
	}
	d, err := Send(context.Background(), dev, srv.URL+"/moved", secret, "evt_3", []byte(`{}`))
	if err == nil || d.StatusCode != http.StatusFound || hits.Load() != 2 {
		t.Fatalf("a redirect: %+v, %v, %d hits; want the 302 as a failure, not followed", d, err, hits.Load())
	}
}
