package console

import "testing"

// TestUsageChart: each day's bars stack to a height in proportion to the
// day's tokens, the busiest day fills the plot, and each model keeps one
// colour.
func TestUsageChart(t *testing.T) {
	rows := []usageRow{
		{Day: "2026-12-01", Model: "a", TotalTokens: 100},
		{Day: "2026-12-01", Model: "b", TotalTokens: 100},
		{Day: "2026-12-03", Model: "a", TotalTokens: 50},
	}
	ch := usageChart(rows, "2026-12-01", "2026-12-03")
	if ch.Max != 200 || len(ch.Bars) != 3 || len(ch.Legend) != 2 || len(ch.Ticks) != 3 {
		t.Fatalf("chart: max %d, %d bars, %d models, %d ticks", ch.Max, len(ch.Bars), len(ch.Legend), len(ch.Ticks))
	}
	plot := ch.Height - 30 - 10
	if h := ch.Bars[0].H + ch.Bars[1].H; h != plot {
		t.Errorf("the busiest day is %d high, want the plot's %d", h, plot)
	}
	if ch.Bars[2].H != plot/4 {
		t.Errorf("a quarter of the busiest day is %d high, want %d", ch.Bars[2].H, plot/4)
	}
	if ch.Bars[0].Colour != ch.Bars[2].Colour || ch.Bars[0].Colour == ch.Bars[1].Colour {
		t.Errorf("colours: %s %s %s", ch.Bars[0].Colour, ch.Bars[1].Colour, ch.Bars[2].Colour)
	}
	if ch.Bars[1].Y+ch.Bars[1].H != ch.Bars[0].Y {
		t.Errorf("model b's bar does not sit on model a's")
	}
}
