package hyperav

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"secaas/internal/nbd"
	"secaas/internal/qmp"
)

// BitmapTracker is bitmap mode: QEMU records the guest's writes to a disk
// in a dirty bitmap (near-zero overhead: stock QEMU, no filter in the I/O
// path); each scan epoch atomically moves what was recorded into a frozen
// snapshot bitmap and clears the live one, then reads the snapshot through
// QEMU's NBD export (block status on qemu:dirty-bitmap:NAME).
type BitmapTracker struct {
	QMP    *qmp.Client
	Node   string // the disk's block node
	Bitmap string // the live bitmap's name
	Socket string // QEMU's NBD server socket (started here)
	epoch  int
	server bool
}

// Granularity of the dirty bitmap: one 4 KiB block.
const bitmapGranularity = 4096

// StartBitmapTracker adds the live dirty bitmap (persistent when the node is
// qcow2, so that QEMU stores it in the image when it shuts down) and
// QEMU's NBD server. A bitmap QEMU already has (a persistent one it
// loaded) is kept. The returned flag says the bitmap cannot be trusted to
// hold every write since it was last read — QEMU marked it inconsistent
// (it crashed while recording), or it was missing although the caller
// tracked this disk before (tracking: a QEMU that was killed never stored
// it) — and every sector must be treated as written.
func StartBitmapTracker(ctx context.Context, c *qmp.Client, node, bitmap, dir string, tracking bool) (*BitmapTracker, bool, error) {
	t := &BitmapTracker{QMP: c, Node: node, Bitmap: bitmap, Socket: filepath.Join(dir, "qemu-nbd.sock")}
	existing, inconsistent, err := t.bitmapInfo(ctx)
	if err != nil {
		return nil, false, err
	}
	lost := inconsistent || (tracking && !existing)
	var persistent bool
	if !existing || inconsistent {
		if persistent, err = t.isQcow2(ctx); err != nil {
			return nil, false, err
		}
	}
	if !existing {
		if err := c.Execute(ctx, "block-dirty-bitmap-add", map[string]any{"node": node, "name": bitmap,
			"granularity": bitmapGranularity, "persistent": persistent}, nil); err != nil {
			return nil, false, err
		}
	}
	if inconsistent {
		// An inconsistent bitmap cannot be used or merged: replace it.
		c.Execute(ctx, "block-dirty-bitmap-remove", map[string]any{"node": node, "name": bitmap}, nil)
		if err := c.Execute(ctx, "block-dirty-bitmap-add", map[string]any{"node": node, "name": bitmap,
			"granularity": bitmapGranularity, "persistent": persistent}, nil); err != nil {
			return nil, true, err
		}
	}
	os.Remove(t.Socket)
	if err := c.Execute(ctx, "nbd-server-start", map[string]any{"addr": map[string]any{"type": "unix", "data": map[string]any{"path": t.Socket}}}, nil); err != nil {
		// Already running (another tracker on this VM): use it.
		var qe *qmp.Error
		if !errors.As(err, &qe) || !strings.Contains(qe.Desc, "already running") {
			return nil, lost, err
		}
	}
	t.server = true
	return t, lost, nil
}

type blockInfo struct {
	Device   string `json:"device"`
	Inserted *struct {
		NodeName     string `json:"node-name"`
		Drv          string `json:"drv"`
		DirtyBitmaps []struct {
			Name         string `json:"name"`
			Inconsistent bool   `json:"inconsistent"`
			Recording    bool   `json:"recording"`
		} `json:"dirty-bitmaps"`
	} `json:"inserted"`
}

func (t *BitmapTracker) nodeInfo(ctx context.Context) (*blockInfo, error) {
	var blocks []blockInfo
	if err := t.QMP.Execute(ctx, "query-block", nil, &blocks); err != nil {
		return nil, err
	}
	for i := range blocks {
		if b := blocks[i]; b.Inserted != nil && b.Inserted.NodeName == t.Node {
			return &blocks[i], nil
		}
	}
	return nil, fmt.Errorf("no block device with node %q", t.Node)
}

