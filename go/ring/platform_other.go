//go:build !linux

package ring

// Alloy rings need Linux: futexes to wake peers in other processes, memfd
// with seals for anonymous regions, fallocate (LAYOUT §1, §6). On other
// systems the package compiles, so a service that deploys on Linux builds on
// a developer's macOS laptop, and every entry point (Create, Open,
// OpenOrCreate, CreateAnonymous, OpenFd, StatNamed, List, Remove, RecvFd …)
// fails with ErrUnsupportedPlatform. No Ring can exist here, so nothing
// below is reached; doc/README.md ("A macOS port") sketches what a real
// port would take.

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// osSupported reports whether this operating system can hold Alloy rings.
func osSupported() error {
	return fmt.Errorf("%w; this is %s/%s", ErrUnsupportedPlatform, runtime.GOOS, runtime.GOARCH)
}

func fallocate(int, uint64) error { return osSupported() }

func statfsFree(st *unix.Statfs_t) uint64 { return st.Bavail * uint64(st.Bsize) }

func createAnonymous(string, Layout, Options) (*region, error) { return nil, osSupported() }

func openFd(int) (*region, Layout, error) { return nil, Layout{}, osSupported() }

// unreachable panics: a futex operation needs a mapped ring, and none can be
// made on this system.
func unreachable() { panic(osSupported()) }

func futexWaitOn(*atomic.Uint32, uint32, time.Duration) { unreachable() }

func futexWakeAll(*atomic.Uint32) { unreachable() }
