package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Stat is the state of a ring at one instant, as `alloy-go stat --json`
// prints it. The JSON field names are defined in doc/README.md
// ("Inspection") and shared with the Rust `alloy stat --json`
// (alloy_shm::ring::RingStat). It is read word by word while peers keep
// writing, so it is a diagnostic, not a consistent cut.
type Stat struct {
	// Name is the ring name ("" for an anonymous ring).
	Name string `json:"name"`
	// Version is the layout version (3).
	Version uint32 `json:"version"`
	// SlotCount is the number of slots N.
	SlotCount uint32 `json:"slot_count"`
	// SlotSize is the payload capacity of a slot.
	SlotSize uint32 `json:"slot_size"`
	// TotalSize is the size of the region in bytes.
	TotalSize uint64 `json:"total_size"`
	// MaxSubscribers is the number of subscriber table entries.
	MaxSubscribers uint32 `json:"max_subscribers"`
	// MaxMembers is the number of member table entries.
	MaxMembers uint32 `json:"max_members"`
	// CreatorPid is the pid of the process that created the region.
	CreatorPid uint32 `json:"creator_pid"`
	// Published is the number of messages published so far, which is
	// also the sequence number of the producer's next message.
	Published uint64 `json:"published"`
	// Closed reports end-of-stream.
	Closed bool `json:"closed"`
	// ProducerPid is the attached producer's pid (0: none).
	ProducerPid uint32 `json:"producer_pid"`
	// ProducerAlive reports whether that producer is alive (LAYOUT §11.1).
	ProducerAlive bool `json:"producer_alive"`
	// SlotsInUse is Published minus the slowest subscriber's release
	// cursor (0 without subscribers), at most N: slots the producer cannot
	// reuse yet.
	SlotsInUse uint64 `json:"slots_in_use"`
	// Fill is SlotsInUse / SlotCount.
	Fill float64 `json:"fill"`
	// Consumers lists every subscriber entry that is not FREE.
	Consumers []ConsumerStat `json:"consumers"`
	// DataWakes counts the futex wake-ups the producer issued on publish,
	// to parked consumers (LAYOUT §2.1; 0 from writers that predate the
	// counters).
	DataWakes uint64 `json:"data_wakes"`
	// FullRefusals counts reservations refused with ErrFull (Fail).
	FullRefusals uint64 `json:"full_refusals"`
	// BackpressureWaits counts reservations that found the ring full and
	// waited (Block).
	BackpressureWaits uint64 `json:"backpressure_waits"`
	// BackpressureNs is the total time of those waits in nanoseconds.
	BackpressureNs uint64 `json:"backpressure_ns"`
	// Reclaims counts reclaims (LAYOUT §11.3) that freed a dead
	// consumer's entry.
	Reclaims uint32 `json:"reclaims"`
	// ConsumersLost is lost_count: consumer members detached because their
	// process died.
	ConsumersLost uint64 `json:"consumers_lost"`
	// IntervalMs is the time since the previous sample (nil for one sample).
	IntervalMs *float64 `json:"interval_ms"`
	// MessagesPerS is the publish rate since the previous sample.
	MessagesPerS *float64 `json:"messages_per_s"`

	sampledNs uint64
}

// ConsumerStat is one subscriber entry: a broadcast consumer or a whole
// work-queue group.
type ConsumerStat struct {
	// Index is the subscriber entry index.
	Index uint32 `json:"index"`
	// State is "joining" or "active".
	State string `json:"state"`
	// Kind is "broadcast", "queue", or "unknown" for a damaged entry.
	Kind string `json:"kind"`
	// Group is the work-queue group id (0 for broadcast).
	Group uint32 `json:"group"`
	// OwnerPid is the pid that created the entry.
	OwnerPid uint32 `json:"owner_pid"`
	// Members are the attached consumer handles.
	Members []MemberStat `json:"members"`
	// Alive reports whether some member is alive (for a joining entry:
	// its owner).
	Alive bool `json:"alive"`
	// Cursor is claim: the next sequence number this consumer receives.
	Cursor uint64 `json:"cursor"`
	// Released is release: every sequence below it was released.
	Released uint64 `json:"released"`
	// Lag is Published − Cursor: published, not yet received.
	Lag uint64 `json:"lag"`
	// LeasesHeld counts messages received and not yet released: the
	// sequences in [Released, Cursor) whose done word is neither released
	// nor waiting for redelivery.
	LeasesHeld uint64 `json:"leases_held"`
	// Redeliver counts, for a work-queue group, the messages a dead member
	// held that wait for redelivery to another member (LAYOUT §11.3); 0
	// for broadcast subscribers.
	Redeliver uint64 `json:"redeliver"`
	// ConsumedPerS is the release rate since the previous sample.
	ConsumedPerS *float64 `json:"consumed_per_s"`
}

