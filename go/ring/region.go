package ring

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultShmDir is where named regions live unless ShmDirEnv says
// otherwise (LAYOUT §1).
const DefaultShmDir = "/dev/shm"

// ShmDirEnv names the environment variable that moves named regions to
// another directory — a Kubernetes emptyDir with medium: Memory, a Docker
// tmpfs volume. The Rust crate reads the same variable, so the tools of
// both languages find the same rings.
const ShmDirEnv = "ALLOY_SHM_DIR"

// ShmDir returns the directory of named regions: $ALLOY_SHM_DIR when set
// and not empty, else /dev/shm.
func ShmDir() string {
	if d := os.Getenv(ShmDirEnv); d != "" {
		return d
	}
	return DefaultShmDir
}

// NamedPath returns the path of the named region name in ShmDir.
func NamedPath(name string) string { return filepath.Join(ShmDir(), name) }

// Options are where and how a named region is created or opened (the
// geometry is Config's; these are not part of the layout).
type Options struct {
	// Dir is the directory of the region file; "" means ShmDir().
	Dir string
	// Group, on create, shares the ring with a group — a name from
	// /etc/group or a numeric gid: mode 0660 instead of 0600, so consumers
	// run by other users of that group can attach, and everyone else is
	// refused. The creator must be in the group (or root). "": not shared.
	Group string
	// AllowForeign, on open, accepts a ring owned by another user whatever
	// its mode (a ring shared with one of our groups is accepted anyway).
	AllowForeign bool
	// HugePages, on create, backs the ring with huge pages (Rust:
	// RingBuilder::huge_pages): an anonymous ring uses a MFD_HUGETLB memfd,
	// a named one needs Dir on a hugetlbfs mount (any ring made there uses
	// huge pages). HugePagesRequire fails with ErrHugePages, naming
	// /proc/sys/vm/nr_hugepages, when none are free; HugePagesPrefer falls
	// back to normal pages. The byte layout is unchanged (LAYOUT §1); the
	// file is rounded up to whole huge pages.
	HugePages HugePages
	// Prefault populates the mapping's page tables so the first messages
	// take no page faults: writable on create (the pages are new),
	// read-only on open of a live ring, so no byte is written
	// (MADV_POPULATE_WRITE/READ, Linux 5.14; skipped on older kernels).
	Prefault bool
}

// HugePages selects huge-page backing for a ring (Options.HugePages).
type HugePages int

const (
	// HugePagesOff uses normal pages (a hugetlbfs Dir still gives huge ones).
	HugePagesOff HugePages = iota
	// HugePagesPrefer uses huge pages when free ones are reserved, else
	// normal pages.
	HugePagesPrefer
	// HugePagesRequire uses huge pages or fails with ErrHugePages.
	HugePagesRequire
)

// ErrHugePages: huge pages were required (or Dir is a hugetlbfs mount) and
// the system cannot provide them; the message names the fix.
var ErrHugePages = errors.New("alloy: huge pages unavailable")

func roundUp(n, to uint64) uint64 {
	if to == 0 {
		return n
	}
	return (n + to - 1) / to * to
}

// hugePagesShort is the error of a region needing n bytes of huge pages of
// page bytes when fewer are free.
func hugePagesShort(n, page uint64) error {
	return fmt.Errorf("%w: a %d-byte huge-page ring needs %d free huge pages of %d KiB; reserve them as root "+
		"(echo N > /proc/sys/vm/nr_hugepages, see HugePages_Free in /proc/meminfo) or use HugePagesPrefer "+
		"to fall back to normal pages", ErrHugePages, n, roundUp(n, page)/max(page, 1), page/1024)
}

func (o Options) dir() string {
	if o.Dir != "" {
		return o.Dir
	}
	return ShmDir()
}

