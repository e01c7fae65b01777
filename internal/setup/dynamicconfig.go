package setup

import (
	"fmt"
	"os"
	"slices"

	"go.yaml.in/yaml/v3"
)

// DynamicConfig is what priority and fairness need from the server's
// dynamic config: without them tasks still run, but in arrival order.
var DynamicConfig = map[string]any{
	"matching.useNewMatcher":  true,
	"matching.enableFairness": true,
}

// Check is one finding of setup.
type Check struct {
	What string `json:"what"`
	OK   bool   `json:"ok"`
	// Warning: OK, but the store or server lacks something the code works
	// around (Detail says how).
	Warning bool `json:"warning,omitempty"`
	// Detail says what was found, or what to do.
	Detail string `json:"detail,omitempty"`
}

// CheckDynamicConfig reads a server's dynamic config file (the YAML that
// `dynamicConfigClient.filepath` names) and checks each key of
// DynamicConfig has its value without constraints, so it holds for every
// namespace and task queue.
func CheckDynamicConfig(path string) ([]Check, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("setup: dynamic config: %w", err)
	}
	var doc map[string][]struct {
		Value       any            `yaml:"value"`
		Constraints map[string]any `yaml:"constraints"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("setup: dynamic config %s: %w", path, err)
	}
	keys := make([]string, 0, len(DynamicConfig))
	for k := range DynamicConfig {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []Check
	for _, k := range keys {
		c := Check{What: "dynamic config " + k, Detail: fmt.Sprintf("set %s: [{value: %v}] in %s", k, DynamicConfig[k], path)}
		for _, v := range doc[k] {
			if len(v.Constraints) == 0 && v.Value == DynamicConfig[k] {
				c.OK, c.Detail = true, fmt.Sprint(v.Value)
			}
		}
		out = append(out, c)
	}
	return out, nil
}
