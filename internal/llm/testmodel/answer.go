package testmodel

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// created is the "created" time of every answer (2025-01-01T00:00:00Z): a
// fixed value keeps answers byte-for-byte repeatable.
const created = 1735689600

// quoteRunes is how much of the last user message an answer quotes.
const quoteRunes = 80

// request is the part of a chat-completions request the server reads.
type request struct {
	model    string
	messages []message
}

type message struct {
	role string
	text string // the text parts of the content, for quoting and counting
	// canon is the content re-encoded canonically (sorted keys, no white
	// space), so that the digest does not change when a batch engine
	// re-encodes a body it passes through.
	canon []byte
}

// parseRequest reads a chat-completions body. Its errors are worded for
// the client.
func parseRequest(body []byte) (*request, error) {
	var raw struct {
		Model    string `json:"model"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("request body is not a valid chat completions request: %w", err)
	}
	req := &request{model: raw.Model}
	for i, m := range raw.Messages {
		var content any
		if len(m.Content) > 0 {
			if err := json.Unmarshal(m.Content, &content); err != nil {
				return nil, fmt.Errorf("messages[%d].content: %w", i, err)
			}
		}
		text, ok := textOf(content)
		if !ok {
			return nil, fmt.Errorf("messages[%d].content must be a string, null or an array of content parts", i)
		}
		canon, err := json.Marshal(content)
		if err != nil {
			return nil, fmt.Errorf("messages[%d].content: %w", i, err)
		}
		req.messages = append(req.messages, message{role: m.Role, text: text, canon: canon})
	}
	return req, nil
}

// textOf is the text of a message content: a string, or the "text" of the
// text parts of an array (image parts carry none).
func textOf(content any) (string, bool) {
	switch c := content.(type) {
	case nil:
		return "", true
	case string:
		return c, true
	case []any:
		var texts []string
		for _, p := range c {
			part, ok := p.(map[string]any)
			if !ok {
				return "", false
			}
			if s, ok := part["text"].(string); ok && part["type"] == "text" {
				texts = append(texts, s)
			}
		}
		return strings.Join(texts, " "), true
	}
	return "", false
}

// Answer is the assistant content the test model server gives to a
// chat-completions request body: "test model answer to: <the last user
// message, cut to 80 characters> [<digest of model and messages>]". Tests
// use it to check that an output line answers its own input. It does not
// check the model or the context limit, which the server does.
func Answer(body []byte) (string, error) {
	req, err := parseRequest(body)
	if err != nil {
		return "", fmt.Errorf("testmodel: %w", err)
	}
	if len(req.messages) == 0 {
		return "", errors.New("testmodel: request has no messages")
	}
	return req.answer(), nil
}

func (r *request) answer() string {
	return fmt.Sprintf("test model answer to: %s [%s]", clip(strings.Join(strings.Fields(r.lastUserText()), " "), quoteRunes), r.digest())
}

// digest is a short hash of the model and the messages, the part of an
// answer that ties it to exactly one request.
func (r *request) digest() string {
	h := sha256.New()
	h.Write([]byte(r.model))
	for _, m := range r.messages {
		h.Write([]byte{0})
		h.Write([]byte(m.role))
		h.Write([]byte{0})
		h.Write(m.canon)
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}

// lastUserText is the text of the last user message, or of the last
// message when no user spoke.
func (r *request) lastUserText() string {
	for i := len(r.messages) - 1; i >= 0; i-- {
		if r.messages[i].role == "user" {
			return r.messages[i].text
		}
	}
	return r.messages[len(r.messages)-1].text
}

// contextChars is the length of the prompt as the server's context limit
// counts it: characters of text, images free.
func (r *request) contextChars() int {
	n := 0
	for _, m := range r.messages {
		n += utf8.RuneCountInString(m.text)
	}
	return n
}

// promptWords stands in for prompt tokens: one token per word.
func (r *request) promptWords() int {
	n := 0
	for _, m := range r.messages {
		n += len(strings.Fields(m.text))
	}
	return n
}

// clip cuts s to n characters, marking the cut.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// completion is the chat.completion object of an answer.
type completion struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   usage    `json:"usage"`
}

type choice struct {
	Index        int           `json:"index"`
	Message      answerMessage `json:"message"`
	FinishReason string        `json:"finish_reason"`
}

type answerMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func (r *request) completion() completion {
	content := r.answer()
	u := usage{PromptTokens: r.promptWords(), CompletionTokens: len(strings.Fields(content))}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return completion{
		ID:      "chatcmpl-" + r.digest(),
		Object:  "chat.completion",
		Created: created,
		Model:   r.model,
		Choices: []choice{{Message: answerMessage{Role: "assistant", Content: content}, FinishReason: "stop"}},
		Usage:   u,
	}
}
