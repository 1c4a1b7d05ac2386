// Package reqrep calls a worker process with Arrow record batches over an
// Alloy request/reply channel (doc/LAYOUT.md §12): the streaming
// counterpart of the one-shot cgo bridge, between two processes, in pure
// Go.
//
// A channel NAME is two shared-memory rings created by the worker (for
// example the Rust alloy_shm::reqrep::Worker): NAME.req carries requests to
// the worker's threads, NAME.rep carries replies back. Dial connects to a
// served channel; Client.Call sends one record batch and waits for the
// worker's result batch or error. Call is safe for concurrent use: a
// demultiplexer goroutine routes replies to their callers by correlation
// id, so any number of calls may be outstanding.
//
//	c, err := reqrep.Dial(ctx, "squares")
//	...
//	defer c.Close()
//	out, err := c.Call(ctx, rec) // ctx deadline → context.DeadlineExceeded
//	...
//	defer out.Release()
//
// Requests are written straight into their slot with every buffer 64-byte
// aligned, so a Rust worker reads them in place; replies are copied out of
// their slot (one copy) and the slot released at once, so a returned record
// lives independently of the channel.
//
// One client process per channel: a second one is refused with ErrBusy.
// When the worker dies or stops, every pending and later call fails with
// ErrPeerGone; Close the client and Dial again once a worker serves the
// channel anew. Dictionary-encoded columns travel like any other: each
// message carries the dictionaries its record uses (LAYOUT.md §12.2).
package reqrep

import (
	"errors"
	"fmt"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrPeerGone: the worker died (the error then also matches
	// ring.ErrProducerGone) or closed the channel. Pending and later calls
	// fail with it.
	ErrPeerGone = errors.New("reqrep: worker gone")
	// ErrBusy: another live client process holds the channel (it also
	// matches ring.ErrProducerExists).
	ErrBusy = errors.New("reqrep: channel already has a client")
	// ErrNotServed: no live worker served the channel before Dial's context
	// ended.
	ErrNotServed = errors.New("reqrep: channel not served")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("reqrep: client closed")
	// ErrRemote: the worker answered with an error; the error is a
	// *RemoteError with its status and text.
	ErrRemote = errors.New("reqrep: worker error")
	// ErrBadMessage: a received message breaks LAYOUT.md §12.2.
	ErrBadMessage = errors.New("reqrep: bad channel message")
	// ErrUnsupported: the record cannot travel on a channel. No record
	// is refused any more (dictionary columns travel since issue #19); kept
	// for compatibility.
	ErrUnsupported = errors.New("reqrep: unsupported record")
)

// Status codes of error replies (LAYOUT.md §12.4).
const (
	// StatusHandler: the worker's handler returned an error.
	StatusHandler uint32 = 1
	// StatusBadRequest: the worker could not decode the request.
	StatusBadRequest uint32 = 2
	// StatusPanic: the worker's handler panicked.
	StatusPanic uint32 = 3
	// StatusReplyTooLarge: the reply did not fit in a reply slot.
	StatusReplyTooLarge uint32 = 4
)

// RemoteError is an error reply: the worker's status code and message.
type RemoteError struct {
	Status uint32
	Text   string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("reqrep: worker error (status %d): %s", e.Status, e.Text)
}

// Is makes errors.Is(err, ErrRemote) true.
func (e *RemoteError) Is(target error) bool { return target == ErrRemote }

// Flag is the slot flags value of every channel message (LAYOUT.md §8, 5).
const Flag uint32 = 5

// RequestRing and ReplyRing name the two rings of channel name.
func RequestRing(name string) string { return name + ".req" }

// ReplyRing is the name of the reply ring of channel name.
func ReplyRing(name string) string { return name + ".rep" }