// MemberStat is one attached consumer handle.
type MemberStat struct {
	// Index is the member entry index.
	Index uint32 `json:"index"`
	// Pid is the member's process.
	Pid uint32 `json:"pid"`
	// Alive reports whether it is alive (LAYOUT §11.1).
	Alive bool `json:"alive"`
	// Stalled reports a member that is alive but whose heartbeat is older
	// than 3 s: stopped (SIGSTOP, a debugger), frozen or starved. A hint,
	// never a reason to detach it (LAYOUT §11.3 "No eviction"); such a
	// member holding leases gates the producer.
	Stalled bool `json:"stalled"`
	// Parks counts its futex waits for data since it attached (LAYOUT §2.1).
	Parks uint64 `json:"parks"`
	// ParkNs is the total time of those waits in nanoseconds.
	ParkNs uint64 `json:"park_ns"`
	// SpaceWakes counts the futex wake-ups its releases issued to a
	// producer waiting for space.
	SpaceWakes uint64 `json:"space_wakes"`
}

// Stat takes a snapshot of the ring. It changes nothing in the region.
func (r *Ring) Stat() Stat { return statOf(r.mem, r.lay, r.Name(), r.env.monoNs()) }

// StatNamed maps <ShmDir>/<name> read-only (O_RDONLY, PROT_READ), takes a
// snapshot and unmaps it: inspecting a ring can never take an entry in it
// or write to it. Another user's ring is accepted when its mode lets us
// read it.
func StatNamed(name string) (Stat, error) {
	if err := platformOK(); err != nil {
		return Stat{}, err
	}
	if err := checkName(name); err != nil {
		return Stat{}, err
	}
	return statPath(NamedPath(name), name)
}

func statPath(path, name string) (Stat, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return Stat{}, fmt.Errorf("alloy: open %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Stat{}, fmt.Errorf("alloy: stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return Stat{}, fmt.Errorf("%w: %s is not a regular file", ErrInvalidLayout, path)
	}
	hdr := make([]byte, HeaderSize)
	n, err := unix.Pread(fd, hdr, 0)
	if err != nil {
		return Stat{}, fmt.Errorf("alloy: read %s: %w", path, err)
	}
	l, err := ReadLayout(hdr[:n], uint64(st.Size))
	if err != nil {
		return Stat{}, fmt.Errorf("%s: %w", path, err)
	}
	mem, err := unix.Mmap(fd, 0, int(l.TotalSize), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return Stat{}, fmt.Errorf("alloy: mmap %s: %w", path, err)
	}
	defer unix.Munmap(mem)
	// Atomic loads are plain loads on amd64 and arm64, so they work on a
	// read-only mapping.
	return statOf(mem, l, name, newEnv().monoNs()), nil
}

func kindName(k uint32) string {
	switch k {
	case kindBroadcast:
		return "broadcast"
	case kindQueue:
		return "queue"
	}
	return "unknown"
}

