package main

import (
	"os"
	"os/exec"
)

// The shm-go-ipc-python row (issue #16): shm-go-ipc with a Python peer
// (python_sink.py: the alloy_shm package, pyarrow batches read in place)
// instead of the Rust arrow-sink, at one batch size (1 MiB when the grid
// has it, else its largest streaming size), blocking mode only (a Python
// subscription parks; it has no spinning wait). Reported as a ratio to
// shm-go-ipc blocking at the same size in the same run.

// pythonSink is the Python peer; the smoke test points it at the package
// directory's copy.
var pythonSink = "go/cmd/alloy-bench/python_sink.py"

const pythonTransport = "shm-go-ipc-python"

// pythonSize is the batch size of the shm-go-ipc-python row in grid g:
// the ratios' reference throughput size (1 MiB when the grid has it).
func pythonSize(g grid) int64 {
	_, tp := refSizes(g)
	return tp
}

// pythonMissing says why the Python peer cannot run ("" when it can): the
// script, python3, or the alloy_shm package (make test-python installs it)
// is missing.
func pythonMissing() string {
	if _, err := os.Stat(pythonSink); err != nil {
		return "the Python peer " + pythonSink + " is missing"
	}
	if err := exec.Command("python3", "-c", "import alloy_shm, pyarrow").Run(); err != nil {
		return "python3 cannot import alloy_shm and pyarrow (make test-python installs the package)"
	}
	return ""
}

// pythonReady reports whether the row can run; when not, it lists it as
// not measured (once per run).
func (s *suite) pythonReady() bool {
	why := pythonMissing()
	if why == "" {
		return true
	}
	if s.want(pythonTransport) && !s.listed(pythonTransport) {
		s.rep.Unavailable = append(s.rep.Unavailable, Unavailable{pythonTransport, why})
	}
	return false
}

// pythonPeerArgv is the command line of the Python peer on ring name.
func pythonPeerArgv(name string) []string {
	return []string{"python3", pythonSink, "--ring", name}
}
