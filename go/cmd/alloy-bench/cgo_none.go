//go:build !alloy_ffi

package main

import "errors"

// bridgeBuilt: the cgo-oneshot transport is not in this binary.
const bridgeBuilt = false

// errNoBridge is what the cgo-oneshot transport reports in an alloy-bench
// built without the bridge (cgo.go needs -tags alloy_ffi and the Rust
// library target/release/liballoy_ffi.a).
var errNoBridge = errors.New("this alloy-bench was built without the cgo bridge: " +
	"build it with `make bench-tools` (go build -tags alloy_ffi after the Rust build), " +
	"or leave the transport out with --only")

func cgoLatency(int64, int) (Result, error)        { return Result{}, errNoBridge }
func cgoThroughput(int64, int64) (Result, error)   { return Result{}, errNoBridge }
func cgoRoundTrip(arrowShape, int) (Result, error) { return Result{}, errNoBridge }
