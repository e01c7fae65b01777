// Package batch is the batch inference engine: it streams an OpenAI Batch
// JSONL file, keeps a bounded number of requests in flight against an
// OpenAI-compatible model server, writes the answers in input order in
// sealed parts, and records checkpoints so that a later attempt resumes
// where the last one stopped, with no line lost and none duplicated.
package batch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// ChatCompletionsURL is the only endpoint a batch line may name.
const ChatCompletionsURL = "/v1/chat/completions"

// Request is one line of an OpenAI Batch input file.
type Request struct {
	CustomID string          `json:"custom_id"`
	Method   string          `json:"method"`
	URL      string          `json:"url"`
	Body     json.RawMessage `json:"body"`
}

// OutputLine is one line of output.jsonl or errors.jsonl, in the OpenAI
// Batch output format. Line is ours: the input line number, so that a
// malformed line without a custom_id can still be found.
type OutputLine struct {
	ID       string     `json:"id"`
	CustomID string     `json:"custom_id"`
	Response *Response  `json:"response"`
	Error    *LineError `json:"error"`
	Line     int        `json:"line,omitempty"`
}

// Response is the model server's answer to one request.
type Response struct {
	StatusCode int             `json:"status_code"`
	RequestID  string          `json:"request_id"`
	Body       json.RawMessage `json:"body"`
}

// LineError says why a request has no answer.
type LineError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes of lines that never reached the model server.
const (
	CodeMalformedLine  = "malformed_line"
	CodeInvalidRequest = "invalid_request"
	CodeLineTooLong    = "line_too_long"
	CodeModelMismatch  = "model_not_allowed"
)

// ParseRequest checks one input line. A line that fails is answered in
// errors.jsonl with the returned LineError; it never fails the batch.
func ParseRequest(raw []byte, model string) (Request, *LineError) {
	var r Request
	if bytes.HasPrefix(raw, []byte("\xef\xbb\xbf")) {
		return r, &LineError{CodeMalformedLine, "the line starts with a byte-order mark; save the file as UTF-8 without BOM"}
	}
	if !utf8.Valid(raw) {
		return r, &LineError{CodeMalformedLine, "the line is not valid UTF-8"}
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, &LineError{CodeMalformedLine, "the line is not a JSON object: " + err.Error()}
	}
	switch {
	case r.CustomID == "":
		return r, &LineError{CodeInvalidRequest, "custom_id is missing"}
	case r.Method != "POST":
		return r, &LineError{CodeInvalidRequest, fmt.Sprintf("method is %q; only POST is supported", r.Method)}
	case r.URL != ChatCompletionsURL:
		return r, &LineError{CodeInvalidRequest, fmt.Sprintf("url is %q; only %s is supported", r.URL, ChatCompletionsURL)}
	}
	var body struct {
		Model    string          `json:"model"`
		Messages json.RawMessage `json:"messages"`
	}
	if len(r.Body) == 0 || json.Unmarshal(r.Body, &body) != nil {
		return r, &LineError{CodeInvalidRequest, "body is missing or not a JSON object"}
	}
	if len(body.Messages) == 0 {
		return r, &LineError{CodeInvalidRequest, "body.messages is missing"}
	}
	if model != "" && body.Model != model {
		return r, &LineError{CodeModelMismatch, fmt.Sprintf("body.model is %q but the task runs %q", body.Model, model)}
	}
	return r, nil
}

// LineReader reads lines of at most max bytes; a longer line is consumed
// whole but reported as too long, so memory stays bounded whatever the
// input holds.
type LineReader struct {
	r      *bufio.Reader
	max    int
	line   int
	offset int64
	buf    []byte
}

// NewLineReader reads from r.
func NewLineReader(r io.Reader, max int) *LineReader {
	return &LineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// StartAt numbers the next line first instead of 1, for a reader that
// starts inside a file.
func (lr *LineReader) StartAt(first int) { lr.line = first - 1 }

// Offset is how many bytes the lines returned so far took, line ends
// included: the byte offset of the next line.
func (lr *LineReader) Offset() int64 { return lr.offset }

// Next returns the next line without its end-of-line, its 1-based number,
// and whether it was longer than max (then the line is nil). The line is
// valid until the next call. At the end it returns io.EOF.
func (lr *LineReader) Next() (line []byte, number int, tooLong bool, err error) {
	lr.buf = lr.buf[:0]
	for {
		chunk, err := lr.r.ReadSlice('\n')
		lr.offset += int64(len(chunk))
		if len(lr.buf)+len(chunk) > lr.max+2 { // +2: room for \r\n
			tooLong = true
		}
		if !tooLong {
			lr.buf = append(lr.buf, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && (err != io.EOF || (len(lr.buf) == 0 && !tooLong)) {
			return nil, 0, false, err
		}
		lr.line++
		line := bytes.TrimRight(lr.buf, "\r\n")
		if tooLong || len(line) > lr.max {
			// The +2 above lets a line end in; the line itself is held to max.
			return nil, lr.line, true, nil
		}
		return line, lr.line, false, nil
	}
}
