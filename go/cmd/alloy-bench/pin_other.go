//go:build !linux

package main

import "errors"

// pinThread: CPU affinity is set with sched_setaffinity, Linux only (the
// benchmarks themselves need Linux; this keeps the tool compiling).
func pinThread(cpu int) (restore func(), err error) {
	return nil, errors.New("--pin needs Linux (sched_setaffinity)")
}
