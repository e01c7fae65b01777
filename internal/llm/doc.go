// Package llm is the client of the model servers that do the inference for
// batch tasks: anything that speaks the OpenAI Chat Completions API (vLLM,
// SGLang, Ollama, Zhipu BigModel, OpenAI).
//
// The client is deliberately thin. A batch input line's "body" is sent as it
// is and the upstream's answer comes back as raw bytes, so what the batch
// engine writes to its output is exactly what the model server said, and
// fields this package does not know about survive. What the client adds is
// the judgement a batch engine needs: every failure is an *Error whose Kind
// says whether to retry, back off, or give up on the item.
package llm
