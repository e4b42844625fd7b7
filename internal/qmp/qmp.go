package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Error is an error QEMU returned for a command.
type Error struct {
	Command string
	Class   string
	Desc    string
}

func (e *Error) Error() string { return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc) }

// Event is an asynchronous QMP event.
type Event struct {
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data,omitempty"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// MaxEvents bounds the events kept between calls to Events.
const MaxEvents = 1024

// MaxMessage bounds one QMP message.
const MaxMessage = 16 << 20

// Client is a connection to one QMP socket. Commands are serialised.
type Client struct {
	conn    net.Conn
	rd      *bufio.Reader
	mu      sync.Mutex
	id      int
	events  []Event
	Version string // QEMU version from the greeting
}

type message struct {
	QMP *struct {
		Version struct {
			QEMU struct{ Major, Minor, Micro int } `json:"qemu"`
		} `json:"version"`
	} `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	ID    json.RawMessage `json:"id"`
}

// Dial connects to a QMP unix socket and leaves capabilities negotiation
// mode.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp: %w", err)
	}
	return NewClient(ctx, conn)
}

// NewClient speaks QMP on a connection already made (e.g. to a socket
// beneath a host root); on error it closes conn.
func NewClient(ctx context.Context, conn net.Conn) (*Client, error) {
	c := &Client{conn: conn, rd: bufio.NewReaderSize(conn, 64<<10)}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
	}
	m, _, err := c.read()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	if m.QMP == nil {
		conn.Close()
		return nil, errors.New("qmp: the peer did not greet with QMP")
	}
	v := m.QMP.Version.QEMU
	c.Version = fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro)
	conn.SetDeadline(time.Time{})
	if err := c.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// read reads one message (one JSON object per line).
func (c *Client) read() (message, []byte, error) {
	var line []byte
	for {
		part, isPrefix, err := c.rd.ReadLine()
		if err != nil {
			return message{}, nil, err
		}
		line = append(line, part...)
		if len(line) > MaxMessage {
			return message{}, nil, fmt.Errorf("qmp: message longer than %d bytes", MaxMessage)
		}
		if !isPrefix {
			break
		}
	}
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		return message{}, nil, fmt.Errorf("qmp: bad message %.80q: %w", line, err)
	}
	return m, line, nil
}

// Execute runs a command with arguments (nil for none) and decodes its
// return value into out (nil to ignore it). The context's deadline bounds
// the wait; without one a command may take as long as it takes.
func (c *Client) Execute(ctx context.Context, cmd string, args any, out any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.id++
	id := c.id
	req := map[string]any{"execute": cmd, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	dl, hasDeadline := ctx.Deadline()
	c.conn.SetDeadline(dl)
	defer c.conn.SetDeadline(time.Time{})
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Now()) })
	defer stop()
	for {
		m, raw, err := c.read()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
			}
			// The socket's deadline (the context's) may fire before the
			// context notices.
			if hasDeadline && !time.Now().Before(dl) {
				return fmt.Errorf("qmp %s: %w", cmd, context.DeadlineExceeded)
			}
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
		if m.Event != "" {
			var ev Event
			if json.Unmarshal(raw, &ev) == nil && len(c.events) < MaxEvents {
				c.events = append(c.events, ev)
			}
			continue
		}
		if string(m.ID) != fmt.Sprint(id) {
			continue // a reply to a command whose caller gave up
		}
		if m.Error != nil {
			return &Error{Command: cmd, Class: m.Error.Class, Desc: m.Error.Desc}
		}
		if out != nil && len(m.Return) > 0 {
			if err := json.Unmarshal(m.Return, out); err != nil {
				return fmt.Errorf("qmp %s: bad return: %w", cmd, err)
			}
		}
		return nil
	}
}

// Events returns and forgets the events received so far.
func (c *Client) Events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	ev := c.events
	c.events = nil
	return ev
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
