// Package ring is the pure-Go implementation of the Alloy shared-memory ring
// (doc/LAYOUT.md, version 3): one producer publishes variable-length messages
// into fixed-size slots of a region mapped by several processes, and
// consumers read them in place, without copying.
//
// A region is created by name under /dev/shm (Create, Open, Remove) or as a
// sealed memfd passed to other processes by inheritance or SCM_RIGHTS
// (CreateAnonymous, OpenFd, SendFd, RecvFd). On it:
//
//   - a Producer reserves a slot, writes the payload in place and publishes
//     it (Reserve, Publish; Send copies for you). When the slowest subscriber
//     is a whole ring behind, its Backpressure either fails with ErrFull or
//     blocks, optionally until a timeout (ErrTimeout).
//   - a broadcast Consumer (Subscribe) receives every message published after
//     it joined; work-queue members (JoinQueue with one group id) share the
//     messages so that each goes to exactly one of them.
//   - Recv returns a Lease whose Bytes alias the shared slot. The slot is
//     reused only after Release; leases may be released in any order. A
//     consumer holding the lease the full ring waits on gets
//     ErrRetentionStall after ConsumerOptions.HeldLeaseTimeout (1 s)
//     instead of waiting for ever (doc/README.md "Holding batches").
//   - After Producer.Close, consumers drain what was published and then get
//     io.EOF (unwrapped, as the io convention asks).
//   - A ring carries one stream at a time and can carry another after it
//     ended: a producer with ProducerOptions.NewStream starts the next
//     stream generation (LAYOUT §4.1); without it, attaching to a closed
//     ring fails with ErrStreamEnded. Consumers attached across the change
//     get io.EOF once, then the new stream; a consumer that joins an ended
//     stream gets ErrStreamEnded. OpenOrCreate opens or creates a named ring.
//   - A producer can know its consumers (LAYOUT §4.2): WaitForConsumers,
//     Receivers and LastReceivers (whom a message was published to),
//     RequireConsumers (ErrNoConsumers instead of publishing into the
//     void), ReportLostConsumers (a *ConsumerLostError once a consumer
//     process died) and ConsumersLost. ConsumerOptions.History lets a late
//     joiner receive the last messages published before it joined.
//
// Peers may die at any instruction (LAYOUT §11). Every pid in the region
// is recorded with its process's start time; a peer is dead when its
// process is gone (or a zombie) or its pid now names another process —
// never because it stopped running: a consumer that is stopped (SIGSTOP, a
// debugger, a long GC pause) keeps its leases and gates the producer, whose
// Backpressure then fails with ErrTimeout or ErrFull. A consumer waiting on
// a dead producer gets ErrProducerGone (after everything it published), and
// a new producer takes the dead one's place, continuing the sequence. A
// producer blocked on a full ring for ProducerOptions.ReclaimAfter detaches
// dead consumers, so a killed broadcast consumer stops gating the others.
// Heartbeats, refreshed every 100 ms, only feed Stat's Stalled hint.
//
// Blocking calls have context variants (Consumer.RecvContext,
// Producer.ReserveContext, Producer.SendContext) that return ctx.Err()
// promptly when the context is done: cancellation wakes the futex wait,
// which is in any case bounded to 50-100 ms slices. Ring, Producer and
// Consumer implement io.Closer.
//
// Ring.Stat and StatNamed take a snapshot of a ring for inspection (the
// `alloy-go stat`, `watch` and `ls` commands); StatNamed maps the region
// read-only, so looking never changes a ring. ProducerPid, ProducerAlive,
// IsClosed and StreamGen read single header words, for callers that need
// only those.
//
// Rings need Linux (futex, memfd). The package compiles for any GOOS, so
// a service that deploys on Linux builds on a macOS laptop, but there every
// entry point (Create, Open, OpenOrCreate, CreateAnonymous, OpenFd,
// StatNamed, List, Remove, RecvFd) returns an error matching
// ErrUnsupportedPlatform.
//
// The Rust crate alloy-shm implements the same layout; the two interoperate
// on one region. All cross-process fields are accessed with sync/atomic,
// whose sequentially consistent operations are at least as strong as the
// orderings LAYOUT.md names.
//
// Errors wrap the sentinels of this package, so test for them with
// errors.Is: ErrBadMagic, ErrVersionMismatch, ErrTruncated,
// ErrInvalidLayout, ErrNotInitialized and ErrNotSealed when opening a
// region; ErrProducerExists, ErrTableFull and ErrClosed when attaching;
// ErrStreamEnded when attaching to a closed ring without NewStream;
// ErrFull, ErrTimeout, ErrMessageTooLarge, ErrNoConsumers and
// ErrConsumerLost from Reserve; ErrTooFewConsumers from WaitForConsumers; ErrEmpty,
// ErrTimeout, ErrProducerGone, ErrRetentionStall and ErrCorrupt from the
// receive calls;
// ErrSchemaTooLarge from SetSchema. End-of-stream is io.EOF (unwrapped),
// cancellation context.Canceled or context.DeadlineExceeded.
package ring
