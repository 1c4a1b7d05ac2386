package ring

import (
	"bytes"
	"errors"
	"io/fs"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Peer-failure constants of LAYOUT §11.
const (
	// heartbeatPeriod is how often attached handles refresh their
	// heartbeats (HEARTBEAT_PERIOD, §11.1).
	heartbeatPeriod = 100 * time.Millisecond
	// staleAfter marks a participant whose heartbeat is older dead
	// (STALE_AFTER, §11.1): it catches a pid reused by an unrelated process.
	staleAfter = 3 * time.Second
	// producerCheckPeriod is how often a waiting consumer looks at the
	// producer (§11.2).
	producerCheckPeriod = 50 * time.Millisecond
	// defaultReclaimAfter is ProducerOptions.ReclaimAfter's zero value (§11.3).
	defaultReclaimAfter = time.Second
)

// processDead is the pid half of the §11.1 test: the process is dead when
// /proc/<pid>/stat is missing or its state is Z (zombie) or X. Any other
// failure to read it (EACCES, …) counts as alive: we only ever give up on a
// peer we know to be gone.
func processDead(pid uint32) bool {
	if pid == 0 || pid > math.MaxInt32 {
		return true // no process can have this id
	}
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/stat")
	if err != nil {
		// ESRCH: the process exited between open and read.
		return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH)
	}
	// "pid (comm) S ...": comm may contain spaces and parentheses, so the
	// state is the first field after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	switch b[i+2] {
	case 'Z', 'X':
		return true
	}
	return false
}

// isDead is the whole §11.1 test for a participant recorded as (pid,
// heartbeat), now and heartbeat being CLOCK_MONOTONIC ns (env.monoNs). A
// heartbeat from the future (another process's clock read after our now)
// is fresh.
func isDead(pid uint32, heartbeat uint64, now uint64) bool {
	return processDead(pid) || (now > heartbeat && now-heartbeat > uint64(staleAfter))
}

// heartbeat refreshes heartbeat words in the mapping every heartbeatPeriod
// from its own goroutine (§11.1), until stop.
type heartbeat struct {
	quit     chan struct{}
	done     chan struct{} // closed when the goroutine has returned
	stopOnce sync.Once
}

// startHeartbeat stores clock() into every word now and then every
// heartbeatPeriod while still(), when given, reports true: a handle that
// was taken over must not keep refreshing the new owner's entry.
func startHeartbeat(clock func() uint64, still func() bool, words ...*atomic.Uint64) *heartbeat {
	h := &heartbeat{quit: make(chan struct{}), done: make(chan struct{})}
	beat := func() {
		if still != nil && !still() {
			return
		}
		now := clock()
		for _, w := range words {
			w.Store(now)
		}
	}
	beat()
	go func() {
		defer close(h.done)
		// A truncated file (fault.go): the beat stops, the handle's next
		// operation reports it.
		defer catchFaultQuietly(TrapFaults())
		t := time.NewTicker(heartbeatPeriod)
		defer t.Stop()
		for {
			select {
			case <-h.quit:
				return
			case <-t.C:
				beat()
			}
		}
	}()
	return h
}

// stop ends the goroutine and waits for it, so no heartbeat is written after
// stop returns (the entry may be reused, the mapping unmapped). Idempotent.
func (h *heartbeat) stop() {
	h.stopOnce.Do(func() { close(h.quit) })
	<-h.done
}
