package devstack

import (
	"errors"
	"os"
	"path/filepath"
)

// BinDir is where `make tools` puts the temporal and minio binaries:
// $AUTOGLM_BIN_DIR if set, else ./bin at the root of the module that holds
// the working directory (so tests find it from any package folder).
func BinDir() (string, error) {
	if d := os.Getenv("AUTOGLM_BIN_DIR"); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "bin"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("devstack: no go.mod above the working directory; set AUTOGLM_BIN_DIR")
		}
		dir = parent
	}
}
