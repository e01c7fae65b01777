package storage

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"

	"github.com/gabriel-vasile/mimetype"
)

// Category is the first folder of an object's key, chosen from its content
// (never from its name) so that lifecycle rules and reviewers can trust it.
type Category string

// The categories.
const (
	Document Category = "document" // PDF, office and OpenDocument files
	Image    Category = "image"
	Audio    Category = "audio"
	Video    Category = "video"
	Archive  Category = "archive" // zip, gzip, tar, xz, zstd, 7z, bzip2, rar
	Text     Category = "text"    // prose and code: text/*
	Data     Category = "data"    // JSON, JSONL, CSV, TSV, Parquet, SQLite
	Binary   Category = "binary"  // executables and everything else

	// Checkpoint and Log are never sniffed: they are what autoglm-flow
	// writes about a task (sealed parts and checkpoint records, task logs),
	// kept under their own top-level folder so lifecycle rules can expire
	// them on their own schedule.
	Checkpoint Category = "checkpoint"
	Log        Category = "log"
)

// Categories are all the categories, in a stable order.
var Categories = []Category{Document, Image, Audio, Video, Archive, Text, Data, Binary, Checkpoint, Log}

// Valid reports whether c is one of Categories.
func (c Category) Valid() bool {
	return slices.Contains(Categories, c)
}

// SniffLen is how much of the content Sniff looks at.
const SniffLen = 3072

// byMIME names the category of MIME types that their top-level type does
// not give (application/* mostly). Sniff looks a type up, then its parents
// in mimetype's tree, so docx (a zip) is a document, not an archive.
var byMIME = map[string]Category{
	"application/pdf":               Document,
	"application/msword":            Document,
	"application/vnd.ms-excel":      Document,
	"application/vnd.ms-powerpoint": Document,
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document":   Document,
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":         Document,
	"application/vnd.openxmlformats-officedocument.presentationml.presentation": Document,
	"application/vnd.oasis.opendocument.text":                                   Document,
	"application/vnd.oasis.opendocument.spreadsheet":                            Document,
	"application/vnd.oasis.opendocument.presentation":                           Document,
	"application/epub+zip": Document,
	"text/rtf":             Document,

	"application/zip":             Archive,
	"application/gzip":            Archive,
	"application/x-tar":           Archive,
	"application/x-xz":            Archive,
	"application/zstd":            Archive,
	"application/x-7z-compressed": Archive,
	"application/x-bzip2":         Archive,
	"application/vnd.rar":         Archive,

	"application/json":               Data,
	"application/x-ndjson":           Data,
	"text/csv":                       Data,
	"text/tab-separated-values":      Data,
	"application/vnd.apache.parquet": Data,
	"application/vnd.sqlite3":        Data,

	"application/x-elf":                             Binary,
	"application/vnd.microsoft.portable-executable": Binary,
	"application/x-mach-binary":                     Binary,
}

// Sniff names the content type and category of content from its first
// bytes (SniffLen are enough; more are ignored). JSON Lines is data even
// when the head ends inside a line, where mimetype sees only text/plain.
func Sniff(head []byte) (contentType string, c Category) {
	if len(head) > SniffLen {
		head = head[:SniffLen]
	}
	m := mimetype.Detect(head)
	for t := m; t != nil; t = t.Parent() {
		base, _, _ := strings.Cut(t.String(), ";")
		if c, ok := byMIME[base]; ok {
			return m.String(), c
		}
		switch top, _, _ := strings.Cut(base, "/"); top {
		case "image":
			return m.String(), Image
		case "audio":
			return m.String(), Audio
		case "video":
			return m.String(), Video
		case "text":
			if ct, ok := sniffJSON(head); ok {
				return ct, Data
			}
			return m.String(), Text
		}
	}
	return m.String(), Binary
}

// SniffReader sniffs the first SniffLen bytes of r and returns a reader
// that gives all of r, those bytes included.
func SniffReader(r io.Reader) (contentType string, c Category, rr io.Reader, err error) {
	head := make([]byte, SniffLen)
	n, err := io.ReadFull(r, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", "", nil, err
	}
	head = head[:n]
	contentType, c = Sniff(head)
	return contentType, c, io.MultiReader(bytes.NewReader(head), r), nil
}

// sniffJSON recognizes JSON and JSON Lines in a head that mimetype called
// text/plain: that happens when the first line of a batch is longer than
// the head, so no complete value is in it. It decodes the head's tokens;
// a head cut inside a value is fine when it is SniffLen long.
func sniffJSON(head []byte) (contentType string, ok bool) {
	trimmed := bytes.TrimLeft(head, " \t\r\n\ufeff")
	if len(trimmed) == 0 || trimmed[0] != '{' && trimmed[0] != '[' {
		return "", false
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	values, depth := 0, 0
	for {
		tok, err := dec.Token()
		switch {
		case errors.Is(err, io.EOF) && depth == 0:
			return jsonType(values), values > 0
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return jsonType(values + 1), len(head) >= SniffLen
		case err != nil:
			return "", false
		}
		if d, isDelim := tok.(json.Delim); isDelim {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
		if depth == 0 {
			values++
		}
	}
}

func jsonType(values int) string {
	if values > 1 {
		return "application/x-ndjson"
	}
	return "application/json"
}
