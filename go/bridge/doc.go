// Package bridge calls Rust with Apache Arrow data in one-shot mode: Go
// exports arrays through the Arrow C Data Interface, calls a named Rust
// handler through cgo, Rust reads the arrays without copying and may answer
// with a record batch, which Go imports without copying.
//
// Build tag: the package links the Rust static library
// target/release/liballoy_ffi.a (crate alloy-ffi), which exists only after a
// cargo build, so everything but this documentation is behind the build tag
// alloy_ffi. Build the library first (`make build`), then build, vet or test
// with the tag:
//
//	go test -tags alloy_ffi ./bridge
//
// Without the tag the package is empty: `go build ./...`, `go vet ./...`
// and `go test ./...` of a fresh checkout need no Rust build, and a program
// importing bridge fails to compile with "undefined: bridge.…" until it is
// built with -tags alloy_ffi. The bridge needs cgo.
//
// Ownership: every array handed to a call is exported (retained) for the
// duration Rust holds it and released exactly once, by Rust, whatever the
// outcome; a result record is owned by the caller, who must Release it.
//
// Go memory and cgo: arrow-go's export stores the addresses of Go-allocated
// buffers in C memory and keeps them alive with a cgo.Handle until Rust
// releases them. That passes the default cgo checks (GODEBUG=cgocheck=1);
// programs that want no Go pointer in C memory at all build their arrays
// with mallocator.NewMallocator() instead of memory.NewGoAllocator().
package bridge
