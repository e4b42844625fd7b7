// Command secaas-guest is HyperAV's optional tool inside a guest (the
// paper's "HyperAV Tools"): a small static binary with no dependencies.
//
//	secaas-guest extents PATH          the file's extents (FIEMAP) as JSON:
//	                                   byte offsets on the device holding it
//	secaas-guest scan PATH             ask the backend to scan PATH now
//	secaas-guest isolate PATH          ask the backend to isolate PATH
//	secaas-guest watch DIR...          scan every file closed after writing
//	                                   (inotify), and print the verdicts and
//	                                   the alarms the backend pushes
//	secaas-guest iobench --file DEV[,DEV...] --rw write|randwrite --bs 4k --seconds N [--burst B]
//	                                   O_DIRECT write load, JSON result;
//	                                   several devices are written in turn
//	secaas-guest hold [--file F] [--unix S]
//	                                   hold a file, tcp/udp listeners (v4, v6),
//	                                   a unix listener and a tcp connection
//	                                   open, print them as JSON, and wait
//	                                   (memory monitoring tests)
//	secaas-guest answer [--port P] [--echo E]
//	                                   answer UDP to port P through a raw
//	                                   socket, no socket bound to P (a test
//	                                   backdoor); --echo runs a normal UDP
//	                                   echo on E beside it
//
// It talks to the backend over a virtio-serial port (default
// /dev/virtio-ports/secaas.0, one JSON request and one JSON reply per
// line). Build it static: CGO_ENABLED=0 go build ./cmd/secaas-guest.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "extents":
		err = extentsCmd(os.Args[2:])
	case "scan", "isolate":
		err = requestCmd(os.Args[1], os.Args[2:])
	case "watch":
		err = watchCmd(os.Args[2:])
	case "iobench":
		err = iobenchCmd(os.Args[2:])
	case "hold":
		err = holdCmd(os.Args[2:])
	case "answer":
		err = answerCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "secaas-guest:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: secaas-guest extents PATH | scan PATH | isolate PATH | watch DIR... | iobench --file DEV[,DEV...] --rw write|randwrite --bs 4k --seconds N [--burst B] | hold [--file F] [--unix S] | answer [--port P] [--echo E]")
	os.Exit(2)
}

// Extent is one FIEMAP extent.
type Extent struct {
	Logical  uint64 `json:"logical"`
	Physical uint64 `json:"physical"`
	Length   uint64 `json:"length"`
	Flags    uint32 `json:"flags"`
}

const fsIocFiemap = 0xc020660b // _IOWR('f', 11, struct fiemap)

// fiemap returns a file's extents (syncing it first, FIEMAP_FLAG_SYNC).
func fiemap(path string) ([]Extent, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	const max = 512
	// struct fiemap: start, length u64; flags, mapped, count, reserved u32;
	// then count x struct fiemap_extent (56 bytes).
	buf := make([]byte, 32+56*max)
	var out []Extent
	start := uint64(0)
	for {
		clear(buf)
		*(*uint64)(unsafe.Pointer(&buf[0])) = start
		*(*uint64)(unsafe.Pointer(&buf[8])) = ^uint64(0)
		*(*uint32)(unsafe.Pointer(&buf[16])) = 1 // FIEMAP_FLAG_SYNC
		*(*uint32)(unsafe.Pointer(&buf[24])) = max
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
			return nil, 0, fmt.Errorf("FIEMAP %s: %w", path, e)
		}
		n := *(*uint32)(unsafe.Pointer(&buf[20]))
		last := false
		for i := uint32(0); i < n; i++ {
			e := buf[32+56*i:]
			x := Extent{Logical: *(*uint64)(unsafe.Pointer(&e[0])), Physical: *(*uint64)(unsafe.Pointer(&e[8])),
				Length: *(*uint64)(unsafe.Pointer(&e[16])), Flags: *(*uint32)(unsafe.Pointer(&e[40]))}
			out = append(out, x)
			last = x.Flags&1 != 0 // FIEMAP_EXTENT_LAST
			start = x.Logical + x.Length
		}
		if n == 0 || last {
			return out, st.Size(), nil
		}
	}
}

func extentsCmd(args []string) error {
	if len(args) != 1 {
		usage()
	}
	exts, size, err := fiemap(args[0])
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"path": args[0], "size": size, "extents": exts})
}

// port opens the virtio-serial port to the backend: $SECAAS_PORT, else
// /dev/virtio-ports/secaas.0 (udev's link), else the vport whose sysfs
// name is secaas.0 (a guest without udev).
func port() (*os.File, error) {
	p := os.Getenv("SECAAS_PORT")
	if p == "" {
		p = "/dev/virtio-ports/secaas.0"
		if _, err := os.Stat(p); err != nil {
			names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
			for _, n := range names {
				if b, _ := os.ReadFile(n); strings.TrimSpace(string(b)) == "secaas.0" {
					p = "/dev/" + filepath.Base(filepath.Dir(n))
				}
			}
		}
	}
	return os.OpenFile(p, os.O_RDWR, 0)
}

