package storage

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// minimalPDF is a complete one-page PDF.
const minimalPDF = "%PDF-1.4\n" +
	"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n" +
	"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n" +
	"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >> endobj\n" +
	"xref\n0 4\n0000000000 65535 f \n0000000009 00000 n \n0000000058 00000 n \n0000000115 00000 n \n" +
	"trailer << /Size 4 /Root 1 0 R >>\nstartxref\n188\n%%EOF\n"

// elfHeader is the 64-byte header of an x86-64 executable.
func elfHeader() []byte {
	h := make([]byte, 64)
	copy(h, "\x7fELF\x02\x01\x01")
	binary.LittleEndian.PutUint16(h[16:], 2)    // ET_EXEC
	binary.LittleEndian.PutUint16(h[18:], 0x3e) // x86-64
	binary.LittleEndian.PutUint32(h[20:], 1)
	return h
}

func pngHeader() []byte {
	ihdr := []byte("\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89")
	return append([]byte("\x89PNG\r\n\x1a\n"), ihdr...)
}

func gzipped(t *testing.T, s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	io.WriteString(zw, s)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// batchLine is a request in the OpenAI Batch format with a prompt of n bytes.
func batchLine(i, n int) string {
	return fmt.Sprintf(`{"custom_id":"req-%d","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4","messages":[{"role":"user","content":"%s"}]}}`+"\n", i, strings.Repeat("x", n))
}

func batch(lines, n int) []byte {
	var b strings.Builder
	for i := range lines {
		b.WriteString(batchLine(i, n))
	}
	return []byte(b.String())
}

func TestSniff(t *testing.T) {
	random := make([]byte, 4096)
	rand.NewChaCha8([32]byte{1}).Read(random)
	for _, tc := range []struct {
		name string
		in   []byte
		want Category
	}{
		{"ELF header (even if the file is called .pdf)", elfHeader(), Binary},
		{"minimal PDF", []byte(minimalPDF), Document},
		{"PNG header", pngHeader(), Image},
		{"JSONL batch of short lines", batch(3, 10), Data},
		{"JSONL batch longer than the sniff window", batch(200, 40), Data},
		{"JSONL batch whose first line is longer than the window", batch(3, 5000), Data},
		{"single JSON object", []byte(`{"a": [1, 2, 3]}`), Data},
		{"CSV", []byte("id,name\n1,a\n2,b\n"), Data},
		{"gzip", gzipped(t, "hello"), Archive},
		{"plain text", []byte("Dear reviewer,\nplease approve.\n"), Text},
		{"text that opens a brace but is no JSON", []byte("{ this is not json }\n" + strings.Repeat("prose ", 600)), Text},
		{"random bytes", random, Binary},
		{"empty", nil, Text},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, c := Sniff(tc.in)
			if c != tc.want {
				t.Errorf("Sniff = %q, %s; want category %s", ct, c, tc.want)
			}
			if ct == "" {
				t.Error("empty content type")
			}
		})
	}
}

func TestSniffReaderReplaysHead(t *testing.T) {
	in := batch(300, 30)
	ct, c, r, err := SniffReader(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if c != Data || ct != "application/x-ndjson" {
		t.Errorf("got %q, %s; want application/x-ndjson, data", ct, c)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, in) {
		t.Errorf("replayed %d bytes, want the %d written", len(got), len(in))
	}
}

func TestSniffReaderShortInput(t *testing.T) {
	_, c, r, err := SniffReader(strings.NewReader(minimalPDF))
	if err != nil || c != Document {
		t.Fatalf("got %s, %v; want document", c, err)
	}
	if got, _ := io.ReadAll(r); string(got) != minimalPDF {
		t.Error("short input not replayed whole")
	}
}
