package ring

import (
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ignalina/alloy/go/internal/proc"
)

// Peer-failure constants of LAYOUT §11.
const (
	// heartbeatPeriod is how often attached handles refresh their
	// heartbeats (HEARTBEAT_PERIOD, §11.1).
	heartbeatPeriod = 100 * time.Millisecond
	// staleAfter marks a live participant whose heartbeat is older as
	// stalled (STALE_AFTER, §11.1): stopped, traced or starved. A hint for
	// inspection only, never a proof of death.
	staleAfter = 3 * time.Second
	// producerCheckPeriod is how often a waiting consumer looks at the
	// producer (§11.2).
	producerCheckPeriod = 50 * time.Millisecond
	// defaultReclaimAfter is ProducerOptions.ReclaimAfter's zero value (§11.3).
	defaultReclaimAfter = time.Second
)

// isDead is the LAYOUT §11.1 test for a participant recorded as (pid,
// start): its process is gone or a zombie, or the pid now names a process
// with another start time (pid reuse). start 0 means unknown: the pid
// alone decides. A stopped, traced or starved process is alive, however
// old its heartbeat.
func isDead(pid, start uint32) bool {
	switch st, actual := proc.Probe(pid); st {
	case proc.Gone:
		return true
	case proc.Running:
		return start != 0 && uint32(actual) != start
	}
	return false
}

// identity is the u64 identity word of LAYOUT §11.1: pid | start<<32.
func identity(pid, start uint32) uint64 { return uint64(pid) | uint64(start)<<32 }

// identityPid and identityStart split an identity word.
func identityPid(w uint64) uint32   { return uint32(w) }
func identityStart(w uint64) uint32 { return uint32(w >> 32) }

// identityDead is isDead for an identity word.
func identityDead(w uint64) bool { return isDead(identityPid(w), identityStart(w)) }

// ownStart is the low 32 bits of this process's start time, read once; 0
// ("unknown") if /proc/self/stat cannot be read.
var ownStart = sync.OnceValue(func() uint32 {
	if st, start := proc.Probe(uint32(os.Getpid())); st == proc.Running {
		return uint32(start)
	}
	return 0
})

// stalled reports whether a heartbeat is older than staleAfter at now
// (both CLOCK_MONOTONIC ns): a hint that a live participant is not
// running. A heartbeat from the future (another process's clock read
// after our now) is fresh.
func stalled(heartbeat, now uint64) bool {
	return now > heartbeat && now-heartbeat > uint64(staleAfter)
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

// ProducerAlive reports whether a producer is attached and its process is
// alive (LAYOUT §11.1: pid and start time, so a reused pid is not taken for
// the producer, and a stopped producer is alive).
func (r *Ring) ProducerAlive() bool { return producerAlive(u64At(r.mem, offProducerPid).Load()) }

// ProducerPid is the pid of the attached producer, 0 when none is attached
// (or a stream's producer detached). The process may be dead: see
// ProducerAlive.
func (r *Ring) ProducerPid() uint32 { return identityPid(u64At(r.mem, offProducerPid).Load()) }

// producerAlive is the test of ProducerAlive on the producer identity word
// (LAYOUT §11.1), for callers holding a copy of it (stat, ls).
func producerAlive(id uint64) bool { return identityPid(id) != 0 && !identityDead(id) }