// Request is what the tool sends; the backend answers one JSON line.
type Request struct {
	Op      string   `json:"op"` // scan, isolate
	Path    string   `json:"path"`
	Size    int64    `json:"size"`
	Extents []Extent `json:"extents,omitempty"` // FIEMAP, a hint for the backend
	Mount   string   `json:"mount"`             // where that file system is mounted in the guest
}

// fsPath splits an absolute path into the mount point of the file system
// holding it (longest prefix in /proc/mounts) and the path inside it.
func fsPath(abs string) (mount, rel string) {
	mount = "/"
	if b, err := os.ReadFile("/proc/mounts"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			mp := f[1]
			if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(mount) {
				mount = mp
			}
		}
	}
	rel = "/" + strings.TrimPrefix(strings.TrimPrefix(abs, mount), "/")
	return mount, rel
}

// send writes a request for path (its file synced first).
func send(f *os.File, op, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	// The backend reads the file system, not this guest's mount tree: send
	// the path inside the file system that holds the file.
	mount, rel := fsPath(abs)
	req := Request{Op: op, Path: rel, Mount: mount}
	// The backend reads the disk: put the file, and its directory entry,
	// there first.
	for _, p := range []string{abs, filepath.Dir(abs)} {
		if f, err := os.Open(p); err == nil {
			f.Sync()
			f.Close()
		}
	}
	if exts, size, err := fiemap(abs); err == nil {
		req.Extents, req.Size = exts, size
	}
	b, _ := json.Marshal(req)
	_, err = f.Write(append(b, '\n'))
	return err
}

// request sends a request and waits for its reply, printing any alarm the
// backend pushes meanwhile.
func request(f *os.File, rd *bufio.Reader, op, path string) (map[string]any, error) {
	if err := send(f, op, path); err != nil {
		return nil, err
	}
	for {
		line, err := rd.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		var reply map[string]any
		if err := json.Unmarshal(line, &reply); err != nil {
			return nil, fmt.Errorf("backend reply %.100q: %w", line, err)
		}
		if _, isEvent := reply["event"]; isEvent {
			// An alarm the backend pushed (another file): show it.
			fmt.Println(strings.TrimSpace(string(line)))
			continue
		}
		return reply, nil
	}
}

func requestCmd(op string, args []string) error {
	if len(args) != 1 {
		usage()
	}
	f, err := port()
	if err != nil {
		return err
	}
	defer f.Close()
	reply, err := request(f, bufio.NewReader(f), op, args[0])
	if err != nil {
		return err
	}
	json.NewEncoder(os.Stdout).Encode(reply)
	if v, _ := reply["verdict"].(string); v == "INFECTED" {
		os.Exit(3)
	}
	return nil
}

