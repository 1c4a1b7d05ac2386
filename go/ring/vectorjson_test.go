//go:build linux

package ring

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// interpret reads a vector file the way an opener does (validation, then
// the Snapshot reader) and renders it in the JSON shape the Rust generator
// uses, so the two languages' readings can be compared key by key.
func interpret(t *testing.T, file []byte) map[string]any {
	t.Helper()
	l, err := ReadLayout(file, uint64(len(file)))
	if err != nil {
		t.Fatalf("ReadLayout: %v", err)
	}
	mem := alignedBytes(uint64(len(file)))
	copy(mem, file)
	r := newRing(mem, l, newEnv(), nil)
	s := r.Snapshot()
	schema, err := r.Schema()
	if err != nil {
		t.Fatalf("Schema: %v", err)
	}
	var subs, members, slots []map[string]any
	for k, e := range s.Subscribers {
		subs = append(subs, map[string]any{
			"index": k, "state": e.State, "kind": e.Kind, "group": e.Group, "members": e.Members,
			"owner_pid": e.OwnerPid, "owner_start": e.OwnerStart, "heartbeat": e.Heartbeat, "claim": e.Claim, "release": e.Release,
		})
	}
	for j, e := range s.Members {
		members = append(members, map[string]any{
			"index": j, "state": e.State, "subscriber": e.Subscriber, "pid": e.Pid, "start": e.Start, "heartbeat": e.Heartbeat,
		})
	}
	for i, e := range s.Slots {
		slots = append(slots, map[string]any{
			"index": i, "stamp": e.Stamp, "len": e.Len, "flags": e.Flags, "gen": e.Gen, "payload": hex.EncodeToString(e.Payload),
		})
	}
	return map[string]any{
		"config": map[string]any{
			"slot_count": l.SlotCount, "slot_size": l.SlotSize, "max_subscribers": l.MaxSubscribers,
			"max_members": l.MaxMembers, "schema_capacity": l.SchemaCapacity,
		},
		"subs_off": l.SubsOff, "members_off": l.MembersOff, "done_off": l.DoneOff, "schema_off": l.SchemaOff,
		"slots_off": l.SlotsOff, "slot_stride": l.SlotStride, "total_size": l.TotalSize,
		"creator_pid": s.CreatorPid, "created_ns": s.CreatedNs,
		"published": s.Published, "closed": s.Closed, "error": s.Error, "producer_pid": s.ProducerPid,
		"producer_start": s.ProducerStart, "producer_heartbeat": s.ProducerHeartbeat,
		"stream_start": s.StreamStart, "stream_gen": s.StreamGen, "lost_count": s.LostCount, "lost_pid": s.LostPid,
		"data_waiters": s.DataWaiters, "data_futex": s.DataFutex, "space_waiters": s.SpaceWaiters,
		"space_futex": s.SpaceFutex, "table_epoch": s.TableEpoch, "table_lock": s.TableLock, "table_lock_start": s.TableLockStart,
		"schema_seq": s.SchemaSeq, "schema_len": s.SchemaLen, "schema": hex.EncodeToString(schema),
		"subscribers": subs, "members": members, "done": s.Done, "slots": slots,
	}
}

// normalize round-trips v through JSON with exact numbers, so Go values and
// decoded files compare with reflect.DeepEqual.
func normalize(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return decodeExact(t, b)
}

func decodeExact(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out any
	if err := d.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// describedOnly are JSON keys that document a vector rather than describe
// the bytes.
var describedOnly = map[string]bool{"script": true}

// TestVectorsInterpretation checks that the Go reader sees in every vector
// exactly what the JSON next to it says. A key the Go reader cannot produce
// fails the test, so new fields in the generator are not silently ignored.
func TestVectorsInterpretation(t *testing.T) {
	for name := range vectors {
		t.Run(name, func(t *testing.T) {
			file := readVector(t, name+".bin")
			want, ok := decodeExact(t, readVector(t, name+".json")).(map[string]any)
			if !ok {
				t.Fatal("the JSON is not an object")
			}
			got := normalize(t, interpret(t, file)).(map[string]any)
			for key, w := range want {
				if describedOnly[key] {
					continue
				}
				g, ok := got[key]
				if !ok {
					t.Errorf("%s: the Go reader has no field %q", name, key)
					continue
				}
				if !reflect.DeepEqual(g, w) {
					t.Errorf("%s: %s = %v, the JSON says %v", name, key, g, w)
				}
			}
		})
	}
}

// sentinels maps the error kinds named in bad.json to Go sentinels.
var sentinels = map[string]error{
	"Truncated":       ErrTruncated,
	"NotInitialized":  ErrNotInitialized,
	"BadMagic":        ErrBadMagic,
	"VersionMismatch": ErrVersionMismatch,
	"InvalidLayout":   ErrInvalidLayout,
}

// TestBadVectors checks every bad_*.bin is refused with the error kind
// bad.json names, both from the bytes and through OpenFd on a sealed memfd
// holding the file (the path a real opener takes).
func TestBadVectors(t *testing.T) {
	var want map[string]string
	if err := json.Unmarshal(readVector(t, "bad.json"), &want); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(vectorDir, "bad_*.bin"))
	if len(files) != len(want) {
		t.Errorf("%d bad_*.bin files, bad.json lists %d", len(files), len(want))
	}
	for file, kind := range want {
		t.Run(strings.TrimSuffix(file, ".bin"), func(t *testing.T) {
			sentinel, ok := sentinels[kind]
			if !ok {
				t.Fatalf("unknown error kind %q", kind)
			}
			b := readVector(t, file)
			if _, err := ReadLayout(b, uint64(len(b))); !errors.Is(err, sentinel) {
				t.Fatalf("ReadLayout: %v, want %s", err, kind)
			}
			fd := sealedCopy(t, b)
			if _, err := OpenFd(fd); !errors.Is(err, sentinel) {
				t.Fatalf("OpenFd: %v, want %s", err, kind)
			}
		})
	}
}

// sealedCopy puts b into a sealed memfd, as a creator would hand it over.
func sealedCopy(t *testing.T, b []byte) int {
	t.Helper()
	fd, err := memfdCreateSealed(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}
