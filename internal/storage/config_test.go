package storage

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

func TestConfigStringHidesSecrets(t *testing.T) {
	c := Config{Endpoint: "https://user:hunter2@s3.example:9000", Bucket: "b", AccessKey: "AKIAEXAMPLE", SecretKey: "s3cr3t-value"}
	for _, s := range []string{c.String(), fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%v", &c)} {
		for _, secret := range []string{"s3cr3t-value", "AKIAEXAMPLE", "hunter2"} {
			if strings.Contains(s, secret) {
				t.Errorf("%q prints %q", s, secret)
			}
		}
	}
}

func TestConfigEndpoint(t *testing.T) {
	for _, tc := range []struct {
		endpoint   string
		insecure   bool
		host       string
		secure, ok bool
	}{
		{"127.0.0.1:9000", true, "127.0.0.1:9000", false, true},
		{"minio:9000", false, "minio:9000", true, true},
		{"http://minio:9000", false, "minio:9000", false, true},
		{"https://minio:9000/", true, "minio:9000", true, true},
		{"ftp://minio", false, "", false, false},
		{"http://minio:9000/bucket", false, "", false, false},
		{"minio:9000/bucket", false, "", false, false},
		{"", false, "", false, false},
	} {
		host, secure, err := Config{Endpoint: tc.endpoint, Insecure: tc.insecure}.endpoint()
		if (err == nil) != tc.ok || host != tc.host || secure != tc.secure {
			t.Errorf("endpoint %q: %q, secure %t, %v", tc.endpoint, host, secure, err)
		}
	}
}

func TestOpenRefusesBadConfig(t *testing.T) {
	ctx := context.Background()
	for name, c := range map[string]Config{
		"no bucket":              {Endpoint: "127.0.0.1:9000", AccessKey: "a", SecretKey: "b"},
		"unknown driver":         {Driver: "gcs", Bucket: "b"},
		"minio without keys":     {Endpoint: "127.0.0.1:9000", Bucket: "b"},
		"minio without endpoint": {Bucket: "b", AccessKey: "a", SecretKey: "b"},
	} {
		if _, err := Open(ctx, c); err == nil {
			t.Errorf("%s: Open succeeded", name)
		}
	}
}
