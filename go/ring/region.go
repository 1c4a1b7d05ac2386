package ring

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// shmDir is where named regions live (LAYOUT §1).
const shmDir = "/dev/shm/"

// initWait is how long an opener waits for a creator to store magic.
const initWait = time.Second

// region is one mapping of a region file. It owns the fd and the mapping.
type region struct {
	mem  []byte
	fd   int
	name string // empty for anonymous regions
}

// checkName enforces LAYOUT §1's name rule, which also keeps names from
// escaping /dev/shm.
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

func mapFd(fd int, size uint64) ([]byte, error) {
	if size > uint64(^uint(0)>>1) {
		return nil, fmt.Errorf("%w: region of %d bytes cannot be mapped", ErrInvalidLayout, size)
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("alloy: mmap %d bytes: %w", size, err)
	}
	return mem, nil
}

// createNamed creates /dev/shm/<name> exclusively with mode 0600, sizes it and
// maps it. On failure the file is removed again, so a half-made region never
// lingers under a name.
func createNamed(name string, l Layout) (*region, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	path := shmDir + name
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("alloy: create %s: %w", path, err)
	}
	r, err := sizeAndMap(fd, l.TotalSize)
	if err != nil {
		unix.Close(fd)
		unix.Unlink(path)
		return nil, err
	}
	r.name = name
	return r, nil
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
// file owned by our effective uid: another user's file could be resized or
// rewritten under us.
func openNamed(name string) (*region, Layout, error) { return openNamedWith(name, false) }

// openNamedWith is openNamed that, with allowForeign, also accepts a regular
// file owned by another user (Rust: Region::open_named_with).
func openNamedWith(name string, allowForeign bool) (*region, Layout, error) {
	if err := checkName(name); err != nil {
		return nil, Layout{}, err
	}
	path := shmDir + name
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
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
	if me := uint32(unix.Geteuid()); st.Uid != me && !allowForeign {
		unix.Close(fd)
		return nil, Layout{}, fmt.Errorf("%w: ring %q is owned by uid %d, not by this user (uid %d)", ErrForeignOwner, name, st.Uid, me)
	}
	r, l, err := mapAndValidate(fd)
	if err != nil {
		unix.Close(fd)
		return nil, Layout{}, err
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
	if cerr := unix.Close(r.fd); err == nil {
		err = cerr
	}
	r.mem = nil
	return err
}

// Remove deletes the named region /dev/shm/<name>. Processes that have it
// mapped keep their mapping; new opens fail.
func Remove(name string) error {
	if err := platformOK(); err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return err
	}
	if err := unix.Unlink(shmDir + name); err != nil {
		return fmt.Errorf("alloy: remove %s: %w", shmDir+name, err)
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
