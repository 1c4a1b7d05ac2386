package ring

import "errors"

// Sentinel errors. Functions wrap them with detail (fmt.Errorf("%w: ...")),
// so test for them with errors.Is. End-of-stream is reported as io.EOF,
// returned unwrapped as the io package's convention asks.
var (
	// ErrBadMagic: the region does not start with "ALLOYSHM" (LAYOUT §7).
	ErrBadMagic = errors.New("alloy: bad magic")
	// ErrVersionMismatch: the region uses another layout version.
	ErrVersionMismatch = errors.New("alloy: layout version mismatch")
	// ErrTruncated: the file is shorter than the header or than total_size.
	ErrTruncated = errors.New("alloy: region truncated")
	// ErrInvalidLayout: a configuration field is out of bounds or total_size
	// disagrees with the computed layout; also returned for an invalid Config.
	ErrInvalidLayout = errors.New("alloy: invalid layout")
	// ErrNotInitialized: magic stayed zero for 1 s, so the creator never
	// finished (or died while) writing the header.
	ErrNotInitialized = errors.New("alloy: region not initialized")
	// ErrNotSealed: an anonymous region's fd lacks the seals of LAYOUT §1, so a
	// peer could shrink it under us.
	ErrNotSealed = errors.New("alloy: memfd is not sealed")
	// ErrUnsupportedPlatform: Alloy rings need Linux (futex, memfd); on
	// other systems the package compiles and every entry point returns this
	// error, wrapped with the GOOS/GOARCH (never returned on Linux).
	ErrUnsupportedPlatform = errors.New("alloy rings need Linux (futex, memfd)")
	// ErrProducerExists: another live producer is attached.
	ErrProducerExists = errors.New("alloy: a producer is already attached")
	// ErrFull: the ring is full for the slowest subscriber and the
	// back-pressure policy is Fail.
	ErrFull = errors.New("alloy: ring full")
	// ErrTimeout: a blocking call's deadline passed.
	ErrTimeout = errors.New("alloy: timed out")
	// ErrEmpty: TryRecv found no message (the stream has not ended).
	ErrEmpty = errors.New("alloy: no message available")
	// ErrMessageTooLarge: a message is longer than slot_size; nothing was written.
	ErrMessageTooLarge = errors.New("alloy: message too large")
	// ErrTableFull: no free subscriber or member entry.
	ErrTableFull = errors.New("alloy: subscriber table full")
	// ErrCorrupt: the shared memory contradicts the protocol (a correct peer
	// never causes this).
	ErrCorrupt = errors.New("alloy: shared memory corrupt")
	// ErrSchemaTooLarge: schema bytes exceed schema_capacity.
	ErrSchemaTooLarge = errors.New("alloy: schema too large")
	// ErrProducerGone: a consumer waited for data while the attached
	// producer was dead (LAYOUT §11.2). Everything it published was
	// delivered first; the consumer stays usable for a later producer.
	ErrProducerGone = errors.New("alloy: producer gone")
	// ErrClosed: the handle was closed, or the stream was closed before the
	// producer attached.
	ErrClosed = errors.New("alloy: closed")
	// ErrStreamEnded: the ring's stream was closed (LAYOUT §4.1). A producer
	// attaching without ProducerOptions.NewStream gets it (wrapped together
	// with ErrClosed), and so does a consumer that joined after the end and
	// has nothing to read until a producer starts a new stream.
	ErrStreamEnded = errors.New("alloy: the stream has ended")
	// ErrNoConsumers: a producer with ProducerOptions.RequireConsumers found
	// no subscriber attached; nothing was published (LAYOUT §4.2).
	ErrNoConsumers = errors.New("alloy: no consumer attached")
	// ErrConsumerLost: a consumer process died and was detached since the
	// last send (ProducerOptions.ReportLostConsumers); the message was not
	// published. The error is a *ConsumerLostError.
	ErrConsumerLost = errors.New("alloy: a consumer died")
	// ErrTooFewConsumers: Producer.WaitForConsumers ended (context done)
	// before enough consumers attached; it wraps the context's error too.
	ErrTooFewConsumers = errors.New("alloy: too few consumers attached")
	// ErrConfigMismatch: OpenOrCreate found an existing ring whose geometry
	// differs from a non-zero field of the Config asked for.
	ErrConfigMismatch = errors.New("alloy: ring geometry differs")
	// ErrForeignOwner: a named region is owned by another user (Open
	// refuses it; OpenForeign accepts it on purpose), or is not a regular
	// file.
	ErrForeignOwner = errors.New("alloy: region owned by another user")
	// ErrNoSpace: the shared-memory directory has less free space than a
	// new region needs (Docker's 64 MB /dev/shm, a full tmpfs); the message
	// names the fix (Rust: RegionError::NoSpace).
	ErrNoSpace = errors.New("alloy: not enough shared memory")
)
