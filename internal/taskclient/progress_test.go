package taskclient

import "testing"

// The status names the nodes that run the pieces, as their heartbeats
// say, instead of the model's queue they were dispatched to; nodes the
// workflow named keep their place after them.
func TestRunningNodes(t *testing.T) {
	for _, tc := range []struct {
		dispatched string
		running    map[int]string
		want       string
	}{
		{"any:glm-4", map[int]string{0: "gpu-1"}, "gpu-1"},
		{"any:glm-4", nil, "any:glm-4"},
		{"gpu-1, any:glm-4", map[int]string{1: "gpu-2", 0: "gpu-1"}, "gpu-1, gpu-2"},
		{"gpu-3, any:glm-4", map[int]string{1: "gpu-2"}, "gpu-2, gpu-3"},
	} {
		if got := runningNodes(tc.dispatched, tc.running); got != tc.want {
			t.Errorf("runningNodes(%q, %v) = %q; want %q", tc.dispatched, tc.running, got, tc.want)
		}
	}
}
