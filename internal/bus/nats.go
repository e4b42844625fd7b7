package bus

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"secaas/internal/node"
)

// Names on NATS. Desired states and statuses are key-value buckets (the
// newest value per host); events and results are work-queue streams that
// the controller's durable consumer drains, acknowledging each message
// only once it is stored; calls are request/reply.
const (
	bucketDesired = "secaas_desired"
	bucketStatus  = "secaas_status"
	streamEvents  = "SECAAS_EVENTS"
	streamResults = "SECAAS_RESULTS"
	subjEvents    = "secaas.events."
	subjResults   = "secaas.results."
	subjCall      = "secaas.call."
	consumerName  = "controller"
)

// MaxPayload is the largest message the embedded server takes: a host's
// desired state travels compressed in one message. An external cluster
// needs at least as much (max_payload) for large fleets.
const MaxPayload = 32 << 20

// Server is a NATS server with JetStream embedded in the controller.
type Server struct {
	ns *server.Server
}

// StartServer starts a NATS server listening on addr (host:port; port 0
// picks one) that keeps JetStream's data under dir and admits clients
// with token.
func StartServer(addr, dir, token string) (*Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("nats listen address %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("nats listen address %q: %w", addr, err)
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	if len(token) < 16 {
		return nil, errors.New("nats: the bus token must have at least 16 characters")
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "secaas-controller", Host: host, Port: p,
		JetStream: true, StoreDir: dir, MaxPayload: MaxPayload, MaxPending: 2 * MaxPayload,
		Authorization: token, NoSigs: true, NoLog: true,
	})
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("nats server: not ready within 30 s")
	}
	return &Server{ns: ns}, nil
}

// URL is where clients reach the server.
func (s *Server) URL() string { return s.ns.ClientURL() }

// Close shuts the server down (JetStream's data stays on disk).
func (s *Server) Close() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// NATS is the node contract over NATS JetStream: a Fleet and a consumer
// of reports for the controller, a Link for an agent.
type NATS struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	desired jetstream.KeyValue
	status  jetstream.KeyValue
	log     *slog.Logger
	ready   chan struct{} // closed once the buckets and streams exist
}

var (
	_ node.Fleet = (*NATS)(nil)
	_ node.Link  = (*NATS)(nil)
)

// Dial connects to NATS at url with token as name (a node or
// "controller"), reconnecting for ever when the connection drops, and
// makes sure the buckets and streams exist. A wrong token is an error at
// once. A server that cannot be reached yet is not: an agent must start
// enforcing its persisted state without a controller, so the bus gets
// ready in the background and every operation waits for it (or its ctx).
func Dial(ctx context.Context, url, token, name string, log *slog.Logger) (*NATS, error) {
	nc, err := nats.Connect(url, nats.Name("secaas-"+name), nats.Token(token),
		nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond), nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("bus disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("bus reconnected") }))
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", url, err)
	}
	b := &NATS{nc: nc, log: log, ready: make(chan struct{})}
	if b.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, err
	}
	for deadline := time.Now().Add(2 * time.Second); !nc.IsConnected() && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err := authErr(nc); err != nil {
			nc.Close()
			return nil, err
		}
	}
	if !nc.IsConnected() {
		log.Warn("bus not reachable yet: going on, and waiting for it in the background", "url", url)
		go b.setup(context.WithoutCancel(ctx))
		return b, nil
	}
	if err := b.setup(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return b, nil
}

func authErr(nc *nats.Conn) error {
	if last := nc.LastError(); errors.Is(last, nats.ErrAuthorization) || errors.Is(last, nats.ErrAuthExpired) {
		return fmt.Errorf("bus: %w (check the bus token)", last)
	}
	return nil
}