// watchCmd scans every file closed after writing under the directories.
func watchCmd(dirs []string) error {
	if len(dirs) == 0 {
		usage()
	}
	f, err := port()
	if err != nil {
		return err
	}
	defer f.Close()
	// One reader of the port: alarms are printed as they come, replies go
	// to the request waiting for them.
	replies := make(chan map[string]any, 1)
	go func() {
		rd := bufio.NewReader(f)
		for {
			line, err := rd.ReadBytes('\n')
			if err != nil {
				close(replies)
				return
			}
			var m map[string]any
			if json.Unmarshal(line, &m) != nil {
				continue
			}
			if _, isEvent := m["event"]; isEvent {
				fmt.Println(strings.TrimSpace(string(line)))
				continue
			}
			replies <- m
		}
	}()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC)
	if err != nil {
		return err
	}
	wd := map[int32]string{}
	for _, d := range dirs {
		w, err := syscall.InotifyAddWatch(fd, d, syscall.IN_CLOSE_WRITE|syscall.IN_MOVED_TO)
		if err != nil {
			return fmt.Errorf("watch %s: %w", d, err)
		}
		wd[int32(w)] = d
	}
	fmt.Fprintf(os.Stderr, "secaas-guest: watching %s\n", strings.Join(dirs, " "))
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Read(fd, buf)
		if err != nil {
			return err
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := strings.TrimRight(string(buf[off+syscall.SizeofInotifyEvent:off+syscall.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			off += syscall.SizeofInotifyEvent + int(ev.Len)
			if name == "" {
				continue
			}
			p := filepath.Join(wd[ev.Wd], name)
			if err := send(f, "scan", p); err != nil {
				fmt.Fprintf(os.Stderr, "secaas-guest: %s: %v\n", p, err)
				continue
			}
			reply, ok := <-replies
			if !ok {
				return fmt.Errorf("the backend closed the port")
			}
			b, _ := json.Marshal(reply)
			fmt.Println(string(b))
		}
	}
}

// iobenchCmd writes with O_DIRECT, one write at a time, for a while and
// prints KB/s and IOPS as JSON. With several devices (--file A,B,...) the
// writes go to them in turns of --burst writes, each device getting the
// same blocks, and each device's figures count only the time spent in its
// own turns: the devices are compared under the same conditions, turn by
// turn, whatever else the host does meanwhile.
func iobenchCmd(args []string) error {
	fs := flag.NewFlagSet("iobench", flag.ExitOnError)
	file := fs.String("file", "/dev/vda", "device or file (comma-separated: several, written in turn)")
	rw := fs.String("rw", "write", "write (sequential) or randwrite")
	bsS := fs.String("bs", "4k", "block size (e.g. 4k, 128k)")
	secs := fs.Float64("seconds", 5, "run length")
	span := fs.Int64("size", 256<<20, "bytes of each device to use")
	burst := fs.Int("burst", 1, "writes to one device before the next one's turn")
	fs.Parse(args)
	bs, err := parseSize(*bsS)
	if err != nil {
		return err
	}
	if *rw != "write" && *rw != "randwrite" {
		return fmt.Errorf("--rw %q: want write or randwrite", *rw)
	}
	res, err := iobench(strings.Split(*file, ","), *rw == "randwrite", bs, *span, *burst, time.Duration(*secs*float64(time.Second)))
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// iobenchDevice is one device's share of an iobench run.
type iobenchDevice struct {
	File  string  `json:"file"`
	BW    float64 `json:"bw_kbs"` // over the time spent in its own writes
	IOPS  float64 `json:"iops"`
	Busy  float64 `json:"busy_seconds"`
	Count int64   `json:"writes"`
}

type iobenchResult struct {
	Devices []iobenchDevice `json:"devices"`
	Seconds float64         `json:"seconds"`
}

// iobench writes bs-byte blocks with O_DIRECT to the files in turn, burst
// writes each, for dur, sequentially or at random blocks within the first
// span bytes.
func iobench(names []string, random bool, bs, span int64, burst int, dur time.Duration) (*iobenchResult, error) {
	if span < bs {
		return nil, fmt.Errorf("size %d is below the block size", span)
	}
	if burst < 1 {
		return nil, fmt.Errorf("burst %d: want at least 1", burst)
	}
	files := make([]*os.File, len(names))
	for i, name := range names {
		f, err := os.OpenFile(name, os.O_WRONLY|syscall.O_DIRECT, 0)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		files[i] = f
	}
	// O_DIRECT needs an aligned buffer.
	raw := make([]byte, bs+4096)
	off := int(uintptr(unsafe.Pointer(&raw[0])) & 4095)
	if off != 0 {
		off = 4096 - off
	}
	buf := raw[off : off+int(bs)]
	for i := range buf {
		buf[i] = byte(i)
	}
	blocks := span / bs
	rng := rand.New(rand.NewPCG(1, 2))
	count := make([]int64, len(files))
	busy := make([]time.Duration, len(files))
	turn := make([]int64, burst) // the blocks of this turn, the same for every device
	var next int64
	t0 := time.Now()
	deadline := t0.Add(dur)
	// Whole turns: every device gets as many writes as the others.
	for time.Now().Before(deadline) {
		for i := range turn {
			turn[i] = next % blocks
			if random {
				turn[i] = rng.Int64N(blocks)
			}
			next++
		}
		for d, f := range files {
			start := time.Now()
			for _, blk := range turn {
				if _, err := f.WriteAt(buf, blk*bs); err != nil {
					return nil, fmt.Errorf("%s: %w", names[d], err)
				}
			}
			busy[d] += time.Since(start)
			count[d] += int64(burst)
		}
	}
	res := &iobenchResult{Seconds: time.Since(t0).Seconds()}
	for i, name := range names {
		d := iobenchDevice{File: name, Busy: busy[i].Seconds(), Count: count[i]}
		if d.Busy > 0 {
			d.BW, d.IOPS = float64(count[i]*bs)/1024/d.Busy, float64(count[i])/d.Busy
		}
		res.Devices = append(res.Devices, d)
	}
	return res, nil
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1024, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "m"):
		mult, s = 1<<20, strings.TrimSuffix(s, "m")
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || v*mult%512 != 0 {
		return 0, fmt.Errorf("block size %q", s)
	}
	return v * mult, nil
}
