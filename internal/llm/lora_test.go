package llm_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
)

// Loading a LoRA adapter the vLLM way and the SGLang way, against the
// test model server: the adapter is answered under its name once loaded
// and refused (404, as vLLM does) before; loading it again counts as
// loaded; a folder the model server cannot see is an error.
func TestLoadLoRAAdapter(t *testing.T) {
	ctx := context.Background()
	for _, api := range []string{llm.LoRAVLLM, llm.LoRASGLang} {
		t.Run(api, func(t *testing.T) {
			s := testmodel.New(testmodel.Options{})
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			c := llm.New(llm.Config{BaseURL: s.URL()})
			name, dir := "ft:glm-4-test:demo:x:t1", t.TempDir()
			body := json.RawMessage(`{"model":"` + name + `","messages":[{"role":"user","content":"hi"}]}`)
			var le *llm.Error
			if _, err := c.Chat(ctx, body); !errors.As(err, &le) || le.StatusCode != 404 {
				t.Fatalf("before loading: %v; want 404", err)
			}
			if err := c.LoadLoRAAdapter(ctx, api, name, dir); err != nil {
				t.Fatal(err)
			}
			if err := c.LoadLoRAAdapter(ctx, api, name, dir); err != nil {
				t.Fatalf("loading again: %v; want it counted as loaded", err)
			}
			if loads := s.LoRALoads(); len(loads) != 1 || loads[0] != (testmodel.LoRALoad{API: api, Name: name, Path: dir}) {
				t.Fatalf("the server recorded %+v", loads)
			}
			if _, err := c.Chat(ctx, body); err != nil {
				t.Fatalf("after loading: %v", err)
			}
			if err := c.LoadLoRAAdapter(ctx, api, "ft:glm-4-test:demo:x:t2", dir+"/missing"); err == nil {
				t.Fatal("a missing folder was loaded")
			}
			if err := c.LoadLoRAAdapter(ctx, "triton", name, dir); err == nil {
				t.Fatal("an unknown API was accepted")
			}
		})
	}
}