// statOf computes the snapshot from the words of a mapping.
func statOf(m []byte, l Layout, name string, now uint64) Stat {
	u32 := func(off uint64) uint32 { return u32At(m, off).Load() }
	u64 := func(off uint64) uint64 { return u64At(m, off).Load() }
	n := uint64(l.SlotCount)
	// Pid and start time in one load (LAYOUT §11.1).
	pid := u64(offProducerPid)
	ppid := identityPid(pid)
	published := u64(offPublished)
	s := Stat{
		Name: name, Version: u32(offVersion), SlotCount: l.SlotCount, SlotSize: l.SlotSize,
		TotalSize: l.TotalSize, MaxSubscribers: l.MaxSubscribers, MaxMembers: l.MaxMembers,
		CreatorPid: u32(offCreatorPid), Published: published, Closed: u32(offClosed) == 1,
		ProducerPid: ppid, ProducerAlive: producerAlive(pid),
		Consumers: []ConsumerStat{}, sampledNs: now,
		DataWakes: u64(offDataWakes), FullRefusals: u64(offFullRefusals),
		BackpressureWaits: u64(offBackpressureWaits), BackpressureNs: u64(offBackpressureNs),
		Reclaims: u32(offReclaims), ConsumersLost: u64(offLostCount),
	}
	type member struct {
		sub uint32
		MemberStat
	}
	var members []member
	for j := uint32(0); j < l.MaxMembers; j++ {
		o := l.memberOff(j)
		if u32(o+memState) != stateActive {
			continue
		}
		id := u64(o + memPid)
		alive := !identityDead(id)
		members = append(members, member{u32(o + memSubscriber),
			MemberStat{Index: j, Pid: identityPid(id), Alive: alive, Stalled: alive && stalled(u64(o+memHeartbeat), now),
				Parks: u64(o + memParks), ParkNs: u64(o + memParkNs), SpaceWakes: u64(o + memSpaceWakes)}})
	}
	slowest, any := uint64(0), false
	for k := uint32(0); k < l.MaxSubscribers; k++ {
		o := l.subOff(k)
		st := u32(o + subState)
		if st != stateJoining && st != stateActive {
			continue
		}
		cursor, released := u64(o+subClaim), u64(o+subRelease)
		if !any || released < slowest {
			slowest, any = released, true
		}
		// Sequences claimed and not released; an out-of-order release marks
		// done[k][s mod N] = s+1 before the cursor moves past it (LAYOUT
		// §5.2). At most N can be outstanding, which bounds a damaged entry.
		out := min(sub0(cursor, released), n)
		var held uint64
		for s := released; s < released+out; s++ {
			if d := u64(l.doneOff(k, s%n)); d != s+1 && d != doneRedeliver(s) {
				held++
			}
		}
		var redeliver uint64
		if u32(o+subKind) == kindQueue { // only maintained for queue groups (§3.1)
			redeliver = u64(o + subRedeliver)
		}
		c := ConsumerStat{
			Index: k, State: "active", Kind: kindName(u32(o + subKind)), Group: u32(o + subGroup),
			OwnerPid: u32(o + subOwnerPid), Members: []MemberStat{},
			Cursor: cursor, Released: released, Lag: sub0(published, cursor), LeasesHeld: held,
			Redeliver: redeliver,
		}
		for _, mb := range members {
			if mb.sub == k {
				c.Members = append(c.Members, mb.MemberStat)
				c.Alive = c.Alive || mb.Alive
			}
		}
		if st == stateJoining {
			c.State = "joining"
			c.Alive = !identityDead(u64(o + subOwnerPid))
		}
		s.Consumers = append(s.Consumers, c)
	}
	if any {
		s.SlotsInUse = min(sub0(published, slowest), n)
	}
	s.Fill = float64(s.SlotsInUse) / float64(n)
	return s
}

