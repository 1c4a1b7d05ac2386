package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// peer is a running process of the Rust helper (examples/bench_peer.rs).
type peer struct {
	cmd  *exec.Cmd
	out  *bufio.Reader
	errb bytes.Buffer
	name string
}

// peerEnv is added to the environment of the peers started while it is
// set (withPin: ALLOY_BENCH_CPUS).
var peerEnv []string

// startPeer starts argv (the helper, possibly under strace) and, when
// waitReady, waits for its "ready" line.
func startPeer(waitReady bool, argv ...string) (*peer, error) {
	p := &peer{name: strings.Join(argv, " ")}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stderr = &p.errb
	if peerEnv != nil {
		p.cmd.Env = append(os.Environ(), peerEnv...)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.out = bufio.NewReader(stdout)
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	if waitReady {
		l, err := p.line()
		if err != nil || l != "ready" {
			p.cmd.Process.Kill()
			p.cmd.Wait()
			return nil, fmt.Errorf("%s: no ready line (%q, %v): %s", p.name, l, err, p.errb.String())
		}
	}
	return p, nil
}

func (p *peer) line() (string, error) {
	l, err := p.out.ReadString('\n')
	return strings.TrimSpace(l), err
}

// finish reads the peer's last line as JSON into v and waits for it to exit.
func (p *peer) finish(v any) error {
	var last string
	for {
		l, err := p.line()
		if l != "" {
			last = l
		}
		if err != nil {
			break
		}
	}
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("%s: %v: %s", p.name, err, p.errb.String())
	}
	if err := json.Unmarshal([]byte(last), v); err != nil {
		return fmt.Errorf("%s: bad result line %q: %v", p.name, last, err)
	}
	return nil
}

// kill stops a peer that is no longer wanted (after an error).
func (p *peer) kill() {
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// runPeer runs the helper to completion and returns its result line.
func runPeer(argv ...string) (Result, error) {
	p, err := startPeer(false, argv...)
	if err != nil {
		return Result{}, err
	}
	var r Result
	err = p.finish(&r)
	return r, err
}

// sinkResult is the last line of the helper's sink and uds-sink roles.
type sinkResult struct {
	Messages int64 `json:"messages"`
	Bytes    int64 `json:"bytes"`
	Rows     int64 `json:"rows"`
	LastNS   int64 `json:"last_ns"`
}
