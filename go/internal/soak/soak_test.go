// Package soak drives the long-run reliability test of doc/TESTING.md
// ("Soak"): checked messages from a Go producer (alloy-go test-produce) to
// Rust consumers (alloy test-consume) — two broadcast consumers and a
// two-member work-queue group — while consumer processes are SIGKILLed at
// any moment (holding leases, mid-claim) and restarted. It has no code of
// its own.
//
// TestSoak is the full run (ALLOY_SOAK=1, `make soak`); TestSoakShort, a
// few seconds, runs in `make test`.
package soak

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ignalina/alloy/go/internal/proc"
	"github.com/ignalina/alloy/go/internal/testbin"
	"github.com/ignalina/alloy/go/ring"
)

var (
	rustBin = testbin.Path("ALLOY_RUST_BIN", "bin/alloy")
	goBin   string // the system under test: built without -race (testbin.BuildGoCLI)
)

func TestMain(m *testing.M) {
	bin, dir, err := testbin.BuildGoCLI()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	goBin = bin
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// config of one soak run.
type config struct {
	count    uint64        // checked messages
	restarts int           // consumer kills (each followed by a restart)
	reclaim  time.Duration // producer's --reclaim-after
	maxSize  int           // largest message (smallest: 16)
	slots    uint32
	// slack: how much longer than reclaim the producer may go without
	// publishing (scheduling on a loaded machine; make test runs packages
	// in parallel).
	slack time.Duration
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

// TestSoak: the full run, `make soak` (10,000,000 messages, 40 restarts).
func TestSoak(t *testing.T) {
	if os.Getenv("ALLOY_SOAK") != "1" {
		t.Skip("the full soak runs with ALLOY_SOAK=1 (make soak)")
	}
	run(t, config{
		count:    uint64(envInt(t, "ALLOY_SOAK_COUNT", 10_000_000)),
		restarts: envInt(t, "ALLOY_SOAK_RESTARTS", 40),
		reclaim:  200 * time.Millisecond,
		maxSize:  2048,
		slots:    64,
		slack:    300 * time.Millisecond,
	})
}

// TestSoakShort: the same checks on 200,000 messages with 8 restarts (each
// consumer killed twice).
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	run(t, config{count: 200_000, restarts: 8, reclaim: 200 * time.Millisecond, maxSize: 2048, slots: 64, slack: time.Second})
}

// role of a consumer slot: broadcast or member of queue group 1.
type role int

const (
	broadcast role = iota
	queue
)

// life is one process of a consumer slot.
type life struct {
	slot     int
	n        int // life number within the slot
	cmd      *exec.Cmd
	stdout   *bufio.Reader
	stderr   *bytes.Buffer
	record   string
	head     [2]uint64 // published just before start and once ready
	exited   chan error
	killed   bool
	rssFirst [2]int64 // kB: VmRSS and RssAnon, first sample
	rssLast  [2]int64 // kB: the same, last sample
	started  time.Time
	ended    time.Time
}

type soak struct {
	t     *testing.T
	cfg   config
	name  string
	r     *ring.Ring
	dir   string
	roles [4]role
	mu    sync.Mutex // guards cur and the rss fields of lives
	cur   [4]*life
	lives []*life
	// The queue group's deliveries of each message, over all lives:
	queued        []uint8 // all
	flagged       []uint8 // flagged redelivered
	byKilled      []uint8 // to a life that was then SIGKILLed
	queueKills    int     // kill events that chose a queue member
	caughtHolding int     // of which both members were killed holding leases
	// results
	maxStall   time.Duration
	stallAt    uint64
	restarts   [4]int
	prodRSS    [2][2]int64 // start and end: VmRSS, RssAnon (kB)
	bcastLives int
}

func run(t *testing.T, cfg config) {
	testbin.Need(t, "ALLOY_RUST_BIN", "bin/alloy")
	s := &soak{
		t:        t,
		cfg:      cfg,
		name:     fmt.Sprintf("alloy-soak-%d", os.Getpid()),
		dir:      t.TempDir(),
		roles:    [4]role{broadcast, broadcast, queue, queue},
		queued:   make([]uint8, cfg.count),
		flagged:  make([]uint8, cfg.count),
		byKilled: make([]uint8, cfg.count),
	}
	os.Remove("/dev/shm/" + s.name)
	r, err := ring.Create(s.name, ring.Config{SlotCount: cfg.slots, SlotSize: 4096, MaxSubscribers: 16, MaxMembers: 32})
	if err != nil {
		t.Fatal(err)
	}
	s.r = r
	t.Cleanup(func() { r.Close(); os.Remove("/dev/shm/" + s.name) })

	for i := range s.cur {
		s.start(i)
	}
	t0 := time.Now()
	prod := exec.Command(goBin, "test-produce", "--ring", s.name, "--count", strconv.FormatUint(cfg.count, 10),
		"--reclaim-after", strconv.Itoa(int(cfg.reclaim/time.Millisecond)), "--max-size", strconv.Itoa(cfg.maxSize))
	var prodOut, prodErr bytes.Buffer
	prod.Stdout, prod.Stderr = &prodOut, &prodErr
	if err := prod.Start(); err != nil {
		t.Fatal(err)
	}
	prodDone := make(chan error, 1)
	go func() { prodDone <- prod.Wait() }()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.watch(stop) }()
	go func() { defer wg.Done(); s.sampleRSS(stop, prod.Process.Pid) }()

	// Kill points: random positions in the stream, in order; the victims
	// take turns (from a random slot), so every consumer dies when there
	// are at least 4 restarts. A kill waits for no safe point: it lands
	// wherever the victim is (holding leases, between claim and record).
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	victim := rng.IntN(4)
	points := make([]uint64, cfg.restarts)
	for i := range points {
		points[i] = cfg.count/20 + rng.Uint64N(cfg.count*17/20)
	}
	sort.Slice(points, func(a, b int) bool { return points[a] < points[b] })
	var prodErrV error
	prodFinished := false
	for _, p := range points {
		for !prodFinished && s.r.Stat().Published < p {
			select {
			case prodErrV = <-prodDone:
				prodFinished = true
			case <-time.After(time.Millisecond):
			}
		}
		if prodFinished {
			break
		}
		// Decorrelate the instant from the producer's progress.
		time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
		s.killAndRestart(victim % 4)
		victim++
	}
	if !prodFinished {
		prodErrV = <-prodDone
	}
	elapsed := time.Since(t0)
	close(stop)
	wg.Wait()
	if prodErrV != nil {
		t.Fatalf("producer: %v\n%s", prodErrV, prodErr.String())
	}
	var sent struct{ Sent, Bytes uint64 }
	if err := json.Unmarshal(prodOut.Bytes(), &sent); err != nil || sent.Sent != cfg.count {
		t.Fatalf("producer output %q: %v", prodOut.String(), err)
	}
	// The last lives read to end-of-stream.
	for i := range s.cur {
		l := s.cur[i]
		select {
		case err := <-l.exited:
			if err != nil {
				t.Fatalf("%s: %v\n%s", l, err, l.stderr.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s did not finish after end-of-stream", l)
		}
		l.ended = time.Now()
		s.check(l, true)
	}
	s.checkQueue()
	s.report(elapsed, sent.Bytes)
	if s.maxStall > s.cfg.reclaim+s.cfg.slack {
		t.Errorf("producer made no progress for %v (at message %d); reclaim delay %v", s.maxStall, s.stallAt, s.cfg.reclaim)
	}
	total := 0
	for _, n := range s.restarts {
		total += n
	}
	// A kill that chose a queue member while its group held leases
	// killed both members.
	if total != cfg.restarts+s.caughtHolding {
		t.Errorf("%d restarts, want %d + %d", total, cfg.restarts, s.caughtHolding)
	}
}

// slotName names consumer slot i.
func slotName(i int) string {
	if i >= 2 {
		return fmt.Sprintf("queue member %d", i%2)
	}
	return fmt.Sprintf("broadcast %d", i)
}

func (l *life) String() string {
	return fmt.Sprintf("%s life %d (pid %d)", slotName(l.slot), l.n, l.cmd.Process.Pid)
}

// start launches a new life of consumer slot i and waits until it joined.
func (s *soak) start(i int) {
	t := s.t
	n := 0
	if old := s.cur[i]; old != nil {
		n = old.n + 1
	}
	rec := filepath.Join(s.dir, fmt.Sprintf("c%d-%d.rec", i, n))
	f, err := os.Create(rec)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: only the pages the consumer writes take space. Room for
	// every message and redeliveries.
	if err := f.Truncate(int64(8 + 8*(s.cfg.count+4096))); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := []string{"test-consume", "--ring", s.name, "--record", rec, "--max-size", strconv.Itoa(s.cfg.maxSize)}
	if s.roles[i] == broadcast {
		// Dies holding leases: the producer must reclaim them.
		args = append(args, "--broadcast", "--hold", "2")
	} else {
		args = append(args, "--queue", "1")
	}

	cmd := exec.Command(rustBin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	l := &life{slot: i, n: n, cmd: cmd, stdout: bufio.NewReader(out), stderr: new(bytes.Buffer), record: rec, exited: make(chan error, 1)}
	cmd.Stderr = l.stderr
	l.head[0] = s.r.Stat().Published
	l.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := l.stdout.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		t.Fatalf("%s: %q %v\n%s", l, line, err, l.stderr.String())
	}
	l.head[1] = s.r.Stat().Published
	go func() {
		// Drain the final JSON line, then reap.
		_, _ = l.stdout.ReadString('\n')
		l.exited <- cmd.Wait()
	}()
	s.mu.Lock()
	s.cur[i] = l
	s.lives = append(s.lives, l)
	s.mu.Unlock()
}

// killAndRestart SIGKILLs the current life of slot i wherever it is and
// starts the next. Broadcast consumers die holding their two most recent
// leases (--hold 2). Queue members hold none between messages (a member
// that held leases while the others drained the ring would stall its
// group, which the library reports as an error), so every other queue
// kill is made to land while the group holds leases: both members are
// stopped until the group is caught holding some, and both are killed
// there (holding, mid-claim or in recv); the others land anywhere. A dead
// member's claimed messages are redelivered, flagged, to the group (LAYOUT
// §11.3): checkQueue accounts for them.
func (s *soak) killAndRestart(i int) {
	victims := []int{i}
	if s.roles[i] == queue {
		s.queueKills++
		if s.queueKills%2 == 0 {
			victims = []int{2, 3}
			s.stopHoldingQueue()
		}
	}
	for _, v := range victims {
		s.cur[v].cmd.Process.Kill()
	}
	for _, v := range victims {
		s.reap(v)
	}
	for _, v := range victims {
		s.start(v)
	}
}

// stopHoldingQueue stops both queue members at an instant when their group
// holds leases (claimed, unreleased messages).
func (s *soak) stopHoldingQueue() {
	t := s.t
	a, b := s.cur[2].cmd.Process, s.cur[3].cmd.Process
	for try := 0; ; try++ {
		if try == 10000 {
			t.Fatal("queue group never caught holding a lease")
		}
		a.Signal(syscall.SIGSTOP)
		b.Signal(syscall.SIGSTOP)
		waitStopped(t, a.Pid)
		waitStopped(t, b.Pid)
		if g, ok := s.group(); ok && g.LeasesHeld > 0 {
			s.caughtHolding++
			return
		}
		a.Signal(syscall.SIGCONT)
		b.Signal(syscall.SIGCONT)
		time.Sleep(time.Duration(50+try%200) * time.Microsecond)
	}
}

// reap waits for the SIGKILLed life of slot i and checks what it recorded.
func (s *soak) reap(i int) {
	t := s.t
	l := s.cur[i]
	s.mu.Lock()
	l.killed = true
	s.mu.Unlock()
	if err := <-l.exited; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("%s: exit %v before the kill\n%s", l, err, l.stderr.String())
	}
	l.ended = time.Now()
	s.check(l, false)
	s.restarts[i]++
}

// waitStopped waits until pid is in state T (stopped).
func waitStopped(t *testing.T, pid int) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		switch proc.State(pid) {
		case "T", "t":
			return
		case "":
			t.Fatalf("pid %d: no /proc/%d/stat", pid, pid)
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not stop", pid)
		}
		time.Sleep(20 * time.Microsecond)
	}
}

