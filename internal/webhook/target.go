package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Webhooks go out from workers that hold the bucket's and the model
// servers' credentials, to URLs a policy names. So that a URL cannot turn
// them inward, a delivery goes only over https, to an address that is
// checked when it is dialed (after DNS, so a name that resolves to an
// internal address, or starts to, is refused), and follows no redirect.
// A subscriber the policy marks allow_loopback (development on one
// machine) may also be reached on a loopback address, over http too.

// ErrRefused is what a refused URL or address matches (errors.Is).
var ErrRefused = errors.New("webhook: refused")

// refused is a refusal with its reason.
type refused struct{ reason string }

func (e *refused) Error() string        { return "webhook: refused: " + e.reason }
func (e *refused) Is(target error) bool { return target == ErrRefused }

// CheckURL checks the form of a webhook URL: an absolute https URL with
// a host and no credentials in it; or, with allowLoopback, http to a
// loopback host (localhost or a loopback address). Where it leads is
// checked when it is dialed (CheckAddr), whatever the host names.
func CheckURL(raw string, allowLoopback bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, &refused{"the URL does not parse"}
	}
	host := u.Hostname()
	switch {
	case host == "":
		return nil, &refused{"the URL has no host"}
	case u.User != nil:
		return nil, &refused{"the URL holds credentials; use the signing secret"}
	case u.Opaque != "":
		return nil, &refused{"the URL is not hierarchical"}
	case u.Scheme == "https":
	case u.Scheme == "http" && allowLoopback && isLoopbackHost(host):
	case u.Scheme == "http" && allowLoopback:
		return nil, &refused{"http goes only to a loopback host; use https"}
	default:
		return nil, &refused{fmt.Sprintf("scheme %q: webhooks go over https only", u.Scheme)}
	}
	return u, nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// metadata are the cloud instance-metadata addresses outside the ranges
// CheckAddr refuses by kind (AWS's IPv6 one, Alibaba's).
var metadata = []netip.Addr{
	netip.MustParseAddr("fd00:ec2::254"),
	netip.MustParseAddr("100.100.100.200"),
}

// blocked are ranges that are not the public internet and that the
// netip predicates do not cover.
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),  // carrier-grade NAT, shared
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved
	netip.MustParsePrefix("64:ff9b::/96"),   // NAT64: may reach an IPv4 inside
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
	netip.MustParsePrefix("2001:db8::/32"),  // documentation
	netip.MustParsePrefix("2002::/16"),      // 6to4: embeds an IPv4
	netip.MustParsePrefix("2001::/32"),      // Teredo: embeds an IPv4
	netip.MustParsePrefix("100::/64"),       // discard-only
	netip.MustParsePrefix("192.88.99.0/24"), // 6to4 relay anycast
	netip.MustParsePrefix("255.255.255.255/32"),
}

// CheckAddr says whether a webhook may connect to ip: not loopback
// (unless allowLoopback), private, link-local, a cloud metadata address,
// multicast, unspecified, or another range that is not the public
// internet. IPv4-mapped IPv6 addresses are checked as the IPv4 they are.
func CheckAddr(ip netip.Addr, allowLoopback bool) error {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid():
		return &refused{"no address"}
	case slices.Contains(metadata, ip) || ip == netip.MustParseAddr("169.254.169.254"):
		return &refused{fmt.Sprintf("address %s is a cloud metadata address", ip)}
	case ip.IsLoopback():
		if allowLoopback {
			return nil
		}
		return &refused{fmt.Sprintf("address %s is loopback", ip)}
	case ip.IsPrivate():
		return &refused{fmt.Sprintf("address %s is private", ip)}
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return &refused{fmt.Sprintf("address %s is link-local", ip)}
	case ip.IsUnspecified():
		return &refused{fmt.Sprintf("address %s is unspecified", ip)}
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		return &refused{fmt.Sprintf("address %s is multicast", ip)}
	}
	for _, p := range blocked {
		if p.Contains(ip) {
			return &refused{fmt.Sprintf("address %s is in %s, not the public internet", ip, p)}
		}
	}
	return nil
}

// Resolver looks up a host's addresses; net.DefaultResolver.LookupNetIP
// with network "ip" is the real one.
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

// Options configure a delivery client.
type Options struct {
	// AllowLoopback lets the client reach loopback addresses (and the
	// URL use http to a loopback host): for development on one machine.
	AllowLoopback bool
	// Resolve looks up host names; nil is the system's resolver.
	Resolve Resolver
	// Timeout bounds a whole delivery (default 30 s).
	Timeout time.Duration
}

// NewClient is the HTTP client of deliveries: each address is checked as
// it is dialed, no proxy from the environment is used (it would dial on
// the client's behalf, past the check), and no redirect is followed (a
// 3xx is an answer that is not 2xx).
func NewClient(o Options) *http.Client {
	resolve := o.Resolve
	if resolve == nil {
		resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	d := &dialer{allowLoopback: o.AllowLoopback, resolve: resolve}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         d.dial,
			ForceAttemptHTTP2:   true,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConns:        16,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type dialer struct {
	allowLoopback bool
	resolve       Resolver
}

// dial resolves host, checks every address and connects to the first
// that passes and answers. The address is checked once more in the
// socket's Control hook, on the very address being connected.
func (d *dialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else if ips, err = d.resolve(ctx, host); err != nil {
		return nil, fmt.Errorf("webhook: looking up %s: %w", host, err)
	}
	nd := &net.Dialer{Timeout: 10 * time.Second, Control: d.control}
	var errs []error
	for _, ip := range ips {
		if err := CheckAddr(ip, d.allowLoopback); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", host, err))
			continue
		}
		c, err := nd.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("webhook: %s has no address", host)
	}
	return nil, errors.Join(errs...)
}

func (d *dialer) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &refused{fmt.Sprintf("address %q does not parse", address)}
	}
	return CheckAddr(ap.Addr(), d.allowLoopback)
}