// sub0 is a − b, or 0 when b > a.
func sub0(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// WithRates returns s with the rates since prev, an earlier sample of the
// same ring: messages published per second and, for each consumer that was
// already there (same entry, kind and group), messages released per second.
func (s Stat) WithRates(prev Stat) Stat {
	if s.sampledNs <= prev.sampledNs {
		return s
	}
	dt := s.sampledNs - prev.sampledNs
	secs := float64(dt) / 1e9
	ms := float64(dt) / 1e6
	mps := float64(sub0(s.Published, prev.Published)) / secs
	s.IntervalMs, s.MessagesPerS = &ms, &mps
	s.Consumers = append(s.Consumers[:0:0], s.Consumers...) // a copy, never nil
	for i := range s.Consumers {
		c := &s.Consumers[i]
		for _, p := range prev.Consumers {
			if p.Index == c.Index && p.Kind == c.Kind && p.Group == c.Group && p.Released <= c.Released {
				r := float64(c.Released-p.Released) / secs
				c.ConsumedPerS = &r
			}
		}
	}
	return s
}

// Render is the human-readable form `alloy-go stat` prints without --json
// (the same table as the Rust `alloy stat`).
func (s Stat) Render() string {
	rate := func(r *float64) string {
		if r == nil {
			return "-"
		}
		return fmt.Sprintf("%.1f/s", *r)
	}
	name := s.Name
	if name == "" {
		name = "(anonymous)"
	}
	out := fmt.Sprintf("ring %s: layout v%d, %d slots x %d bytes (%d bytes total)\n",
		name, s.Version, s.SlotCount, s.SlotSize, s.TotalSize)
	producer := "none"
	if s.ProducerPid != 0 {
		producer = fmt.Sprintf("pid %d (alive)", s.ProducerPid)
		if !s.ProducerAlive {
			producer = fmt.Sprintf("pid %d (DEAD)", s.ProducerPid)
		}
	}
	closed := ""
	if s.Closed {
		closed = " (closed)"
	}
	out += fmt.Sprintf("producer: %s, published %d%s, %s\n", producer, s.Published, closed, rate(s.MessagesPerS))
	out += fmt.Sprintf("fill: %d/%d slots in use (%.0f%%)\n", s.SlotsInUse, s.SlotCount, s.Fill*100)
	var parks, parkNs, spaceWakes uint64
	for _, c := range s.Consumers {
		for _, m := range c.Members {
			parks, parkNs, spaceWakes = parks+m.Parks, parkNs+m.ParkNs, spaceWakes+m.SpaceWakes
		}
	}
	out += fmt.Sprintf("counters: wakes %d (producer) + %d (consumers), parks %d (%.1f ms), "+
		"back-pressure waits %d (%.1f ms), full refusals %d, reclaims %d, consumers lost %d\n",
		s.DataWakes, spaceWakes, parks, float64(parkNs)/1e6, s.BackpressureWaits,
		float64(s.BackpressureNs)/1e6, s.FullRefusals, s.Reclaims, s.ConsumersLost)
	out += fmt.Sprintf("consumers: %d of %d entries\n", len(s.Consumers), s.MaxSubscribers)
	row := "  %3v %-9v %5v %-7v %-14v %10v %8v %6v %10v\n"
	if len(s.Consumers) > 0 {
		out += fmt.Sprintf(row, "#", "kind", "group", "state", "pids", "cursor", "lag", "leases", "rate")
	}
	for _, c := range s.Consumers {
		pids := fmt.Sprintf("(%d)", c.OwnerPid)
		if len(c.Members) > 0 {
			pids = ""
			for i, m := range c.Members {
				if i > 0 {
					pids += ","
				}
				// "!" dead, "?" alive but stalled (LAYOUT §11.1).
				pids += fmt.Sprint(m.Pid)
				if !m.Alive {
					pids += "!"
				} else if m.Stalled {
					pids += "?"
				}
			}
		}
		st := c.State
		if !c.Alive {
			st = "DEAD"
		}
		out += fmt.Sprintf(row, c.Index, c.Kind, c.Group, st, pids, c.Cursor, c.Lag, c.LeasesHeld, rate(c.ConsumedPerS))
	}
	return out
}

// Listing is one Alloy ring found by List, as `alloy-go ls --json` prints
// it (the same fields as the Rust `alloy ls --json`).
type Listing struct {
	// Name is the file name (the ring name).
	Name string `json:"name"`
	// Version is the layout version in the header.
	Version uint32 `json:"version"`
	// Size is the file size in bytes.
	Size uint64 `json:"size"`
	// SlotCount is the header's slot count (0 if unreadable).
	SlotCount uint32 `json:"slot_count"`
	// SlotSize is the header's slot size.
	SlotSize uint32 `json:"slot_size"`
	// ProducerPid is the attached producer's pid (0: none).
	ProducerPid uint32 `json:"producer_pid"`
	// ProducerAlive reports whether that producer is alive.
	ProducerAlive bool `json:"producer_alive"`
	// Error says why the ring cannot be used or read (nil: a valid ring
	// of this package's layout version, Version).
	Error *string `json:"error"`
}

// Unfinished is the listing error of a hidden ".<name>.<pid>.<n>.tmp" file
// (LAYOUT.md §1): a ring still being created, or one whose creator died
// before linking it into place. It is not a ring.
const Unfinished = "not a ring: the temporary file of a creation in progress, or left by a creator that died " +
	"before linking it into place (remove the file if its pid is dead)"

// List returns the Alloy rings in ShmDir (see ListDir).
func List() ([]Listing, error) { return ListDir(ShmDir()) }

// ListDir lists the Alloy rings in dir: every regular file whose first
// eight bytes are the magic, sorted by name. Only each file's 256-byte
// header is read. Files without the magic are skipped silently; files that
// cannot be read, and a creation's leftover temporary file (name starting
// with '.', Unfinished), are listed with Error set.
func ListDir(dir string) ([]Listing, error) {
	if err := platformOK(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("alloy: list %s: %w", dir, err)
	}
	out := []Listing{}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if l, ok := listOne(filepath.Join(dir, e.Name()), e.Name()); ok {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func listOne(path, name string) (Listing, bool) {
	l := Listing{Name: name}
	fail := func(err error) (Listing, bool) {
		msg := "cannot read: " + err.Error()
		l.Error = &msg
		return l, true
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	l.Size = uint64(fi.Size())
	hdr := make([]byte, HeaderSize)
	n, err := io.ReadFull(f, hdr)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fail(err)
	}
	if n < 8 || binary.LittleEndian.Uint64(hdr[offMagic:]) != Magic {
		return l, false
	}
	l.Version = binary.LittleEndian.Uint32(hdr[offVersion:])
	l.SlotCount = binary.LittleEndian.Uint32(hdr[offSlotCount:])
	l.SlotSize = binary.LittleEndian.Uint32(hdr[offSlotSize:])
	if strings.HasPrefix(name, ".") {
		msg := Unfinished
		l.Error = &msg
		return l, true
	}
	if _, err := ReadLayout(hdr[:n], l.Size); err != nil {
		msg := err.Error()
		l.Error = &msg
		return l, true
	}
	id := binary.LittleEndian.Uint64(hdr[offProducerPid:]) // pid and start time (LAYOUT §11.1)
	l.ProducerPid = identityPid(id)
	l.ProducerAlive = producerAlive(id)
	return l, true
}

// DefaultStatInterval is how far apart `stat` takes its two samples when
// computing rates (its --interval default).
const DefaultStatInterval = 200 * time.Millisecond
