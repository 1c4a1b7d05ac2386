package ring

// Snapshot is a decoded view of a whole region: every header field, table
// entry, done word and slot header. It is read field by field while peers
// may be writing, so it is a diagnostic, not a consistent cut.
type Snapshot struct {
	Layout
	CreatorPid uint32
	CreatedNs  uint64

	Published         uint64
	Closed            uint32
	Error             uint32
	ProducerPid       uint32
	ProducerStart     uint32 // with ProducerPid, the identity word (LAYOUT §11.1)
	ProducerHeartbeat uint64
	StreamStart       uint64 // first sequence of the current stream (LAYOUT §4.1)
	StreamGen         uint32 // generation of the current stream

	DataWaiters    uint32
	DataFutex      uint32
	SpaceWaiters   uint32
	SpaceFutex     uint32
	TableEpoch     uint64
	TableLock      uint32
	TableLockStart uint32
	LostCount      uint64 // consumer members reclaimed as dead (LAYOUT §11.3)
	LostPid        uint32 // the last one's pid

	SchemaSeq uint32
	SchemaLen uint32

	Subscribers []SubscriberSnapshot // every entry, FREE ones included
	Members     []MemberSnapshot     // every entry
	Done        [][]uint64           // Done[k][i], LAYOUT §3.3
	Slots       []SlotSnapshot       // by slot index
}

// SubscriberSnapshot is one subscriber table entry (LAYOUT §3.1).
type SubscriberSnapshot struct {
	State, Kind, Group, Members, OwnerPid, OwnerStart uint32
	Heartbeat, Claim, Release                         uint64
}

// MemberSnapshot is one member table entry (LAYOUT §3.2).
type MemberSnapshot struct {
	State, Subscriber, Pid, Start uint32
	Heartbeat                     uint64
}

// SlotSnapshot is one slot header and its payload (LAYOUT §3.4). Payload
// aliases the mapping and is payload[0:len] clamped to slot_size.
type SlotSnapshot struct {
	Stamp           uint64
	Len, Flags, Gen uint32 // Gen: the message's stream generation (LAYOUT §4.1)
	Payload         []byte
}

// Snapshot decodes the region.
func (r *Ring) Snapshot() Snapshot {
	m, l := r.mem, &r.lay
	u32 := func(off uint64) uint32 { return u32At(m, off).Load() }
	u64 := func(off uint64) uint64 { return u64At(m, off).Load() }
	s := Snapshot{
		Layout: *l, CreatorPid: u32(offCreatorPid), CreatedNs: u64(offCreatedNs),
		Published: u64(offPublished), Closed: u32(offClosed), Error: u32(offError),
		ProducerPid: u32(offProducerPid), ProducerStart: u32(offProducerStart),
		ProducerHeartbeat: u64(offProducerHeartbeat),
		StreamStart:       u64(offStreamStart), StreamGen: u32(offStreamGen),
		DataWaiters: u32(offDataWaiters), DataFutex: u32(offDataFutex),
		SpaceWaiters: u32(offSpaceWaiters), SpaceFutex: u32(offSpaceFutex),
		TableEpoch: u64(offTableEpoch), TableLock: u32(offTableLock), TableLockStart: u32(offTableLockStart),
		LostCount: u64(offLostCount), LostPid: u32(offLostPid),
		SchemaSeq: u32(offSchemaSeq), SchemaLen: u32(offSchemaLen),
	}
	for k := uint32(0); k < l.MaxSubscribers; k++ {
		o := l.subOff(k)
		s.Subscribers = append(s.Subscribers, SubscriberSnapshot{
			State: u32(o + subState), Kind: u32(o + subKind), Group: u32(o + subGroup),
			Members: u32(o + subMembers), OwnerPid: u32(o + subOwnerPid), OwnerStart: u32(o + subOwnerStart),
			Heartbeat: u64(o + subHeartbeat), Claim: u64(o + subClaim), Release: u64(o + subRelease),
		})
		done := make([]uint64, l.SlotCount)
		for i := range done {
			done[i] = u64(l.doneOff(k, uint64(i)))
		}
		s.Done = append(s.Done, done)
	}
	for j := uint32(0); j < l.MaxMembers; j++ {
		o := l.memberOff(j)
		s.Members = append(s.Members, MemberSnapshot{
			State: u32(o + memState), Subscriber: u32(o + memSubscriber),
			Pid: u32(o + memPid), Start: u32(o + memStart), Heartbeat: u64(o + memHeartbeat),
		})
	}
	for i := uint64(0); i < uint64(l.SlotCount); i++ {
		o := l.slotOff(i)
		n := min(u32(o+slotLen), l.SlotSize)
		p := o + SlotHeaderSize
		s.Slots = append(s.Slots, SlotSnapshot{
			Stamp: u64(o + slotStamp), Len: u32(o + slotLen), Flags: u32(o + slotFlags), Gen: u32(o + slotGen),
			Payload: m[p : p+uint64(n)],
		})
	}
	return s
}