func (t *BitmapTracker) isQcow2(ctx context.Context) (bool, error) {
	b, err := t.nodeInfo(ctx)
	if err != nil {
		return false, err
	}
	return b.Inserted.Drv == "qcow2", nil
}

func (t *BitmapTracker) bitmapInfo(ctx context.Context) (exists, inconsistent bool, err error) {
	b, err := t.nodeInfo(ctx)
	if err != nil {
		return false, false, err
	}
	for _, bm := range b.Inserted.DirtyBitmaps {
		if bm.Name == t.Bitmap {
			return true, bm.Inconsistent, nil
		}
	}
	return false, false, nil
}

// Epoch returns the disk ranges written since the previous epoch. The
// snapshot and the clear are one QMP transaction: no write falls between.
func (t *BitmapTracker) Epoch(ctx context.Context) ([]Range, error) {
	t.epoch++
	snap := fmt.Sprintf("%s-epoch-%d", t.Bitmap, t.epoch)
	err := t.QMP.Execute(ctx, "transaction", map[string]any{"actions": []map[string]any{
		{"type": "block-dirty-bitmap-add", "data": map[string]any{"node": t.Node, "name": snap, "granularity": bitmapGranularity, "disabled": true}},
		{"type": "block-dirty-bitmap-merge", "data": map[string]any{"node": t.Node, "target": snap, "bitmaps": []string{t.Bitmap}}},
		{"type": "block-dirty-bitmap-clear", "data": map[string]any{"node": t.Node, "name": t.Bitmap}},
	}}, nil)
	if err != nil {
		return nil, err
	}
	defer t.QMP.Execute(context.Background(), "block-dirty-bitmap-remove", map[string]any{"node": t.Node, "name": snap}, nil)
	if err := t.QMP.Execute(ctx, "block-export-add", map[string]any{"type": "nbd", "id": snap, "node-name": t.Node,
		"name": snap, "writable": false, "bitmaps": []string{snap}}, nil); err != nil {
		return nil, err
	}
	defer t.QMP.Execute(context.Background(), "block-export-del", map[string]any{"id": snap, "mode": "hard"}, nil)
	c, err := nbd.Dial(ctx, t.Socket, snap, "qemu:dirty-bitmap:"+snap)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	exts, err := c.BlockStatus("qemu:dirty-bitmap:"+snap, 0, c.Size)
	if err != nil {
		return nil, err
	}
	var out []Range
	for _, e := range exts {
		if e.Flags&1 == 0 {
			continue
		}
		out = appendRange(out, Range{e.Offset, e.Length})
	}
	return out, nil
}

// Reader opens a read-only NBD export of the disk for scanning: QEMU's own
// view, consistent with what the guest wrote (a qcow2 file read behind
// QEMU's back may lag its caches). Close the client when done.
func (t *BitmapTracker) Reader(ctx context.Context) (*nbd.Client, func(), error) {
	id := t.Bitmap + "-read"
	t.QMP.Execute(ctx, "block-export-del", map[string]any{"id": id, "mode": "hard"}, nil)
	if err := t.QMP.Execute(ctx, "block-export-add", map[string]any{"type": "nbd", "id": id, "node-name": t.Node,
		"name": id, "writable": false}, nil); err != nil {
		return nil, nil, err
	}
	c, err := nbd.Dial(ctx, t.Socket, id)
	if err != nil {
		t.QMP.Execute(context.Background(), "block-export-del", map[string]any{"id": id, "mode": "hard"}, nil)
		return nil, nil, err
	}
	return c, func() {
		c.Close()
		t.QMP.Execute(context.Background(), "block-export-del", map[string]any{"id": id, "mode": "hard"}, nil)
	}, nil
}