// LookupGroup resolves a group name or numeric gid (Rust:
// region::resolve_group).
func LookupGroup(group string) (int, error) {
	if gid, err := strconv.ParseUint(group, 10, 32); err == nil {
		return int(gid), nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return -1, fmt.Errorf("alloy: no group named %q in /etc/group (give a numeric gid instead): %w", group, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1, fmt.Errorf("alloy: group %q has gid %q", group, g.Gid)
	}
	return gid, nil
}

// initWait is how long an opener waits for a creator to store magic.
const initWait = time.Second

// region is one mapping of a region file. It owns the fd and the mapping.
type region struct {
	mem  []byte
	fd   int
	name string // empty for anonymous regions
	// prefault: populate the read-only mapping too when it is made.
	prefault bool

	roMu sync.Mutex // serialises making the read-only mapping
	// ro is the PROT_READ mapping consumers read payloads through; an
	// atomic pointer so readOnly (Ring.Contains, once per buffer on the
	// retention and WithCopiedStrings paths) takes no lock.
	ro atomic.Pointer[[]byte]
}

// mapReadOnly maps the region a second time, PROT_READ, for consumers to
// read payloads through (LAYOUT §1: consumers write nothing in the slot
// area), so a consumer writing into a received message faults instead of
// corrupting what other readers see. Made once, on the first consumer.
func (r *region) mapReadOnly() ([]byte, error) {
	if ro := r.ro.Load(); ro != nil {
		return *ro, nil
	}
	r.roMu.Lock()
	defer r.roMu.Unlock()
	if ro := r.ro.Load(); ro != nil {
		return *ro, nil
	}
	mem, err := unix.Mmap(r.fd, 0, len(r.mem), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("alloy: mmap %d bytes read-only: %w", len(r.mem), err)
	}
	if r.prefault {
		prefault(mem, false)
	}
	// Store publishes the slice header; pairs with the Load in readOnly.
	r.ro.Store(&mem)
	return mem, nil
}

// readOnly returns the read-only mapping, or nil before mapReadOnly.
func (r *region) readOnly() []byte {
	if ro := r.ro.Load(); ro != nil {
		return *ro
	}
	return nil
}

// checkName enforces LAYOUT §1's name rule, which also keeps names from
// escaping the shared-memory directory.
func checkName(name string) error {
	if len(name) < 1 || len(name) > 200 || name[0] == '.' {
		return fmt.Errorf("%w: ring name %q must be 1-200 bytes not starting with '.'", ErrInvalidLayout, name)
	}
	for _, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%w: ring name %q has a byte outside [A-Za-z0-9._-]", ErrInvalidLayout, name)
		}
	}
	return nil
}

// mapFd maps size bytes of fd read-write; a hugetlbfs file is mapped in
// whole huge pages (the kernel would refuse to unmap a partial one).
func mapFd(fd int, size uint64) ([]byte, error) {
	size = roundUp(size, hugetlbfsPage(fd))
	if size > uint64(^uint(0)>>1) {
		return nil, fmt.Errorf("%w: region of %d bytes cannot be mapped", ErrInvalidLayout, size)
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("alloy: mmap %d bytes: %w", size, err)
	}
	return mem, nil
}