// setup creates (or keeps) the buckets and streams, trying until ctx ends
// while the server is not reachable, and then says the bus is ready.
func (b *NATS) setup(ctx context.Context) error {
	for pause := 100 * time.Millisecond; ; pause = min(2*pause, 2*time.Second) {
		err := b.setupOnce(ctx)
		if err == nil {
			close(b.ready)
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if err := authErr(b.nc); err != nil {
			b.log.Error("bus refused", "err", err)
			return err
		}
		b.log.Warn("bus not ready: trying again", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("bus: %w (last: %v)", ctx.Err(), err)
		case <-time.After(pause):
		}
	}
}

// wait waits until the bus is ready or ctx ends.
func (b *NATS) wait(ctx context.Context) error {
	select {
	case <-b.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("bus not ready: %w", ctx.Err())
	}
}

func (b *NATS) setupOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var err error
	if b.desired, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucketDesired, History: 1,
		Storage: jetstream.FileStorage, Description: "each host's desired state (gzip JSON)"}); err != nil {
		return fmt.Errorf("bucket %s: %w", bucketDesired, err)
	}
	if b.status, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucketStatus, History: 1,
		Storage: jetstream.FileStorage, Description: "each host's last status"}); err != nil {
		return fmt.Errorf("bucket %s: %w", bucketStatus, err)
	}
	for name, subj := range map[string]string{streamEvents: subjEvents, streamResults: subjResults} {
		if _, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj + ">"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
			// Full: publishers are refused and keep what they have (backpressure, not loss).
			MaxBytes: 1 << 30, Discard: jetstream.DiscardNew, Duplicates: 10 * time.Minute}); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	return nil
}

// Close drains and closes the connection.
func (b *NATS) Close() {
	b.nc.Drain()
	b.nc.Close()
}

// key makes a host name a key and subject token ('.' separates tokens).
func key(host string) string { return strings.ReplaceAll(host, ".", "=2E") }

func unkey(k string) string { return strings.ReplaceAll(k, "=2E", ".") }

func zip(v any) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(v); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// maxDesired bounds a desired state's decompressed size.
var maxDesired = 1 << 30

func unzip(b []byte, v any) error {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return err
	}
	raw, err := io.ReadAll(io.LimitReader(zr, int64(maxDesired)+1))
	if err != nil {
		return err
	}
	if len(raw) > maxDesired {
		return errors.New("desired state too large")
	}
	return json.Unmarshal(raw, v)
}

// Publish puts d as its host's desired state.
func (b *NATS) Publish(ctx context.Context, d node.Desired) error {
	if err := b.wait(ctx); err != nil {
		return err
	}
	v, err := zip(d)
	if err != nil {
		return err
	}
	_, err = b.desired.Put(ctx, key(d.Host), v)
	return err
}

// reply is a call's answer on the wire.
type reply struct {
	Doc   json.RawMessage `json:"doc,omitempty"`
	Error *node.Remote    `json:"error,omitempty"`
}

// Call asks host for on-demand work: ErrUnreachable when no agent of that
// host listens.
func (b *NATS) Call(ctx context.Context, host string, c node.Call) (json.RawMessage, error) {
	req, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
	}
	msg, err := b.nc.RequestWithContext(ctx, subjCall+key(host), req)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("host %q: %w", host, node.ErrUnreachable)
	}
	if err != nil {
		return nil, fmt.Errorf("host %q: %w", host, err)
	}
	var r reply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return nil, fmt.Errorf("host %q: bad reply: %w", host, err)
	}
	if r.Error != nil {
		return nil, r.Error.Err()
	}
	return r.Doc, nil
}

// Desired delivers host's desired states, the current one first; a newer
// one replaces one not yet taken.
func (b *NATS) Desired(ctx context.Context, host string) (<-chan node.Desired, error) {
	if err := b.wait(ctx); err != nil {
		return nil, err
	}
	w, err := b.desired.Watch(ctx, key(host))
	if err != nil {
		return nil, err
	}
	out := make(chan node.Desired, 1)
	go func() {
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil || e.Operation() != jetstream.KeyValuePut {
					continue // end of the initial values, or a deletion
				}
				var d node.Desired
				if err := unzip(e.Value(), &d); err != nil {
					b.log.Error("bad desired state on the bus", "host", host, "err", err)
					continue
				}
				offer(out, d)
			}
		}
	}()
	return out, nil
}