func (s *soak) group() (ring.ConsumerStat, bool) {
	for _, c := range s.r.Stat().Consumers {
		if c.Kind == "queue" && c.Group == 1 {
			return c, true
		}
	}
	return ring.ConsumerStat{}, false
}

// check verifies what life l recorded. Broadcast: consecutive numbers
// starting at the head it joined at (so nothing lost or duplicated in its
// lifetime window), up to the last message when it ran to end-of-stream.
// Queue: added to the group's tally (each message exactly once overall).
func (s *soak) check(l *life, final bool) {
	t := s.t
	f, err := os.Open(l.record)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(l.record)
	defer f.Close()
	var hdr [8]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(hdr[:])
	if n > s.cfg.count+4096 {
		t.Fatalf("%s: record count %d", l, n)
	}
	buf := make([]byte, 8*n)
	if _, err := f.ReadAt(buf, 8); err != nil && n > 0 {
		t.Fatal(err)
	}
	// Bit 63: received flagged redelivered (test-consume --record).
	const redelivered = 1 << 63
	js := func(k uint64) uint64 { return binary.LittleEndian.Uint64(buf[8*k:]) }
	if s.roles[l.slot] == queue {
		for k := uint64(0); k < n; k++ {
			j := js(k) &^ redelivered
			if j >= s.cfg.count {
				t.Fatalf("%s: message number %d out of range", l, j)
			}
			if s.queued[j] == 255 {
				t.Fatalf("message %d delivered 255 times", j)
			}
			s.queued[j]++
			if js(k)&redelivered != 0 {
				s.flagged[j]++
			}
			if !final {
				s.byKilled[j]++
			}
		}
		return
	}
	for k := uint64(0); k < n; k++ {
		if js(k)&redelivered != 0 {
			t.Fatalf("%s: broadcast message %d flagged redelivered", l, js(k)&^redelivered)
		}
	}
	s.bcastLives++
	if n == 0 {
		// Fine only if it may have joined after the last message.
		if final && l.head[1] < s.cfg.count {
			t.Fatalf("%s ran to end-of-stream but received nothing (joined with the head in [%d, %d])", l, l.head[0], l.head[1])
		}
		return
	}
	first := js(0)
	if first < l.head[0] || first > l.head[1] {
		t.Fatalf("%s: first message %d, but it joined when the head was in [%d, %d]", l, first, l.head[0], l.head[1])
	}
	for k := uint64(1); k < n; k++ {
		if js(k) != first+k {
			t.Fatalf("%s: message %d after %d (lost or duplicated)", l, js(k), js(k-1))
		}
	}
	if final && first+n != s.cfg.count {
		t.Fatalf("%s: ended at %d, want %d", l, first+n-1, s.cfg.count-1)
	}
}

