//go:build linux

package ring

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// hugetlbfsPage returns the huge page size of fd's file when it lives on
// hugetlbfs (a MFD_HUGETLB memfd, a file in a hugetlbfs mount), else 0.
// Such a file is sized, mapped and unmapped in whole huge pages.
func hugetlbfsPage(fd int) uint64 {
	var st unix.Statfs_t
	if unix.Fstatfs(fd, &st) != nil || st.Type != unix.HUGETLBFS_MAGIC {
		return 0
	}
	return uint64(st.Bsize)
}

// dirHugePage is hugetlbfsPage for a directory.
func dirHugePage(dir string) uint64 {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil || st.Type != unix.HUGETLBFS_MAGIC {
		return 0
	}
	return uint64(st.Bsize)
}

// anonymousFd makes the memfd of an anonymous region of size bytes and
// returns it with its final size: a MFD_HUGETLB memfd, sized and reserved
// in whole huge pages, when h asks for huge pages and they are free; else
// (HugePagesOff, or HugePagesPrefer without free huge pages) a normal one,
// unsized.
func anonymousFd(label string, size uint64, h HugePages) (int, uint64, error) {
	if h != HugePagesOff {
		fd, n, err := hugeMemfd(label, size)
		if err == nil || h == HugePagesRequire {
			return fd, n, err
		}
	}
	fd, err := unix.MemfdCreate("alloy:"+label, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, 0, fmt.Errorf("alloy: memfd_create: %w", err)
	}
	return fd, size, nil
}

func hugeMemfd(label string, size uint64) (int, uint64, error) {
	fd, err := unix.MemfdCreate("alloy:"+label, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_HUGETLB)
	if err != nil {
		return -1, 0, fmt.Errorf("%w: no huge-page memfd (MFD_HUGETLB): %v", ErrHugePages, err)
	}
	page := hugetlbfsPage(fd)
	n := roundUp(size, page)
	if err = unix.Ftruncate(fd, int64(n)); err == nil {
		err = unix.Fallocate(fd, 0, 0, int64(n))
	}
	if errors.Is(err, unix.ENOSPC) {
		err = hugePagesShort(n, page)
	} else if err != nil {
		err = fmt.Errorf("alloy: reserving %d bytes of huge pages: %w", n, err)
	}
	if err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	return fd, n, nil
}

// prefault populates mem's page tables (Options.Prefault): writable for a
// region being created (its pages are new and zero; nothing is
// overwritten), else read-only, writing nothing. Best effort: kernels
// before 5.14 lack MADV_POPULATE_* and leave pages to fault on first touch.
func prefault(mem []byte, write bool) {
	advice := unix.MADV_POPULATE_READ
	if write {
		advice = unix.MADV_POPULATE_WRITE
	}
	if len(mem) > 0 {
		_ = unix.Madvise(mem, advice)
	}
}