// Serve answers host's calls with h, each in its own goroutine, until
// ctx ends.
func (b *NATS) Serve(ctx context.Context, host string, h node.Handler) error {
	sub, err := b.nc.QueueSubscribe(subjCall+key(host), "agents", func(m *nats.Msg) {
		go func() {
			var c node.Call
			var r reply
			if err := json.Unmarshal(m.Data, &c); err != nil {
				r.Error = &node.Remote{Code: "failed", Message: "bad call: " + err.Error()}
			} else if doc, err := h(ctx, c); err != nil {
				rem := node.ToRemote(err)
				r.Error = &rem
			} else {
				r.Doc = doc
			}
			out, _ := json.Marshal(r)
			if err := m.Respond(out); err != nil {
				b.log.Error("answer a call", "host", host, "err", err)
			}
		}()
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	return sub.Unsubscribe()
}

// Status puts the host's status.
func (b *NATS) Status(ctx context.Context, s node.Status) error {
	if err := b.wait(ctx); err != nil {
		return err
	}
	v, err := json.Marshal(s)
	if err != nil {
		return err
	}
	_, err = b.status.Put(ctx, key(s.Host), v)
	return err
}

// Events publishes a batch of one host's events as one message, with an
// id that makes a batch sent again (after a lost acknowledgement) count
// once.
func (b *NATS) Events(ctx context.Context, evs []node.Event) error {
	if len(evs) == 0 {
		return nil
	}
	if err := b.wait(ctx); err != nil {
		return err
	}
	v, err := json.Marshal(evs)
	if err != nil {
		return err
	}
	id := fmt.Sprintf("%s/%d-%d", evs[0].Host, evs[0].Seq, evs[len(evs)-1].Seq)
	_, err = b.js.Publish(ctx, subjEvents+key(evs[0].Host), v, jetstream.WithMsgID(id))
	return err
}

// Result publishes one result.
func (b *NATS) Result(ctx context.Context, r node.Result) error {
	if err := b.wait(ctx); err != nil {
		return err
	}
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = b.js.Publish(ctx, subjResults+key(r.Host), v)
	return err
}

// Receive delivers what the hosts report to sink until ctx ends: events
// and results in the order they were published, each message
// acknowledged only once sink took it (refused ones come again after a
// pause), and every status as it changes.
func (b *NATS) Receive(ctx context.Context, sink node.Sink) error {
	if err := b.wait(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	run := func(f func(context.Context, node.Sink) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx, sink); err != nil && ctx.Err() == nil {
				errc <- err
			}
		}()
	}
	run(b.receiveStatus)
	run(func(ctx context.Context, sink node.Sink) error {
		return b.drain(ctx, streamEvents, func(data []byte) error {
			var evs []node.Event
			if err := json.Unmarshal(data, &evs); err != nil {
				b.log.Error("bad events on the bus: dropped", "err", err)
				return nil
			}
			return sink.Events(ctx, evs)
		})
	})
	run(func(ctx context.Context, sink node.Sink) error {
		return b.drain(ctx, streamResults, func(data []byte) error {
			var r node.Result
			if err := json.Unmarshal(data, &r); err != nil {
				b.log.Error("bad result on the bus: dropped", "err", err)
				return nil
			}
			return sink.Result(ctx, r)
		})
	})
	wg.Wait()
	close(errc)
	return <-errc
}

// drain consumes a stream with the controller's durable consumer, one
// message in flight (so order holds across redeliveries), each fetched
// on its own: a message that arrives as ctx ends is handed back at once
// (not left to its acknowledgement timeout, which holds the stream).
func (b *NATS) drain(ctx context.Context, stream string, take func([]byte) error) error {
	cons, err := b.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: consumerName,
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1, AckWait: ackWait, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fmt.Errorf("consumer on %s: %w", stream, err)
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			b.log.Warn("bus consumer", "stream", stream, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		for m := range batch.Messages() {
			if ctx.Err() != nil {
				m.Nak()
				continue
			}
			if err := take(m.Data()); err != nil {
				b.log.Error("store reports: will try again", "stream", stream, "err", err)
				m.NakWithDelay(time.Second)
				continue
			}
			if err := m.DoubleAck(ctx); err != nil && ctx.Err() == nil {
				// Not acknowledged: it comes again, and the store keeps
				// events once by their origin.
				b.log.Warn("acknowledge reports", "stream", stream, "err", err)
			}
		}
	}
	return nil
}

// ackWait is how long a delivered report may go unacknowledged before
// it is delivered again (a controller that died holding it).
const ackWait = 10 * time.Second

// receiveStatus watches every host's status and hands each change to
// sink, again after a pause while sink refuses it.
func (b *NATS) receiveStatus(ctx context.Context, sink node.Sink) error {
	w, err := b.status.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var s node.Status
			if err := json.Unmarshal(e.Value(), &s); err != nil || s.Host != unkey(e.Key()) {
				b.log.Error("bad status on the bus: ignored", "key", e.Key(), "err", err)
				continue
			}
			for pause := 100 * time.Millisecond; ; pause = min(2*pause, 5*time.Second) {
				err := sink.Status(ctx, s)
				if err == nil || ctx.Err() != nil {
					break
				}
				b.log.Error("record status: will try again", "host", s.Host, "err", err)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(pause):
				}
			}
		}
	}
}
