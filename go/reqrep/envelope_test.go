package reqrep

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// The shared envelope vectors of LAYOUT.md §12.6, written by the Rust test
// reqrep::tests::envelope_vectors.
func TestEnvelopeVectors(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "reqrep")
	raw, err := os.ReadFile(filepath.Join(dir, "envelopes.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Valid []struct {
			File       string
			Kind       uint16
			Session    string
			ID         uint64
			DeadlineNs uint64 `json:"deadline_ns"`
			Status     uint32
			SchemaLen  uint32 `json:"schema_len"`
			BatchLen   uint32 `json:"batch_len"`
			TextLen    uint32 `json:"text_len"`
			Text       string
		}
		Bad []struct{ File, Error string }
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Valid) < 3 || len(v.Bad) < 5 {
		t.Fatalf("vectors missing: %d valid, %d bad", len(v.Valid), len(v.Bad))
	}
	for _, w := range v.Valid {
		b, err := os.ReadFile(filepath.Join(dir, w.File))
		if err != nil {
			t.Fatal(err)
		}
		session, err := strconv.ParseUint(w.Session, 0, 64)
		if err != nil {
			t.Fatal(err)
		}
		want := envelope{kind: w.Kind, session: session, id: w.ID, deadlineNs: w.DeadlineNs, status: w.Status,
			schemaLen: w.SchemaLen, batchLen: w.BatchLen, textLen: w.TextLen}
		got, err := parseEnvelope(b)
		if err != nil || got != want {
			t.Fatalf("%s: got %+v, %v; want %+v", w.File, got, err, want)
		}
		var again [envLen]byte
		got.put(again[:])
		if string(again[:]) != string(b[:envLen]) {
			t.Errorf("%s: re-encoded envelope differs", w.File)
		}
		if got.kind == kindError {
			if err := got.checkLen(len(b)); err != nil {
				t.Errorf("%s: %v", w.File, err)
			}
			if string(b[envLen:]) != w.Text {
				t.Errorf("%s: text %q, want %q", w.File, b[envLen:], w.Text)
			}
		}
	}
	for _, w := range v.Bad {
		b, err := os.ReadFile(filepath.Join(dir, w.File))
		if err != nil {
			t.Fatal(err)
		}
		_, err = parseEnvelope(b)
		var ee *envError
		if !errors.As(err, &ee) || ee.kind != w.Error || !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: got %v, want a %s error", w.File, err, w.Error)
		}
	}
}
