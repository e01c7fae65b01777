package config

import "testing"

// TestMaxPieces: AUTOGLM_MAX_PIECES sets a queue's slots; the deprecated
// AUTOGLM_MAX_BATCHES is read only when it is unset.
func TestMaxPieces(t *testing.T) {
	for _, c := range []struct {
		name          string
		pieces, batch string
		want          int
	}{
		{"default", "", "", 4},
		{"pieces", "2", "", 2},
		{"deprecated alias", "", "3", 3},
		{"pieces wins", "2", "3", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("AUTOGLM_MAX_PIECES", c.pieces)
			t.Setenv("AUTOGLM_MAX_BATCHES", c.batch)
			cfg, err := FromEnv()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MaxPieces != c.want {
				t.Errorf("MaxPieces = %d; want %d", cfg.MaxPieces, c.want)
			}
		})
	}
}

// TestPieceRequests: AUTOGLM_PIECE_REQUESTS sets the piece size; the
// deprecated AUTOGLM_SHARD_REQUESTS is read only when it is unset.
func TestPieceRequests(t *testing.T) {
	for _, c := range []struct {
		name, pieces, shard string
		want                int
	}{
		{"default", "", "", 50000},
		{"pieces", "100", "", 100},
		{"deprecated alias", "", "150", 150},
		{"pieces wins", "100", "150", 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("AUTOGLM_PIECE_REQUESTS", c.pieces)
			t.Setenv("AUTOGLM_SHARD_REQUESTS", c.shard)
			cfg, err := FromEnv()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.PieceRequests != c.want {
				t.Errorf("PieceRequests = %d; want %d", cfg.PieceRequests, c.want)
			}
		})
	}
}
