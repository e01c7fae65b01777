package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/llm"
)

// Chatter counts and times every request a batch sends to the model
// server, and the tokens its answers report.
type Chatter struct {
	Next batch.Chatter
	App  *App
}

// Chat sends body through Next.
func (c Chatter) Chat(ctx context.Context, body json.RawMessage) (*llm.Response, error) {
	start := time.Now()
	resp, err := c.Next.Chat(ctx, body)
	if c.App == nil || ctx.Err() != nil {
		// A cancelled request says nothing about the model server.
		return resp, err
	}
	outcome := "ok"
	if err != nil {
		outcome = "UpstreamUnavailable"
		var le *llm.Error
		if errors.As(err, &le) {
			outcome = string(le.Kind)
		}
	}
	c.App.Requests.WithLabelValues(outcome).Inc()
	c.App.RequestSeconds.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	if resp != nil {
		c.App.Tokens.WithLabelValues("in").Add(float64(resp.Usage.PromptTokens))
		c.App.Tokens.WithLabelValues("out").Add(float64(resp.Usage.CompletionTokens))
	}
	return resp, err
}

// Models asks Next for the models it serves, where it can say: the node's
// health check asks through this wrapper.
func (c Chatter) Models(ctx context.Context) ([]string, error) {
	m, ok := c.Next.(interface {
		Models(context.Context) ([]string, error)
	})
	if !ok {
		return nil, errors.New("the model client cannot list its models")
	}
	return m.Models(ctx)
}