// checkQueue checks the work-queue group's accounting over all lives
// (LAYOUT §11.3, at-least-once with flagged redelivery):
//   - every message was delivered at least once;
//   - at most one delivery of a message is unflagged: every duplicate is
//     flagged redelivered;
//   - a message delivered n > 1 times went to killed lives at least n-1
//     times: only a dead member's messages are redelivered;
//   - a message whose every delivery is flagged was claimed first by a
//     member killed between its claim and its record: at most one per
//     member kill.
func (s *soak) checkQueue() {
	t := s.t
	var dups, flagged, unrecorded int
	for j, n := range s.queued {
		f, k := int(s.flagged[j]), int(s.byKilled[j])
		switch {
		case n == 0:
			t.Fatalf("queue group never received message %d", j)
		case int(n)-f > 1:
			t.Fatalf("queue group received message %d %d times, %d of them not flagged redelivered", j, n, int(n)-f)
		case n > 1 && k < int(n)-1:
			t.Fatalf("queue group received message %d %d times, only %d of them in killed lives", j, n, k)
		}
		if n > 1 {
			dups += int(n) - 1
		}
		flagged += f
		if f > 0 && int(n) == f {
			unrecorded++
		}
	}
	kills := s.restarts[2] + s.restarts[3]
	if unrecorded > kills {
		t.Fatalf("%d messages delivered only flagged redelivered (first claimant killed before recording), after %d member kills", unrecorded, kills)
	}
	if s.caughtHolding > 0 && flagged == 0 {
		t.Fatalf("queue members were killed holding leases %d times, but nothing was redelivered", s.caughtHolding)
	}
	t.Logf("soak: queue group: every message at least once; %d duplicates, all flagged redelivered; %d flagged deliveries (%d of messages whose first claimant was killed before recording them) after %d member kills (%d times both killed holding leases)",
		dups, flagged, unrecorded, kills, s.caughtHolding)
}

