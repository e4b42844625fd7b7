package av

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ClamdEngine scans through a clamd unix socket with INSTREAM.
type ClamdEngine struct {
	Socket string
	Chunk  int // INSTREAM chunk size, default 1 MiB
}

// Name implements Engine.
func (c *ClamdEngine) Name() string { return "clamd" }

// MaxReply bounds a clamd reply.
const MaxReply = 4096

// Scan implements Engine.
func (c *ClamdEngine) Scan(ctx context.Context, data []byte) (string, bool, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return "", false, fmt.Errorf("clamd: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	chunk := c.Chunk
	if chunk <= 0 {
		chunk = 1 << 20
	}
	if _, err := conn.Write([]byte("zINSTREAM\x00")); err != nil {
		return "", false, fmt.Errorf("clamd: %w", err)
	}
	var hdr [4]byte
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		binary.BigEndian.PutUint32(hdr[:], uint32(end-off))
		if _, err := conn.Write(hdr[:]); err != nil {
			return readEarly(conn, err)
		}
		if _, err := conn.Write(data[off:end]); err != nil {
			return readEarly(conn, err)
		}
	}
	binary.BigEndian.PutUint32(hdr[:], 0)
	if _, err := conn.Write(hdr[:]); err != nil {
		return readEarly(conn, err)
	}
	reply, err := io.ReadAll(io.LimitReader(conn, MaxReply))
	if err != nil {
		return "", false, fmt.Errorf("clamd: %w", err)
	}
	return ParseClamdReply(reply)
}

// readEarly: clamd closes the stream early when a limit is hit; its reply
// says why.
func readEarly(conn net.Conn, werr error) (string, bool, error) {
	reply, _ := io.ReadAll(io.LimitReader(conn, MaxReply))
	if len(reply) > 0 {
		return ParseClamdReply(reply)
	}
	return "", false, fmt.Errorf("clamd: %w", werr)
}

// ParseClamdReply parses "stream: OK", "stream: NAME FOUND" or
// "...: MESSAGE ERROR" (NUL- or newline-terminated).
func ParseClamdReply(b []byte) (string, bool, error) {
	s := strings.TrimRight(string(b), "\x00\n")
	if i := strings.IndexAny(s, "\x00\n"); i >= 0 {
		return "", false, fmt.Errorf("clamd: more than one reply line: %.100q", s)
	}
	_, rest, ok := strings.Cut(s, ": ")
	if !ok {
		return "", false, fmt.Errorf("clamd: malformed reply %.100q", s)
	}
	switch {
	case rest == "OK":
		return "", false, nil
	case strings.HasSuffix(rest, " FOUND"):
		sig := strings.TrimSuffix(rest, " FOUND")
		if sig == "" || len(sig) > 256 {
			return "", false, fmt.Errorf("clamd: malformed signature in %.100q", s)
		}
		return sig, true, nil
	case strings.HasSuffix(rest, " ERROR"):
		return "", false, fmt.Errorf("clamd: %s", strings.TrimSuffix(rest, " ERROR"))
	}
	return "", false, fmt.Errorf("clamd: unexpected reply %.100q", s)
}

// Clamd is a clamd process of our own with an offline database.
type Clamd struct {
	Dir    string // config, socket, log
	Socket string
	cmd    *exec.Cmd
	done   chan error
}

// ClamdConfig sizes what clamd will accept: HyperAV rebuilds whole files,
// so the limits are raised well above clamd's defaults (25/100 MiB).
type ClamdConfig struct {
	Dir         string // working directory (socket, config, log)
	DatabaseDir string // .ndb, .hdb, .yar ... (offline: nothing is downloaded)
	MaxFileMiB  int    // default 1024
}

// StartClamd starts clamd in the foreground of a child process and waits
// until its socket answers PING.
func StartClamd(ctx context.Context, cfg ClamdConfig) (*Clamd, error) {
	if _, err := exec.LookPath("clamd"); err != nil {
		return nil, errors.New("clamd is not installed (make deps installs clamav-daemon)")
	}
	if cfg.MaxFileMiB == 0 {
		cfg.MaxFileMiB = 1024
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	db, err := filepath.Abs(cfg.DatabaseDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &Clamd{Dir: dir, Socket: filepath.Join(dir, "clamd.sock"), done: make(chan error, 1)}
	os.Remove(c.Socket)
	conf := fmt.Sprintf(`Foreground yes
LocalSocket %s
DatabaseDirectory %s
TemporaryDirectory %s
LogFile %s
MaxFileSize %dM
MaxScanSize %dM
StreamMaxLength %dM
`, c.Socket, db, dir, filepath.Join(dir, "clamd.log"), cfg.MaxFileMiB, cfg.MaxFileMiB, cfg.MaxFileMiB)
	confPath := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	c.cmd = exec.Command("clamd", "--config-file="+confPath)
	var stderr bytes.Buffer
	c.cmd.Stderr = &stderr
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { c.done <- c.cmd.Wait() }()
	deadline := time.Now().Add(time.Minute)
	for {
		if c.ping() == nil {
			return c, nil
		}
		select {
		case err := <-c.done:
			log, _ := os.ReadFile(filepath.Join(dir, "clamd.log"))
			return nil, fmt.Errorf("clamd exited: %v: %s %s", err, stderr.String(), lastLines(log, 5))
		case <-ctx.Done():
			c.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.Stop()
			return nil, errors.New("clamd did not answer within a minute")
		}
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (c *Clamd) ping() error {
	conn, err := net.DialTimeout("unix", c.Socket, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return err
	}
	b, _ := io.ReadAll(io.LimitReader(conn, 64))
	if !bytes.HasPrefix(b, []byte("PONG")) {
		return fmt.Errorf("clamd answered %q to PING", b)
	}
	return nil
}

// Engine returns an engine using this clamd.
func (c *Clamd) Engine() *ClamdEngine { return &ClamdEngine{Socket: c.Socket} }

// Stop ends clamd.
func (c *Clamd) Stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Kill()
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
		}
	}
	os.Remove(c.Socket)
}
