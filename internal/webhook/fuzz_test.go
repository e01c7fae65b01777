package webhook

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzCheckURL: an accepted URL is https, or http to a loopback host when
// loopback is allowed; it has a host and no credentials; nothing panics.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://hooks.example.com/autoglm", "http://127.0.0.1:8080/x", "http://localhost/",
		"https://user:pw@example.com/", "HTTPS://EXAMPLE.COM", "https://[::1]:443/", "http://[fe80::1%25eth0]/",
		"https:example.com", "//example.com", "https://%31%32%37.0.0.1/", "https://0x7f.1/", "javascript:alert(1)",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, allowLoopback bool) {
		u, err := CheckURL(raw, allowLoopback)
		if err != nil {
			return
		}
		if u.Hostname() == "" || u.User != nil {
			t.Fatalf("accepted %q: host %q, user %v", raw, u.Hostname(), u.User)
		}
		switch u.Scheme {
		case "https":
		case "http":
			if !allowLoopback || !isLoopbackHost(u.Hostname()) {
				t.Fatalf("accepted http URL %q (loopback allowed: %v)", raw, allowLoopback)
			}
		default:
			t.Fatalf("accepted scheme %q of %q", u.Scheme, raw)
		}
	})
}

// FuzzCheckAddr: an allowed address, in any of its forms, is public.
func FuzzCheckAddr(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "169.254.169.254", "fd00::1", "::ffff:127.0.0.1", "8.8.8.8", "2606:4700::1"} {
		a := netip.MustParseAddr(s).As16()
		f.Add(a[:], false)
	}
	f.Fuzz(func(t *testing.T, b []byte, allowLoopback bool) {
		ip, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		if err := CheckAddr(ip, allowLoopback); err != nil {
			if !strings.Contains(err.Error(), "refused") {
				t.Fatalf("%s: refusal without its word: %v", ip, err)
			}
			return
		}
		u := ip.Unmap()
		if u.IsPrivate() || u.IsLinkLocalUnicast() || u.IsUnspecified() || u.IsMulticast() || (u.IsLoopback() && !allowLoopback) || u == netip.MustParseAddr("169.254.169.254") {
			t.Fatalf("allowed %s", ip)
		}
	})
}