// watch measures the longest time the producer published nothing while the
// stream was running.
func (s *soak) watch(stop chan struct{}) {
	last := s.r.Stat().Published
	since := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-time.After(2 * time.Millisecond):
		}
		st := s.r.Stat()
		now := time.Now()
		if st.Published != last || st.Closed || last == 0 {
			last, since = st.Published, now
			continue
		}
		if d := now.Sub(since); d > s.maxStall {
			s.maxStall, s.stallAt = d, last
		}
	}
}

// rssKB reads VmRSS and RssAnon of pid from /proc/PID/status (zeros if
// gone). VmRSS includes mapped files: the ring and, for a consumer, its
// --record file (8 bytes per message); RssAnon is the heap and stacks, where
// a leak would show.
func rssKB(pid int) (rss [2]int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return rss
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss[0] = n
		case "RssAnon:":
			rss[1] = n
		}
	}
	return rss
}

// sampleRSS records the first and last RSS of the producer (from the moment
// 5% of the stream is published, when it is warmed up) and of every
// consumer life (from its first sample), every 250 ms.
func (s *soak) sampleRSS(stop chan struct{}, prodPid int) {
	for {
		if kb := rssKB(prodPid); kb[0] > 0 && s.r.Stat().Published >= s.cfg.count/20 {
			if s.prodRSS[0][0] == 0 {
				s.prodRSS[0] = kb
			}
			s.prodRSS[1] = kb
		}
		s.mu.Lock()
		for _, l := range s.cur {
			if kb := rssKB(l.cmd.Process.Pid); kb[0] > 0 && !l.killed {
				if l.rssFirst[0] == 0 {
					l.rssFirst = kb
				}
				l.rssLast = kb
			}
		}
		s.mu.Unlock()
		select {
		case <-stop:
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (s *soak) report(elapsed time.Duration, bytes uint64) {
	t := s.t
	t.Logf("soak: %d messages (%.1f MB) in %v: %.0f messages/s", s.cfg.count, float64(bytes)/1e6, elapsed.Round(time.Millisecond),
		float64(s.cfg.count)/elapsed.Seconds())
	t.Logf("soak: restarts broadcast0=%d broadcast1=%d queue0=%d queue1=%d; %d broadcast lives checked",
		s.restarts[0], s.restarts[1], s.restarts[2], s.restarts[3], s.bcastLives)
	t.Logf("soak: longest producer stall %v (at message %d; reclaim delay %v)", s.maxStall.Round(time.Millisecond), s.stallAt, s.cfg.reclaim)
	t.Logf("soak: producer VmRSS start %d kB, end %d kB (RssAnon %d -> %d kB)", s.prodRSS[0][0], s.prodRSS[1][0], s.prodRSS[0][1], s.prodRSS[1][1])
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < 4; i++ {
		var longest *life
		for _, l := range s.lives {
			if l.slot == i && (longest == nil || l.ended.Sub(l.started) > longest.ended.Sub(longest.started)) {
				longest = l
			}
		}
		t.Logf("soak: %s: %d lives; longest (%v) VmRSS %d -> %d kB, RssAnon %d -> %d kB; last life VmRSS %d -> %d kB, RssAnon %d -> %d kB",
			slotName(i), s.restarts[i]+1, longest.ended.Sub(longest.started).Round(time.Millisecond),
			longest.rssFirst[0], longest.rssLast[0], longest.rssFirst[1], longest.rssLast[1],
			s.cur[i].rssFirst[0], s.cur[i].rssLast[0], s.cur[i].rssFirst[1], s.cur[i].rssLast[1])
		if longest.rssLast[1] > longest.rssFirst[1]+16*1024 {
			t.Errorf("%s: RssAnon grew from %d kB to %d kB in one life", slotName(i), longest.rssFirst[1], longest.rssLast[1])
		}
	}
	if s.prodRSS[1][1] > s.prodRSS[0][1]+32*1024 {
		t.Errorf("producer RssAnon grew from %d kB to %d kB", s.prodRSS[0][1], s.prodRSS[1][1])
	}
}
