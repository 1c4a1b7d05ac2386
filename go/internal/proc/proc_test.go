//go:build linux

package proc

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestProcessDead: gone, a zombie, pid 0 and a pid beyond pid_max are dead;
// we, our parent and a running child are not.
func TestProcessDead(t *testing.T) {
	if Dead(uint32(os.Getpid())) {
		t.Fatal("our own process counts as dead")
	}
	if Dead(uint32(os.Getppid())) {
		t.Fatal("our parent counts as dead")
	}
	if !Dead(0) || !Dead(1<<31) {
		t.Fatal("pid 0 or a pid beyond pid_max counts as alive")
	}

	// Killed but not reaped: a zombie, still listed in /proc.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if Dead(uint32(pid)) {
		t.Fatal("a running child counts as dead")
	}
	if st, start := Probe(uint32(pid)); st != Running || start == 0 {
		t.Fatalf("running child: status %d, start %d", st, start)
	}
	cmd.Process.Kill()
	for start := time.Now(); State(pid) != "Z"; time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("child %d never became a zombie (state %q)", pid, State(pid))
		}
	}
	if !Dead(uint32(pid)) {
		t.Fatal("a zombie counts as alive")
	}
	// Reaped: /proc/<pid> is gone.
	cmd.Wait()
	if !Dead(uint32(pid)) {
		t.Fatal("a reaped child counts as alive")
	}
	if State(pid) != "" {
		t.Fatalf("a reaped child has state %q", State(pid))
	}
}

// parseStat finds the state and starttime after the last ')', whatever
// the command name holds.
func TestParseStat(t *testing.T) {
	line := func(comm, state string) []byte {
		f := []string{"4242", "(" + comm + ")", state}
		for i := 4; i < 22; i++ {
			f = append(f, fmt.Sprint(i))
		}
		f = append(f, "123456789012")
		for i := 23; i < 53; i++ {
			f = append(f, fmt.Sprint(i))
		}
		return []byte(strings.Join(f, " ") + "\n")
	}
	for _, comm := range []string{"sleep", "a b", "x) S 1 (y", ")", ""} {
		for state, want := range map[string]Status{"S": Running, "T": Running, "t": Running, "D": Running, "Z": Gone, "X": Gone} {
			st, start := parseStat(line(comm, state))
			if st != want || (want == Running && start != 123456789012) {
				t.Errorf("comm %q state %s: %d %d", comm, state, st, start)
			}
		}
	}
	for _, bad := range []string{"garbage", "1 (x) S 2 3", "1 (x)"} {
		if st, _ := parseStat([]byte(bad)); st != Unknown {
			t.Errorf("%q: %d, want unknown", bad, st)
		}
	}
}

// MonoNs is CLOCK_MONOTONIC: it never goes back and advances with time.
func TestMonoNs(t *testing.T) {
	a := MonoNs()
	time.Sleep(10 * time.Millisecond)
	b := MonoNs()
	if a == 0 || b < a+uint64(10*time.Millisecond) {
		t.Fatalf("MonoNs %d then %d after 10 ms", a, b)
	}
}
