package lab

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// MakeDataDisk makes a raw disk image holding an ext4 file system built
// from files (guest path -> contents) by mke2fs -d, no mount needed: in
// partition 1 of an MBR (at 1 MiB) when partitioned, else on the whole
// disk. Lazy initialisation is off, so that the guest's kernel does not
// rewrite inode tables in the background after mounting.
func MakeDataDisk(dir string, files map[string][]byte, sizeMiB int, partitioned bool) (string, error) {
	root := filepath.Join(dir, "root")
	for p, b := range files {
		full := filepath.Join(root, filepath.Clean("/"+p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			return "", err
		}
	}
	os.MkdirAll(root, 0o755)
	fsImg := filepath.Join(dir, "fs.img")
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-E", "lazy_itable_init=0,lazy_journal_init=0",
		"-d", root, fsImg, fmt.Sprintf("%dM", sizeMiB)).CombinedOutput(); err != nil {
		return "", fmt.Errorf("mke2fs: %v: %s", err, out)
	}
	if !partitioned {
		return fsImg, nil
	}
	return partitionImage(dir, fsImg, 0x83)
}

// MakeNTFSDisk makes a raw disk image holding an NTFS file system (mkntfs)
// with files (guest path -> contents; directories are made), written
// through ntfs-3g: in partition 1 of an MBR (at 1 MiB, type 0x07) when
// partitioned, else on the whole disk.
func MakeNTFSDisk(dir string, files map[string][]byte, sizeMiB int, partitioned bool) (string, error) {
	fsImg := filepath.Join(dir, "ntfs.img")
	if err := os.WriteFile(fsImg, nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Truncate(fsImg, int64(sizeMiB)<<20); err != nil {
		return "", err
	}
	if out, err := exec.Command("mkntfs", "-F", "-q", "-Q", "-c", "4096", fsImg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("mkntfs: %v: %s", err, out)
	}
	mnt := filepath.Join(dir, "ntfs-mnt")
	os.MkdirAll(mnt, 0o755)
	if out, err := exec.Command("ntfs-3g", fsImg, mnt).CombinedOutput(); err != nil {
		return "", fmt.Errorf("ntfs-3g: %v: %s", err, out)
	}
	var werr error
	for p, b := range files {
		full := filepath.Join(mnt, filepath.Clean("/"+p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			werr = err
			break
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			werr = err
			break
		}
	}
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil && werr == nil {
		werr = fmt.Errorf("umount %s: %v: %s", mnt, err, out)
	}
	if werr != nil {
		return "", werr
	}
	if !partitioned {
		return fsImg, nil
	}
	return partitionImage(dir, fsImg, 0x07)
}

// partitionImage puts a file system image into partition 1 (type typ) of
// an MBR disk, at 1 MiB, and removes the file system image.
func partitionImage(dir, fsImg string, typ byte) (string, error) {
	fs, err := os.ReadFile(fsImg)
	if err != nil {
		return "", err
	}
	os.Remove(fsImg)
	d := make([]byte, 1<<20+len(fs))
	e := d[446:]
	e[4] = typ
	binary.LittleEndian.PutUint32(e[8:], 2048)
	binary.LittleEndian.PutUint32(e[12:], uint32(len(fs)/512))
	d[510], d[511] = 0x55, 0xaa
	copy(d[1<<20:], fs)
	p := filepath.Join(dir, "disk.raw")
	return p, os.WriteFile(p, d, 0o644)
}
