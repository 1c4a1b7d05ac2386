//go:build alloy_ffi

package bridge

/*
#cgo CFLAGS: -I${SRCDIR}/../../cshim
#cgo LDFLAGS: ${SRCDIR}/../../target/release/liballoy_ffi.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
#include <stdlib.h>
#include "alloy.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/cdata"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Names of the handlers built into the Rust library.
const (
	// Echo logs every array at INFO ("array1: Int32[1, 2, 3, -4]") and
	// answers with the sent records concatenated (nothing for FromChunks).
	Echo = "echo"
	// Sum answers with a one-row record: the sum of every numeric column.
	Sum = "sum"
	// Panic always panics in Rust; it comes back as ErrPanic.
	Panic = "panic"
)

// Errors a call can return, wrapped with Rust's message; test with errors.Is.
var (
	ErrNilInput       = errors.New("bridge: nil array or record")
	ErrNullPointer    = errors.New("bridge: null pointer passed to Rust")
	ErrInvalidInput   = errors.New("bridge: invalid Arrow input")
	ErrUnknownHandler = errors.New("bridge: unknown handler")
	ErrHandler        = errors.New("bridge: handler failed")
	ErrPanic          = errors.New("bridge: Rust panicked")
	ErrExport         = errors.New("bridge: cannot export the result")
	ErrImport         = errors.New("bridge: cannot import the result")
)

func codeError(code C.int64_t) error {
	switch code {
	case C.ALLOY_ERR_NULL_POINTER:
		return ErrNullPointer
	case C.ALLOY_ERR_INVALID_INPUT:
		return ErrInvalidInput
	case C.ALLOY_ERR_UNKNOWN_HANDLER:
		return ErrUnknownHandler
	case C.ALLOY_ERR_HANDLER:
		return ErrHandler
	case C.ALLOY_ERR_PANIC:
		return ErrPanic
	case C.ALLOY_ERR_EXPORT:
		return ErrExport
	default:
		return fmt.Errorf("bridge: unknown Rust error code %d", int64(code))
	}
}

// GoBridge calls Rust handlers with Arrow data built in Go.
type GoBridge struct {
	// GoAllocator builds the arrays of BuildInt32s; nil means
	// memory.DefaultAllocator. Arrays passed to calls may come from any
	// allocator.
	GoAllocator memory.Allocator
}

func (b GoBridge) allocator() memory.Allocator {
	if b.GoAllocator == nil {
		return memory.DefaultAllocator
	}
	return b.GoAllocator
}

// FromChunks sends arrays to Rust's Echo handler, logging each step as the
// original Alloy did, and returns how many arrays Rust received.
func (b GoBridge) FromChunks(arrays []arrow.Array) (int, error) {
	for i, a := range arrays {
		if a == nil {
			return 0, fmt.Errorf("%w: array #%d", ErrNilInput, i+1)
		}
		logger.Info(fmt.Sprintf("Exporting ArrowSchema and ArrowArray #%d to C", i+1))
	}
	logger.Info(fmt.Sprintf("Calling Rust through C ffi now with %d ArrowArrays", len(arrays)))
	n, rec, err := b.CallArrays(Echo, arrays)
	if rec != nil {
		rec.Release()
	}
	if err != nil {
		return 0, err
	}
	logger.Info("Hello, again! Successfully sent Arrow data to Rust.")
	return n, nil
}

// CallArrays sends independent arrays to the named handler. It returns how
// many arrays Rust received and the handler's answer, or nil when it gave
// none. The caller releases the answer.
func (b GoBridge) CallArrays(handler string, arrays []arrow.Array) (int, arrow.RecordBatch, error) {
	for i, a := range arrays {
		if a == nil {
			return 0, nil, fmt.Errorf("%w: array #%d", ErrNilInput, i+1)
		}
	}
	return call(false, handler, len(arrays), func(i int, a *cdata.CArrowArray, s *cdata.CArrowSchema) {
		cdata.ExportArrowArray(arrays[i], a, s)
	})
}

// SendRecord sends one record to the Echo handler and returns its answer:
// the same record, now in Rust's hands and read back without a copy.
func (b GoBridge) SendRecord(rec arrow.RecordBatch) (arrow.RecordBatch, error) {
	_, out, err := b.CallRecords(Echo, rec)
	return out, err
}

// CallRecords sends records to the named handler. It returns how many
// columns Rust received in all and the handler's answer, or nil when it
// gave none. The caller releases the answer.
func (b GoBridge) CallRecords(handler string, recs ...arrow.RecordBatch) (int, arrow.RecordBatch, error) {
	for i, r := range recs {
		if r == nil {
			return 0, nil, fmt.Errorf("%w: record #%d", ErrNilInput, i+1)
		}
	}
	return call(true, handler, len(recs), func(i int, a *cdata.CArrowArray, s *cdata.CArrowSchema) {
		cdata.ExportArrowRecordBatch(recs[i], a, s)
	})
}

// HasHandler reports whether a Rust handler is registered under name.
func HasHandler(name string) (bool, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return false, fmt.Errorf("%w: handler name %q contains NUL", ErrInvalidInput, name)
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	switch rc := C.alloy_has_handler(cname); {
	case rc < 0:
		return false, fmt.Errorf("%w: handler name %q", codeError(rc), name)
	default:
		return rc == 1, nil
	}
}

// LiveCounts are Rust's counters of arrays that crossed the boundary and
// are still alive.
type LiveCounts struct {
	Imported uint64 // arrays from Go that Rust has not released yet
	Exported uint64 // arrays from Rust that Go has not released yet
	Calls    uint64 // calls so far
}

// Live reads Rust's live-array counters.
func Live() LiveCounts {
	var c C.struct_AlloyLiveCounts
	C.alloy_live_counts(&c)
	return LiveCounts{Imported: uint64(c.imported), Exported: uint64(c.exported), Calls: uint64(c.calls)}
}

// call exports n inputs into C memory with export, calls Rust
// (alloy_call_batches when batches, else alloy_call_arrays) and imports the
// answer. The structs live in C memory because they hold pointers Rust keeps
// after the call returns.
func call(batches bool, handler string, n int, export func(i int, a *cdata.CArrowArray, s *cdata.CArrowSchema)) (int, arrow.RecordBatch, error) {
	if strings.IndexByte(handler, 0) >= 0 {
		return 0, nil, fmt.Errorf("%w: handler name %q contains NUL", ErrInvalidInput, handler)
	}
	cname := C.CString(handler)
	defer C.free(unsafe.Pointer(cname))
	// One extra slot of each for the answer; calloc leaves every struct
	// released (release == NULL).
	arrs := unsafe.Slice((*C.struct_ArrowArray)(C.calloc(C.size_t(n+1), C.sizeof_struct_ArrowArray)), n+1)
	schs := unsafe.Slice((*C.struct_ArrowSchema)(C.calloc(C.size_t(n+1), C.sizeof_struct_ArrowSchema)), n+1)
	defer C.free(unsafe.Pointer(&arrs[0]))
	defer C.free(unsafe.Pointer(&schs[0]))
	for i := 0; i < n; i++ {
		export(i, cArr(&arrs[i]), cSch(&schs[i]))
	}
	var cerr *C.char
	var rc C.int64_t
	if batches {
		rc = C.alloy_call_batches(cname, &arrs[0], &schs[0], C.size_t(n), &arrs[n], &schs[n], &cerr)
	} else {
		rc = C.alloy_call_arrays(cname, &arrs[0], &schs[0], C.size_t(n), &arrs[n], &schs[n], &cerr)
	}
	// Rust moved every input it took and left it released; whatever it
	// could not take is released here. Releasing a released struct is a
	// no-op, so each input is released exactly once.
	for i := 0; i < n; i++ {
		cdata.ReleaseCArrowArray(cArr(&arrs[i]))
		cdata.ReleaseCArrowSchema(cSch(&schs[i]))
	}
	if rc < 0 {
		msg := C.GoString(cerr)
		C.alloy_string_free(cerr)
		cdata.ReleaseCArrowArray(cArr(&arrs[n]))
		cdata.ReleaseCArrowSchema(cSch(&schs[n]))
		return 0, nil, fmt.Errorf("%w: %s", codeError(rc), msg)
	}
	if arrs[n].release == nil {
		cdata.ReleaseCArrowSchema(cSch(&schs[n]))
		return int(rc), nil, nil
	}
	// The import moves the answer out of arrs[n] into arrow-go's own C
	// memory, so freeing arrs below does not free the answer.
	rec, err := cdata.ImportCRecordBatch(cArr(&arrs[n]), cSch(&schs[n]))
	cdata.ReleaseCArrowSchema(cSch(&schs[n]))
	if err != nil {
		cdata.ReleaseCArrowArray(cArr(&arrs[n]))
		return 0, nil, fmt.Errorf("%w: %v", ErrImport, err)
	}
	return int(rc), rec, nil
}

func cArr(a *C.struct_ArrowArray) *cdata.CArrowArray { return (*cdata.CArrowArray)(unsafe.Pointer(a)) }
func cSch(s *C.struct_ArrowSchema) *cdata.CArrowSchema {
	return (*cdata.CArrowSchema)(unsafe.Pointer(s))
}
