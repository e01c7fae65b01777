package codec

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

const uiOrigin = "http://127.0.0.1:8233"

// server is the codec endpoint behind a real HTTP server, authenticating
// with a static token the way `autoglm server` does with API keys.
func server(t *testing.T, c *Codec) *httptest.Server {
	t.Helper()
	h := Handler(HandlerOptions{
		Codec: c, Namespace: "default", Origins: []string{uiOrigin},
		Authenticate: func(r *http.Request) (string, error) {
			if r.Header.Get("Authorization") == "Bearer good-token" {
				return "bob", nil
			}
			return "", errors.New("bad token")
		},
		Allowed: func(user string) bool { return user == "bob" },
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, token, namespace string, ps []*commonpb.Payload) (*http.Response, []*commonpb.Payload) {
	t.Helper()
	body, _ := protojson.Marshal(&commonpb.Payloads{Payloads: ps})
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", uiOrigin)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if namespace != "" {
		req.Header.Set(NamespaceHeader, namespace)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out commonpb.Payloads
	if resp.StatusCode == http.StatusOK {
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		if err := protojson.Unmarshal(buf.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
	}
	return resp, out.Payloads
}

func TestCodecEndpointDecodesForAnAuthorizedCallerOnly(t *testing.T) {
	c, _ := New(map[string][]byte{"k1": key(t)}, "k1")
	srv := server(t, c)
	sealed, _ := c.Encode([]*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"canary"`)}})

	resp, got := post(t, srv.URL+"/codec/decode", "good-token", "default", sealed)
	if resp.StatusCode != http.StatusOK || len(got) != 1 || string(got[0].Data) != `"canary"` {
		t.Fatalf("authorized decode: %d %v", resp.StatusCode, got)
	}
	if o := resp.Header.Get("Access-Control-Allow-Origin"); o != uiOrigin {
		t.Errorf("Access-Control-Allow-Origin = %q; want the Web UI's origin", o)
	}
	resp, got = post(t, srv.URL+"/codec/encode", "good-token", "default", got)
	if resp.StatusCode != http.StatusOK || string(got[0].Metadata[MetadataKeyID]) != "k1" {
		t.Fatalf("authorized encode: %d %v", resp.StatusCode, got)
	}

	for _, tc := range []struct {
		name, token, ns string
		want            int
	}{
		{"missing token", "", "default", http.StatusUnauthorized},
		{"wrong token", "bad-token", "default", http.StatusUnauthorized},
		{"foreign namespace", "good-token", "other", http.StatusForbidden},
		{"no namespace header", "good-token", "", http.StatusForbidden},
	} {
		resp, got := post(t, srv.URL+"/codec/decode", tc.token, tc.ns, sealed)
		if resp.StatusCode != tc.want || got != nil {
			t.Errorf("%s: status %d, %d payloads; want %d and none", tc.name, resp.StatusCode, len(got), tc.want)
		}
	}
}

func TestCodecEndpointPreflight(t *testing.T) {
	c, _ := New(map[string][]byte{"k1": key(t)}, "k1")
	srv := server(t, c)
	for origin, want := range map[string]string{uiOrigin: uiOrigin, "http://evil.example": ""} {
		req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/codec/decode", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("preflight from %s: Allow-Origin %q; want %q", origin, got, want)
		}
	}
	resp, err := http.Get(srv.URL + "/elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /elsewhere: %d; want 404", resp.StatusCode)
	}
}

// A body over the limit is refused: with its length declared, 413 before
// it is read; sent without one, 400 once the limit is passed.
func TestHandlerBoundsTheBody(t *testing.T) {
	h := Handler(HandlerOptions{
		Codec: mustCodec(t), Namespace: "default", MaxBodyBytes: 1 << 10,
		Authenticate: func(r *http.Request) (string, error) { return "bob", nil },
	})
	big := bytes.Repeat([]byte("a"), 4<<10)
	for name, body := range map[string]io.Reader{"declared": bytes.NewReader(big), "chunked": io.MultiReader(bytes.NewReader(big))} {
		req := httptest.NewRequest(http.MethodPost, "/codec/decode", body)
		if name == "chunked" {
			req.ContentLength = -1
		}
		req.Header.Set(NamespaceHeader, "default")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		want := http.StatusRequestEntityTooLarge
		if name == "chunked" {
			want = http.StatusBadRequest
		}
		if rec.Code != want {
			t.Errorf("%s: %d %s, want %d", name, rec.Code, rec.Body, want)
		}
	}
}

func mustCodec(t *testing.T) *Codec {
	t.Helper()
	c, err := New(map[string][]byte{"k1": key(t)}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	return c
}
