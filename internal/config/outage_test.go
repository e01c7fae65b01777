package config

import (
	"strings"
	"testing"
	"time"
)

func TestOutageSettings(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		c, err := FromEnv()
		if err != nil {
			t.Fatal(err)
		}
		want := Outage{After: 0, ProbeMin: time.Second, ProbeMax: 15 * time.Second, HandBack: 5 * time.Minute}
		if c.Outage != want || c.NodeStartTimeout != 10*time.Minute || c.ContinueAsNewEvents != 0 {
			t.Errorf("outage %+v, node start timeout %s, continue-as-new events %d", c.Outage, c.NodeStartTimeout, c.ContinueAsNewEvents)
		}
	})
	t.Run("set", func(t *testing.T) {
		t.Setenv("AUTOGLM_OUTAGE_AFTER", "5")
		t.Setenv("AUTOGLM_OUTAGE_PROBE_MIN", "2s")
		t.Setenv("AUTOGLM_OUTAGE_PROBE_MAX", "1m")
		t.Setenv("AUTOGLM_OUTAGE_HAND_BACK", "0")
		c, err := FromEnv()
		if err != nil {
			t.Fatal(err)
		}
		if want := (Outage{After: 5, ProbeMin: 2 * time.Second, ProbeMax: time.Minute}); c.Outage != want {
			t.Errorf("outage %+v; want %+v", c.Outage, want)
		}
	})
	for name, env := range map[string][2]string{
		"continue-as-new too soon": {"AUTOGLM_CONTINUE_AS_NEW_EVENTS", "10"},
		"probe max below min":      {"AUTOGLM_OUTAGE_PROBE_MAX", "500ms"},
		"negative hand-back":       {"AUTOGLM_OUTAGE_HAND_BACK", "-1s"},
		"no node start timeout":    {"AUTOGLM_NODE_START_TIMEOUT", "0s"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(env[0], env[1])
			if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), env[0]) {
				t.Errorf("%s=%s: %v; want an error naming it", env[0], env[1], err)
			}
		})
	}
}
