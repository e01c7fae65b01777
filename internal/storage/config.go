package storage

import (
	"context"
	"fmt"
	"net/url"
	"strings"
)

// Drivers.
const (
	DriverMinIO = "minio"
	DriverAWS   = "aws"
)

const (
	defaultRegion = "us-east-1"
	// defaultPartSize is the part size of multipart writes, and so the
	// memory one write holds.
	defaultPartSize = 16 << 20
	// minPartSize is S3's lower bound for every part but the last.
	minPartSize = 5 << 20
)

// Config says which store to open. The zero Driver is "minio".
type Config struct {
	Driver string // "minio" (default) or "aws"
	// Endpoint is host:port or a URL (http:// or https://, which then
	// decides Insecure). Empty means AWS itself, with driver aws only.
	Endpoint string
	Bucket   string
	Region   string // default "us-east-1"
	// AccessKey and SecretKey come from the environment or files only and
	// are never printed (see String). With driver aws, leaving both empty
	// uses the AWS default credential chain (env, profiles, SSO, IRSA);
	// driver minio needs them.
	AccessKey, SecretKey string
	Insecure             bool // http instead of https
	// PathStyle forces path-style requests with driver aws on AWS itself.
	// With an Endpoint set, path style is always used: the S3-compatible
	// servers we target (MinIO) need it, and a bool cannot default to true.
	PathStyle bool
	// StatBeforeReplace makes Replace read the object's current ETag
	// first and refuse with ErrConflict when it is gone or differs, for
	// stores that honour If-Match against a deleted object's ETag
	// (versitygw v1.8.0 on a versioned bucket). The If-Match is still
	// sent; only a delete racing the write slips through.
	StatBeforeReplace bool

	partSize int64 // tests lower it to exercise multipart with small objects
}

// String describes the config without its credentials, so it can be logged.
func (c Config) String() string {
	creds := "static"
	if c.AccessKey == "" && c.SecretKey == "" {
		creds = "none"
		if c.driver() == DriverAWS {
			creds = "default-chain"
		}
	}
	endpoint := c.Endpoint
	if u, err := url.Parse(endpoint); err == nil && u.User != nil {
		u.User = nil
		endpoint = u.String()
	}
	if endpoint == "" {
		endpoint = "aws"
	}
	return fmt.Sprintf("storage{driver=%s endpoint=%s bucket=%s region=%s insecure=%t path_style=%t credentials=%s}",
		c.driver(), endpoint, c.Bucket, c.region(), c.Insecure, c.PathStyle, creds)
}

// GoString keeps %#v from printing the secret too.
func (c Config) GoString() string { return c.String() }

// Open returns the Store of cfg's driver. It does not contact the server.
func Open(ctx context.Context, cfg Config) (Store, error) {
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("storage: no bucket in %s", cfg)
	}
	if cfg.partSize == 0 {
		cfg.partSize = defaultPartSize
	}
	if cfg.partSize < minPartSize {
		return nil, fmt.Errorf("storage: part size %d is below S3's minimum %d", cfg.partSize, minPartSize)
	}
	switch cfg.driver() {
	case DriverMinIO:
		return openMinIO(cfg)
	case DriverAWS:
		return openAWS(ctx, cfg)
	default:
		return nil, fmt.Errorf("storage: unknown driver %q (want %q or %q)", cfg.Driver, DriverMinIO, DriverAWS)
	}
}

func (c Config) driver() string {
	if c.Driver == "" {
		return DriverMinIO
	}
	return strings.ToLower(c.Driver)
}

func (c Config) region() string {
	if c.Region == "" {
		return defaultRegion
	}
	return c.Region
}

// endpoint splits Endpoint into host:port and whether to use TLS. A URL's
// scheme wins over Insecure.
func (c Config) endpoint() (host string, secure bool, err error) {
	if !strings.Contains(c.Endpoint, "://") {
		if c.Endpoint == "" || strings.ContainsAny(c.Endpoint, "/?#") {
			return "", false, fmt.Errorf("storage: endpoint %q is not host:port or a URL", c.Endpoint)
		}
		return c.Endpoint, !c.Insecure, nil
	}
	// Errors do not quote a URL: it might carry user:password.
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		return "", false, fmt.Errorf("storage: endpoint is not a valid URL")
	}
	if u.User != nil {
		return "", false, fmt.Errorf("storage: endpoint must not carry credentials; set AccessKey and SecretKey")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return "", false, fmt.Errorf("storage: endpoint %q must be http(s)://host[:port] with no path", c.Endpoint)
	}
	return u.Host, u.Scheme == "https", nil
}
