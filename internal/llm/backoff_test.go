package llm

import (
	"testing"
	"time"
)

func TestBackoffStaysUnderTheExponentialCeiling(t *testing.T) {
	const base, maxDelay = 100 * time.Millisecond, 10 * time.Second
	for attempt, ceiling := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := Backoff(attempt, base, maxDelay, 0)
			if d < 0 || d >= ceiling {
				t.Fatalf("Backoff(%d) = %s, want in [0, %s)", attempt, d, ceiling)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("Backoff(%d) gave %d distinct values in 200 draws: no jitter?", attempt, len(seen))
		}
	}
}

func TestBackoffHonoursRetryAfterAndMax(t *testing.T) {
	for range 200 {
		if d := Backoff(0, 100*time.Millisecond, 10*time.Second, 3*time.Second); d != 3*time.Second {
			t.Fatalf("retryAfter 3s over a 100ms backoff: got %s, want 3s", d)
		}
		if d := Backoff(5, time.Second, 10*time.Second, 2*time.Second); d < 2*time.Second || d > 10*time.Second {
			t.Fatalf("got %s, want in [2s, 10s]", d)
		}
		if d := Backoff(30, time.Second, 3*time.Second, 0); d > 3*time.Second {
			t.Fatalf("attempt 30: got %s, over the 3s max", d)
		}
		if d := Backoff(0, time.Second, 5*time.Second, time.Minute); d != 5*time.Second {
			t.Fatalf("retryAfter over max: got %s, want the 5s max", d)
		}
	}
}

func TestBackoffEdges(t *testing.T) {
	if d := Backoff(1_000_000, time.Second, 0, 0); d < 0 {
		t.Errorf("huge attempt without max: %s", d)
	}
	if d := Backoff(-3, time.Second, time.Minute, 0); d >= time.Second {
		t.Errorf("negative attempt: %s, want under base", d)
	}
	if d := Backoff(4, 0, time.Minute, 2*time.Second); d != 2*time.Second {
		t.Errorf("no base: %s, want retryAfter", d)
	}
}
