//go:build alloy_ffi

package bridge

/*
#include "alloy.h"
*/
import "C"

import (
	"log/slog"
	"os"
	"sync"

	"github.com/ignalina/alloy/go/internal/alog"
)

var (
	logLevel   = new(slog.LevelVar) // INFO by default, like Rust's side
	logHandler = alog.NewHandler(os.Stderr, logLevel, "Go")
	logger     = slog.New(logHandler)

	outputMu sync.Mutex
	output   = os.Stderr // kept referenced: Rust writes to its descriptor
)

// Logger returns the logger the bridge writes its [Go] lines with.
func Logger() *slog.Logger { return logger }

// Info logs msg at INFO in the shared format, like the original Alloy's
// api.Info.
func Info(msg string, args ...any) { logger.Info(msg, args...) }

// Error logs msg at ERROR in the shared format.
func Error(msg string, args ...any) { logger.Error(msg, args...) }

// SetLogLevel sets the least severe level logged by both Go and Rust.
func SetLogLevel(level slog.Level) {
	logLevel.Set(level)
	C.alloy_set_log_level(C.int32_t(level))
}

// LogLevel returns the level set with SetLogLevel (INFO by default).
func LogLevel() slog.Level { return logLevel.Level() }

// SetLogOutput sends the log lines of both Go and Rust to f (stderr by
// default), so that they interleave in the order they were written. f must
// stay open while either side may log.
func SetLogOutput(f *os.File) {
	outputMu.Lock()
	defer outputMu.Unlock()
	output = f
	logHandler.SetOutput(f)
	C.alloy_set_log_fd(C.int32_t(f.Fd()))
}
