package codec

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
)

func key(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestEncodeHidesContentAndDecodeRestoresIt(t *testing.T) {
	c, err := New(map[string][]byte{"k1": key(t)}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	dc := DataConverter(c)
	p, err := dc.ToPayload("canary-7f3a prompt")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(p.Data, []byte("canary-7f3a")) || string(p.Metadata[converter.MetadataEncoding]) != Encoding || string(p.Metadata[MetadataKeyID]) != "k1" {
		t.Fatalf("sealed payload %v still readable or unlabelled", p)
	}
	var got string
	if err := dc.FromPayload(p, &got); err != nil || got != "canary-7f3a prompt" {
		t.Fatalf("FromPayload = %q, %v", got, err)
	}
}

// A new active key seals new payloads, and the ring still opens those the
// old key sealed; a ring without the old key refuses them by name.
func TestRotationByKeyID(t *testing.T) {
	k1, k2 := key(t), key(t)
	old, _ := New(map[string][]byte{"k1": k1}, "k1")
	sealed, err := old.Encode([]*commonpb.Payload{{Data: []byte("hello")}})
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := New(map[string][]byte{"k1": k1, "k2": k2}, "k2")
	if err != nil {
		t.Fatal(err)
	}
	fresh, _ := rotated.Encode([]*commonpb.Payload{{Data: []byte("hello")}})
	if id := string(fresh[0].Metadata[MetadataKeyID]); id != "k2" {
		t.Fatalf("new payloads sealed with %q; want k2", id)
	}
	opened, err := rotated.Decode(sealed)
	if err != nil || string(opened[0].Data) != "hello" {
		t.Fatalf("rotated ring opening a k1 payload: %v, %v", opened, err)
	}
	only2, _ := New(map[string][]byte{"k2": k2}, "k2")
	if _, err := only2.Decode(sealed); err == nil || !strings.Contains(err.Error(), `"k1"`) {
		t.Fatalf("decode without k1: %v; want an error naming k1", err)
	}
}

func TestTamperedOrRelabelledPayloadIsRefused(t *testing.T) {
	k1, k2 := key(t), key(t)
	c, _ := New(map[string][]byte{"k1": k1, "k2": k2}, "k1")
	sealed, _ := c.Encode([]*commonpb.Payload{{Data: []byte("hello")}})
	flipped := &commonpb.Payload{Metadata: sealed[0].Metadata, Data: bytes.Clone(sealed[0].Data)}
	flipped.Data[len(flipped.Data)-1] ^= 1
	if _, err := c.Decode([]*commonpb.Payload{flipped}); err == nil {
		t.Error("a flipped bit was not detected")
	}
	relabelled := &commonpb.Payload{Metadata: map[string][]byte{converter.MetadataEncoding: []byte(Encoding), MetadataKeyID: []byte("k2")}, Data: sealed[0].Data}
	if _, err := c.Decode([]*commonpb.Payload{relabelled}); err == nil {
		t.Error("a payload relabelled with another key id was opened")
	}
}

func TestPlainPayloadsPassThroughDecode(t *testing.T) {
	c, _ := New(map[string][]byte{"k1": key(t)}, "k1")
	plain := &commonpb.Payload{Metadata: map[string][]byte{converter.MetadataEncoding: []byte("json/plain")}, Data: []byte(`"x"`)}
	out, err := c.Decode([]*commonpb.Payload{plain})
	if err != nil || out[0] != plain {
		t.Fatalf("Decode(plain) = %v, %v", out, err)
	}
}

func TestParse(t *testing.T) {
	k1, k2 := base64.StdEncoding.EncodeToString(key(t)), base64.StdEncoding.EncodeToString(key(t))
	c, err := Parse("a:"+k1+", b:"+k2, "")
	if err != nil || c.active != "a" || len(c.KeyIDs()) != 2 {
		t.Fatalf("Parse = %+v, %v; want active a of 2 keys", c, err)
	}
	if c, err = Parse("a:"+k1+",b:"+k2, "b"); err != nil || c.active != "b" {
		t.Fatalf("Parse with active b = %v", err)
	}
	for _, bad := range []string{"", "nokey", "a:!!!", "a:" + base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := Parse(bad, ""); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "!!!") {
			t.Errorf("Parse error %q echoes key material", err)
		}
	}
	if _, err := Parse("a:"+k1, "zz"); err == nil {
		t.Error("an active id outside the ring was accepted")
	}
}
