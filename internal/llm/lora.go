package llm

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// How a node loads a fine-tuned model (a LoRA adapter) into its model
// server at run time.
const (
	// LoRAVLLM is vLLM's POST /v1/load_lora_adapter, which vLLM serves
	// only when started with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (and
	// --enable-lora).
	LoRAVLLM = "vllm"
	// LoRASGLang is SGLang's POST /load_lora_adapter, at the server's root.
	LoRASGLang = "sglang"
	// LoRANone: the node loads no adapters, so it serves no fine-tuned
	// model.
	LoRANone = "none"
)

// LoRAAPIs are the values a node's setting takes.
var LoRAAPIs = []string{LoRANone, LoRAVLLM, LoRASGLang}

// LoadLoRAAdapter asks the model server to load the adapter at path
// (a folder on the model server's disk) under name, the model name
// requests will then carry. An adapter the server already holds under
// that name counts as loaded: a node that restarts loads its models
// again.
func (c *Client) LoadLoRAAdapter(ctx context.Context, api, name, path string) error {
	body, err := json.Marshal(map[string]string{"lora_name": name, "lora_path": path})
	if err != nil {
		return err
	}
	cc := c
	switch api {
	case LoRAVLLM:
	case LoRASGLang:
		// SGLang serves it beside /v1, not under it.
		root := *c
		root.baseURL = strings.TrimSuffix(c.baseURL, "/v1")
		cc = &root
	default:
		return fmt.Errorf("llm: no LoRA adapter API %q (want one of %s)", api, strings.Join(LoRAAPIs[1:], ", "))
	}
	_, err = cc.do(ctx, http.MethodPost, "/load_lora_adapter", body)
	if e, ok := err.(*Error); ok && e.StatusCode == http.StatusBadRequest && strings.Contains(strings.ToLower(e.Message), "already") {
		return nil
	}
	return err
}