// createNamed creates <dir>/<name> exclusively with mode 0600 (0660 and
// group o.Group when set), sizes it, maps it and lets initHeader write the
// header. A directory too small for the region is refused up front with
// ErrNoSpace. The file is made under a hidden temporary name (a leading '.'
// is never a ring name) and linked to <name> only once its mode, group,
// size and header are final, so an opener never sees a group ring still at
// 0600 (a member would be refused) or one without its magic; link fails
// with EEXIST when the name is taken, as O_EXCL did. On failure nothing is
// left under either name.
func createNamed(name string, l Layout, o Options, initHeader func(mem []byte)) (*region, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	gid := -1
	if o.Group != "" {
		var err error
		if gid, err = LookupGroup(o.Group); err != nil {
			return nil, err
		}
	}
	dir := o.dir()
	page := dirHugePage(dir)
	if page == 0 && o.HugePages == HugePagesRequire {
		return nil, fmt.Errorf("%w: huge pages required for ring %q but %s is not a hugetlbfs mount: reserve pages "+
			"(echo N > /proc/sys/vm/nr_hugepages), mount one (mount -t hugetlbfs none /dev/hugepages) and "+
			"give it as the ring's Dir or ALLOY_SHM_DIR", ErrHugePages, name, dir)
	}
	path := filepath.Join(dir, name)
	// Early and cheap (the link below is what decides a race).
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("alloy: create %s: %w", path, unix.EEXIST)
	}
	size := roundUp(l.TotalSize, page)
	if err := checkSpace(name, dir, size); err != nil {
		return nil, err
	}
	var tmp string
	var fd int
	var err error
	for attempt := 0; ; attempt++ {
		tmp = filepath.Join(dir, tempName(name))
		fd, err = unix.Open(tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		// EEXIST: another creator's temporary file, or a leftover.
		if err == nil || err != unix.EEXIST || attempt >= 100 {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("alloy: create %s: %w", tmp, err)
	}
	defer unix.Unlink(tmp)
	if gid >= 0 {
		err = shareWithGroup(fd, name, gid)
	}
	var r *region
	if err == nil {
		r, err = sizeAndMap(fd, size)
	}
	if errors.Is(err, unix.ENOSPC) && page > 0 {
		err = hugePagesShort(size, page)
	} else if errors.Is(err, unix.ENOSPC) {
		var st unix.Statfs_t
		unix.Fstatfs(fd, &st)
		err = noSpace(name, dir, l.TotalSize, statfsFree(&st))
	}
	if err == nil {
		if o.Prefault {
			// A new file nobody else maps: populating it writable
			// overwrites nothing.
			prefault(r.mem, true)
			r.prefault = true
		}
		initHeader(r.mem)
		if err = unix.Link(tmp, path); err != nil {
			unix.Munmap(r.mem)
			err = fmt.Errorf("alloy: create %s: %w", path, err)
		}
	}
	if err != nil {
		unix.Close(fd)
		// Racing creators both size their file before one links it: the
		// loser may run out of room first; the ring exists, say so (an
		// open-or-create then opens it).
		if errors.Is(err, ErrNoSpace) || errors.Is(err, ErrHugePages) {
			if _, serr := os.Lstat(path); serr == nil {
				return nil, fmt.Errorf("alloy: create %s: %w", path, unix.EEXIST)
			}
		}
		return nil, err
	}
	r.name = name
	return r, nil
}

// tempSeq numbers this process's temporary region names.
var tempSeq atomic.Uint64

// tempName is the hidden name a region is made under before it is linked to
// name, never a valid ring name (leading '.'): pid, the clock's nanoseconds
// and a counter, so a restarted creator with the same pid (pid 1 in a
// container) or one in another pid namespace does not meet a leftover of an
// earlier run; the caller still retries on a clash.
func tempName(name string) string {
	return fmt.Sprintf(".%s.%d.%x%d.tmp", name, os.Getpid(), time.Now().Nanosecond(), tempSeq.Add(1))
}

func noSpace(name, dir string, needed, free uint64) error {
	return fmt.Errorf("%w: ring %q needs %d bytes but %s has %d free; on Docker raise --shm-size "+
		"(or mount a bigger tmpfs and set ALLOY_SHM_DIR), on Kubernetes mount an emptyDir with "+
		"medium: Memory and a sizeLimit", ErrNoSpace, name, needed, dir, free)
}

// checkSpace refuses a region that cannot fit in dir's filesystem before a
// file is made. A filesystem reporting no size (tmpfs size=0: unlimited) is
// not checked; fallocate still is.
func checkSpace(name, dir string, needed uint64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("alloy: checking the shared-memory directory %s: %w", dir, err)
	}
	if free := statfsFree(&st); st.Blocks != 0 && free < needed {
		return noSpace(name, dir, needed, free)
	}
	return nil
}

// shareWithGroup gives gid read-write access to a region file being
// created: owner and group may map it, nobody else (mode 0660).
func shareWithGroup(fd int, name string, gid int) error {
	if err := unix.Fchown(fd, -1, gid); err != nil {
		return fmt.Errorf("alloy: giving ring %q to group %d (the creator must be root or in that group): %w", name, gid, err)
	}
	if err := unix.Fchmod(fd, 0o660); err != nil {
		return fmt.Errorf("alloy: chmod 0660 ring %q: %w", name, err)
	}
	return nil
}

// groupShared reports whether mode is that of a group-shared region
// (LAYOUT §1): read-write for owner and group, nothing for others.
func groupShared(mode uint32) bool { return mode&0o777 == 0o660 }

// inGroup reports whether gid is our effective or a supplementary group.
func inGroup(gid uint32) bool {
	if uint32(unix.Getegid()) == gid {
		return true
	}
	gs, err := unix.Getgroups()
	return err == nil && slices.Contains(gs, int(gid))
}

// deniedError explains a refused open: who owns the file, its group and
// mode, and who we are, so the operator sees which group to join.
func deniedError(name, path string, err error) error {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return fmt.Errorf("alloy: open %s: %w", path, err)
	}
	return fmt.Errorf("alloy: ring %q (%s: owner uid %d, group gid %d, mode %o) is not open to uid %d; "+
		"a group-shared ring (mode 660) is open to members of its group: %w",
		name, path, st.Uid, st.Gid, st.Mode&0o777, unix.Geteuid(), err)
}

func sizeAndMap(fd int, size uint64) (*region, error) {
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return nil, fmt.Errorf("alloy: ftruncate to %d: %w", size, err)
	}
	if err := fallocate(fd, size); err != nil {
		return nil, fmt.Errorf("alloy: reserving %d bytes of shared memory (is /dev/shm full?): %w", size, err)
	}
	mem, err := mapFd(fd, size)
	if err != nil {
		return nil, err
	}
	return &region{mem: mem, fd: fd}, nil
}

