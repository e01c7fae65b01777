package server

import (
	"encoding/json"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// BatchUsage is the usage of OpenAI's Batch object: the tokens of the
// batch's answered requests, as the model server reported them.
type BatchUsage struct {
	InputTokens         int64              `json:"input_tokens"`
	InputTokensDetails  InputTokenDetails  `json:"input_tokens_details"`
	OutputTokens        int64              `json:"output_tokens"`
	OutputTokensDetails OutputTokenDetails `json:"output_tokens_details"`
	TotalTokens         int64              `json:"total_tokens"`
}

// InputTokenDetails is part of BatchUsage; this server counts no cached
// tokens.
type InputTokenDetails struct {
	CachedTokens int64 `json:"cached_tokens"`
}

// OutputTokenDetails is part of BatchUsage; this server counts no
// reasoning tokens apart.
type OutputTokenDetails struct {
	ReasoningTokens int64 `json:"reasoning_tokens"`
}

// usageOf reads the token totals of a task's status, by their names in
// the status's JSON: "usage" with prompt/completion or input/output
// tokens. A status without them gives zeros.
func usageOf(st task.Status) BatchUsage {
	b, err := json.Marshal(st)
	if err != nil {
		return BatchUsage{}
	}
	var v struct {
		Usage struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
			InputTokens      int64 `json:"input_tokens"`
			OutputTokens     int64 `json:"output_tokens"`
			TotalTokens      int64 `json:"total_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal(b, &v) != nil {
		return BatchUsage{}
	}
	u := v.Usage
	in, out := max(u.InputTokens, u.PromptTokens), max(u.OutputTokens, u.CompletionTokens)
	return BatchUsage{InputTokens: in, OutputTokens: out, TotalTokens: max(u.TotalTokens, in+out)}
}
