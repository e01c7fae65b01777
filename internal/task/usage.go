package task

// Usage is token counts as the model server reports them in an answer's
// usage object; a task's is the sum over its answered items.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// Add adds v to u.
func (u *Usage) Add(v Usage) {
	u.PromptTokens += v.PromptTokens
	u.CompletionTokens += v.CompletionTokens
	u.TotalTokens += v.TotalTokens
}

// Sub is u minus v: what a recomputed part changes.
func (u Usage) Sub(v Usage) Usage {
	return Usage{u.PromptTokens - v.PromptTokens, u.CompletionTokens - v.CompletionTokens, u.TotalTokens - v.TotalTokens}
}

// IsZero reports whether no token was counted.
func (u Usage) IsZero() bool { return u == Usage{} }
