package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
)

// context is how many characters the model sees before the one it
// predicts.
const context = 8

// embed is the width of a character's embedding.
const embed = 16

// model is a character-level language model: the embeddings of the last
// context characters, one tanh hidden layer, a softmax over the
// vocabulary. Every number is a float64 in one slice, so weights and
// optimizer state are written and read back bit for bit.
type model struct {
	vocab  []byte // index 0 is the padding before the text starts
	hidden int
	params []float64
	// offsets into params
	emb, w1, b1, w2, b2 int
}

func newModel(vocab []byte, hidden int, rng *rand.Rand) *model {
	m := &model{vocab: vocab, hidden: hidden}
	v := len(vocab)
	m.emb = 0
	m.w1 = m.emb + v*embed
	m.b1 = m.w1 + context*embed*hidden
	m.w2 = m.b1 + hidden
	m.b2 = m.w2 + hidden*v
	m.params = make([]float64, m.b2+v)
	init := func(from, n int, scale float64) {
		for i := range n {
			m.params[from+i] = (rng.Float64()*2 - 1) * scale
		}
	}
	init(m.emb, v*embed, 1)
	init(m.w1, context*embed*hidden, 1/math.Sqrt(float64(context*embed)))
	init(m.w2, hidden*v, 1/math.Sqrt(float64(hidden)))
	return m
}

// vocabOf is the sorted set of bytes of text, after the padding index.
func vocabOf(text []byte) []byte {
	seen := [256]bool{}
	for _, c := range text {
		seen[c] = true
	}
	vocab := []byte{0}
	for c := range 256 {
		if seen[c] && c != 0 {
			vocab = append(vocab, byte(c))
		}
	}
	return vocab
}

func encode(text, vocab []byte) []int {
	idx := [256]int{}
	for i, c := range vocab {
		idx[c] = i
	}
	out := make([]int, len(text))
	for i, c := range text {
		out[i] = idx[c]
	}
	return out
}

// step computes the mean cross-entropy of predicting data[p] from the
// characters before it, for every p in batch, and adds its gradient to
// grad.
func (m *model) step(data []int, batch []int, grad []float64) float64 {
	v, h := len(m.vocab), m.hidden
	x := make([]float64, context*embed)
	a := make([]float64, h)
	z := make([]float64, v)
	dz := make([]float64, v)
	da := make([]float64, h)
	ctx := make([]int, context)
	loss := 0.0
	scale := 1 / float64(len(batch))
	for _, p := range batch {
		for k := range context {
			ctx[k] = 0
			if q := p - context + k; q >= 0 {
				ctx[k] = data[q]
			}
			copy(x[k*embed:(k+1)*embed], m.params[m.emb+ctx[k]*embed:])
		}
		for j := range h {
			s := m.params[m.b1+j]
			for i, xi := range x {
				s += xi * m.params[m.w1+i*h+j]
			}
			a[j] = math.Tanh(s)
		}
		zmax := math.Inf(-1)
		for o := range v {
			s := m.params[m.b2+o]
			for j, aj := range a {
				s += aj * m.params[m.w2+j*v+o]
			}
			z[o] = s
			zmax = max(zmax, s)
		}
		sum := 0.0
		for o := range v {
			z[o] = math.Exp(z[o] - zmax)
			sum += z[o]
		}
		target := data[p]
		loss -= math.Log(z[target] / sum)
		for o := range v {
			dz[o] = z[o] / sum * scale
		}
		dz[target] -= scale
		for j := range h {
			da[j] = 0
		}
		for j, aj := range a {
			for o := range v {
				grad[m.w2+j*v+o] += aj * dz[o]
				da[j] += m.params[m.w2+j*v+o] * dz[o]
			}
		}
		for o := range v {
			grad[m.b2+o] += dz[o]
		}
		for j := range h {
			ds := da[j] * (1 - a[j]*a[j])
			grad[m.b1+j] += ds
			for i, xi := range x {
				grad[m.w1+i*h+j] += xi * ds
			}
			for k := range context {
				for e := range embed {
					i := k*embed + e
					grad[m.emb+ctx[k]*embed+e] += m.params[m.w1+i*h+j] * ds
				}
			}
		}
	}
	return loss * scale
}

// adam is the Adam optimizer's state.
type adam struct {
	M, V []float64
	T    int
}

func (o *adam) apply(params, grad []float64, lr float64) {
	const b1, b2, eps = 0.9, 0.999, 1e-8
	o.T++
	c1 := 1 - math.Pow(b1, float64(o.T))
	c2 := 1 - math.Pow(b2, float64(o.T))
	for i, g := range grad {
		o.M[i] = b1*o.M[i] + (1-b1)*g
		o.V[i] = b2*o.V[i] + (1-b2)*g*g
		params[i] -= lr * (o.M[i] / c1) / (math.Sqrt(o.V[i]/c2) + eps)
	}
}

func writeFloats(path string, fs ...[]float64) error {
	var buf bytes.Buffer
	for _, f := range fs {
		if err := binary.Write(&buf, binary.LittleEndian, f); err != nil {
			return err
		}
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func readFloats(path string, fs ...[]float64) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	r := bytes.NewReader(b)
	for _, f := range fs {
		if err := binary.Read(r, binary.LittleEndian, f); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	if r.Len() != 0 {
		return fmt.Errorf("%s: %d bytes more than the model holds", path, r.Len())
	}
	return nil
}

// modelConfig is config.json: what a reader needs to load model.bin.
type modelConfig struct {
	Architecture string `json:"architecture"`
	Vocab        []int  `json:"vocab"`
	Context      int    `json:"context"`
	Embed        int    `json:"embed"`
	Hidden       int    `json:"hidden"`
}

func (m *model) config() ([]byte, error) {
	vocab := make([]int, len(m.vocab))
	for i, c := range m.vocab {
		vocab[i] = int(c)
	}
	return json.MarshalIndent(modelConfig{"char-mlp", vocab, context, embed, m.hidden}, "", "  ")
}

// sameVocab checks a checkpoint's config against the model built from the
// data.
func (m *model) sameVocab(b []byte) error {
	var c modelConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return err
	}
	want, _ := m.config()
	var w modelConfig
	_ = json.Unmarshal(want, &w)
	if !slices.Equal(c.Vocab, w.Vocab) || c.Hidden != w.Hidden {
		return fmt.Errorf("the checkpoint's model (hidden %d, %d characters) is not this run's (hidden %d, %d characters)", c.Hidden, len(c.Vocab), w.Hidden, len(w.Vocab))
	}
	return nil
}
