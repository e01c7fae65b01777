package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
)

// PostgresBinDir is where Debian's postgresql package puts the server.
const PostgresBinDir = "/usr/lib/postgresql/15/bin"

// pgUser owns the Temporal databases; it is the superuser initdb makes.
const pgUser = "temporal"

// postgres is the cluster's database server: a data folder of its own,
// a private port and socket folder, and (when we are root, which
// PostgreSQL refuses to run as) the `postgres` system user.
type postgres struct {
	dir, data, socket string
	port              int
	password          string
	cred              *syscall.Credential
	log               string
	proc              *devstack.Process
}

func newPostgres(dir, logDir string, port int) (*postgres, error) {
	pg := &postgres{dir: dir, data: filepath.Join(dir, "data"), socket: filepath.Join(dir, "socket"), port: port, log: filepath.Join(logDir, "postgres.log")}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("cluster: PostgreSQL refuses to run as root and there is no postgres user to run it as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		pg.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if _, err := os.Stat(filepath.Join(PostgresBinDir, "postgres")); err != nil {
		return nil, fmt.Errorf("cluster: PostgreSQL 15 is not installed in %s: apt-get install postgresql", PostgresBinDir)
	}
	return pg, nil
}

// own gives path to the user PostgreSQL runs as.
func (pg *postgres) own(path string) error {
	if pg.cred == nil {
		return nil
	}
	return os.Chown(path, int(pg.cred.Uid), int(pg.cred.Gid))
}

// init runs initdb once; it reports whether the data folder is new. The
// password of pgUser is made here and kept beside the data, 0600.
func (pg *postgres) init(ctx context.Context) (bool, error) {
	pwPath := filepath.Join(pg.dir, "password")
	if _, err := os.Stat(filepath.Join(pg.data, "PG_VERSION")); err == nil {
		b, err := os.ReadFile(pwPath)
		if err != nil {
			return false, fmt.Errorf("cluster: %s holds a database but its password is gone: %w", pg.data, err)
		}
		pg.password = string(b)
		return false, nil
	}
	for _, d := range []string{pg.data, pg.socket} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return false, fmt.Errorf("cluster: %w", err)
		}
		if err := pg.own(d); err != nil {
			return false, fmt.Errorf("cluster: %w", err)
		}
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return false, err
	}
	pg.password = hex.EncodeToString(b)
	if err := os.WriteFile(pwPath, []byte(pg.password), 0o600); err != nil {
		return false, fmt.Errorf("cluster: %w", err)
	}
	// initdb reads the password from a file the postgres user can read;
	// it goes once initdb is done.
	pwFile := filepath.Join(pg.socket, "initdb-password")
	if err := os.WriteFile(pwFile, []byte(pg.password+"\n"), 0o600); err != nil {
		return false, fmt.Errorf("cluster: %w", err)
	}
	defer os.Remove(pwFile)
	if err := pg.own(pwFile); err != nil {
		return false, fmt.Errorf("cluster: %w", err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(PostgresBinDir, "initdb"),
		"-D", pg.data, "-U", pgUser, "--pwfile", pwFile, "-E", "UTF8", "--locale", "C",
		// Sockets in our folder trust their user; TCP asks the password.
		"--auth-local", "trust", "--auth-host", "scram-sha-256", "--no-sync")
	cmd.SysProcAttr = devstack.SysProcAttr()
	cmd.SysProcAttr.Credential = pg.cred
	if out, err := cmd.CombinedOutput(); err != nil {
		return false, fmt.Errorf("cluster: initdb %s: %v\n%s", pg.data, err, out)
	}
	return true, nil
}

// start runs the server on loopback and waits until it accepts
// connections.
func (pg *postgres) start(ctx context.Context) error {
	p, err := devstack.StartProcess(devstack.ProcessOptions{
		Name: "postgres", Bin: filepath.Join(PostgresBinDir, "postgres"), Credential: pg.cred, LogPath: pg.log,
		Args: []string{"-D", pg.data, "-p", strconv.Itoa(pg.port), "-h", "127.0.0.1", "-k", pg.socket,
			// Five Temporal processes, each with its two pools.
			"-c", "max_connections=300",
			// A commit returns before its WAL reaches the disk: a server
			// restart loses nothing, an OS crash the last moments.
			"-c", "synchronous_commit=off"},
	})
	if err != nil {
		return err
	}
	pg.proc = p
	return p.WaitFor(ctx, 60*time.Second, func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, filepath.Join(PostgresBinDir, "pg_isready"), "-h", "127.0.0.1", "-p", strconv.Itoa(pg.port), "-U", pgUser, "-d", "postgres").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

// stop is PostgreSQL's fast shutdown (SIGINT): SIGTERM would wait for
// Temporal's pooled connections to close, which they never do.
func (pg *postgres) stop() error {
	if pg.proc == nil {
		return nil
	}
	return pg.proc.StopWith(syscall.SIGINT, 30*time.Second)
}

// allowTraversal makes dir and the folders above it that we own
// traversable by others, so that the postgres user reaches its data
// (os.MkdirTemp makes 0700 folders).
func allowTraversal(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return errors.Join(fmt.Errorf("cluster: the postgres user cannot reach %s", dir), err)
			}
		}
		if parent := filepath.Dir(d); parent == d {
			return nil
		}
	}
}
