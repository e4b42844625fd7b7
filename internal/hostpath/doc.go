// Package hostpath confines what the daemon opens, dials and creates on
// its host to configured roots: the directories of VM disk images, of
// QEMU's sockets and of guest RAM files. A path is first checked by its
// text (inventory.CheckPath: absolute, clean; beneath a root) and then
// resolved by the kernel beneath the root's directory (os.Root: no "..",
// no absolute symlinks, no symlink that leads out), so neither a hostile
// name nor a symlink
// planted in a root can reach another host file. Unix sockets are dialled
// and bound through O_PATH descriptors of what that resolution found
// (/proc/self/fd/N), and a listener removes only the socket it created.
//
// Host is the interface the node's services take; Roots implements it
// for secaasd, Unconfined for the offline CLI, whose user names the files
// on the command line. WriteFileAtomic replaces one of the daemon's own
// state files whole (temporary file, sync, rename).
package hostpath
