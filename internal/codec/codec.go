// Package codec encrypts every payload autoglm-flow sends through Temporal
// (workflow inputs and results, activity arguments, queries, updates,
// failures' messages) with AES-256-GCM, so that the history a Temporal
// cluster stores holds no prompt or file name in the clear. Each payload
// names the key that sealed it: a new key id rotates encryption, and the
// old keys stay in the key ring to read older histories.
package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"
)

// Metadata of an encrypted payload.
const (
	// Encoding marks a payload this codec sealed.
	Encoding = "binary/encrypted"
	// MetadataKeyID names the key that sealed the payload.
	MetadataKeyID = "encryption-key-id"
)

// Codec seals payloads with the active key and opens them with whichever
// key of the ring sealed them. It implements converter.PayloadCodec.
type Codec struct {
	active string
	ring   map[string]cipher.AEAD
}

// New makes a codec from keys (id -> 32-byte key) that seals with
// activeID.
func New(keys map[string][]byte, activeID string) (*Codec, error) {
	c := &Codec{active: activeID, ring: map[string]cipher.AEAD{}}
	for id, k := range keys {
		if len(k) != 32 {
			return nil, fmt.Errorf("codec: key %q is %d bytes; AES-256 needs 32", id, len(k))
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("codec: key %q: %w", id, err)
		}
		if c.ring[id], err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("codec: key %q: %w", id, err)
		}
	}
	if _, ok := c.ring[activeID]; !ok {
		return nil, fmt.Errorf("codec: the active key id %q is not among the keys", activeID)
	}
	return c, nil
}

// Parse reads a key ring written as "id:base64key,id2:base64key" (the form
// of AUTOGLM_CODEC_KEYS); the active key is activeID, or the first when
// activeID is empty.
func Parse(ring, activeID string) (*Codec, error) {
	keys := map[string][]byte{}
	var first string
	for entry := range strings.SplitSeq(ring, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		id, b64, ok := strings.Cut(entry, ":")
		if !ok || id == "" {
			// Never echo the entry: it is a secret.
			return nil, errors.New("codec: each key is written id:base64key")
		}
		k, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("codec: key %q is not base64", id)
		}
		if first == "" {
			first = id
		}
		keys[id] = k
	}
	if len(keys) == 0 {
		return nil, errors.New("codec: no keys")
	}
	if activeID == "" {
		activeID = first
	}
	return New(keys, activeID)
}

// KeyIDs are the ids in the ring, sorted.
func (c *Codec) KeyIDs() []string {
	ids := make([]string, 0, len(c.ring))
	for id := range c.ring {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Encode seals each payload with the active key.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	aead := c.ring[c.active]
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return payloads, fmt.Errorf("codec: %w", err)
		}
		nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return payloads, fmt.Errorf("codec: %w", err)
		}
		// The key id is authenticated too, so a payload cannot be relabelled.
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(Encoding),
				MetadataKeyID:              []byte(c.active),
			},
			Data: aead.Seal(nonce, nonce, plain, []byte(c.active)),
		}
	}
	return out, nil
}

// Decode opens each sealed payload; payloads that are not sealed (written
// before encryption was turned on) pass through unchanged.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != Encoding {
			out[i] = p
			continue
		}
		id := string(p.GetMetadata()[MetadataKeyID])
		aead, ok := c.ring[id]
		if !ok {
			return payloads, fmt.Errorf("codec: the payload was sealed with key %q, which is not in this key ring", id)
		}
		if len(p.Data) < aead.NonceSize() {
			return payloads, errors.New("codec: the sealed payload is too short")
		}
		nonce, sealed := p.Data[:aead.NonceSize()], p.Data[aead.NonceSize():]
		plain, err := aead.Open(nil, nonce, sealed, []byte(id))
		if err != nil {
			return payloads, fmt.Errorf("codec: opening a payload sealed with key %q: %w", id, err)
		}
		out[i] = &commonpb.Payload{}
		if err := proto.Unmarshal(plain, out[i]); err != nil {
			return payloads, fmt.Errorf("codec: %w", err)
		}
	}
	return out, nil
}

// DataConverter is the SDK's default converter with c sealing its output.
func DataConverter(c *Codec) converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c)
}

// FailureConverter moves a failure's message and stack trace into an
// encoded payload, since an error may quote user content.
func FailureConverter(dc converter.DataConverter) converter.FailureConverter {
	return temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{DataConverter: dc, EncodeCommonAttributes: true})
}