// openNamed opens an existing named region, refusing anything but a regular
// file owned by our effective uid or shared (mode 0660) with one of our
// groups: another user's file could be resized or rewritten under us.
func openNamed(name string) (*region, Layout, error) { return openNamedWith(name, Options{}) }

// openNamedWith is openNamed in o.Dir that, with o.AllowForeign, also
// accepts a regular file owned by another user (Rust:
// Region::open_named_opts).
func openNamedWith(name string, o Options) (*region, Layout, error) {
	if err := checkName(name); err != nil {
		return nil, Layout{}, err
	}
	path := filepath.Join(o.dir(), name)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.EACCES) {
		return nil, Layout{}, deniedError(name, path, err)
	}
	if err != nil {
		return nil, Layout{}, fmt.Errorf("alloy: open %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, Layout{}, fmt.Errorf("alloy: stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, Layout{}, fmt.Errorf("%w: %s is not a regular file", ErrForeignOwner, path)
	}
	shared := groupShared(uint32(st.Mode)) && inGroup(st.Gid)
	if me := uint32(unix.Geteuid()); st.Uid != me && !o.AllowForeign && !shared {
		unix.Close(fd)
		return nil, Layout{}, fmt.Errorf("%w: ring %q is owned by uid %d, not by this user (uid %d)", ErrForeignOwner, name, st.Uid, me)
	}
	r, l, err := mapAndValidate(fd)
	if err != nil {
		unix.Close(fd)
		return nil, Layout{}, err
	}
	if o.Prefault {
		// A live ring: read-only, so no byte is written.
		prefault(r.mem, false)
		r.prefault = true
	}
	r.name = name
	return r, l, nil
}

// fileSize returns the current size of fd's file.
func fileSize(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("alloy: fstat: %w", err)
	}
	return uint64(st.Size), nil
}

// mapAndValidate maps the header, waits up to 1 s for magic (a zero-size file
// counts as "being created" too: the creator may not have reached ftruncate),
// validates it (§7) and maps the whole region.
func mapAndValidate(fd int) (*region, Layout, error) {
	deadline := time.Now().Add(initWait)
	for {
		size, err := fileSize(fd)
		if err != nil {
			return nil, Layout{}, err
		}
		if size == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
			continue
		}
		if size < HeaderSize {
			return nil, Layout{}, fmt.Errorf("%w: size %d, needed %d", ErrTruncated, size, HeaderSize)
		}
		hdr, err := mapFd(fd, HeaderSize)
		if err != nil {
			return nil, Layout{}, err
		}
		l, err := ReadLayout(hdr, size)
		unix.Munmap(hdr)
		if errors.Is(err, ErrNotInitialized) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			return nil, Layout{}, err
		}
		// Map total_size, not the file size: a larger file's tail is ignored.
		mem, err := mapFd(fd, l.TotalSize)
		if err != nil {
			return nil, Layout{}, err
		}
		return &region{mem: mem, fd: fd}, l, nil
	}
}

// close unmaps the region and closes its fd. The file itself stays.
func (r *region) close() error {
	err := unix.Munmap(r.mem)
	if ro := r.readOnly(); ro != nil {
		if rerr := unix.Munmap(ro); err == nil {
			err = rerr
		}
	}
	if cerr := unix.Close(r.fd); err == nil {
		err = cerr
	}
	r.mem = nil
	return err
}

// Remove deletes the named region <ShmDir>/<name>. Processes that have it
// mapped keep their mapping; new opens fail.
func Remove(name string) error { return RemoveIn(ShmDir(), name) }

// RemoveIn deletes the named region <dir>/<name>.
func RemoveIn(dir, name string) error {
	if err := platformOK(); err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return err
	}
	path := filepath.Join(dir, name)
	if err := unix.Unlink(path); err != nil {
		return fmt.Errorf("alloy: remove %s: %w", path, err)
	}
	return nil
}

// FdFromEnv returns the region fd a parent passed in the ALLOY_FD environment
// variable (LAYOUT §1), for use with OpenFd.
func FdFromEnv() (int, error) {
	v, ok := os.LookupEnv("ALLOY_FD")
	if !ok {
		return -1, errors.New("alloy: ALLOY_FD is not set")
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 0 {
		return -1, fmt.Errorf("alloy: ALLOY_FD=%q is not a file descriptor", v)
	}
	return fd, nil
}
