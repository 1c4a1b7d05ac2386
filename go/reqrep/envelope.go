package reqrep

import (
	"encoding/binary"
	"fmt"
)

// The 64-byte envelope that starts every channel message (LAYOUT.md §12.2).
const (
	envMagic   uint32 = 0x51524C41 // "ALRQ"
	envVersion uint16 = 1
	envLen            = 64
)

// Envelope kinds.
const (
	kindRequest uint16 = 1
	kindReply   uint16 = 2
	kindError   uint16 = 3
)

type envelope struct {
	kind                         uint16
	session, id, deadlineNs      uint64
	status                       uint32
	schemaLen, batchLen, textLen uint32
}

// envError is a refused envelope; kind names it as testdata/reqrep does.
type envError struct {
	kind, msg string
}

func (e *envError) Error() string        { return "reqrep: bad envelope: " + e.msg }
func (e *envError) Is(target error) bool { return target == ErrBadMessage }

func (e envelope) messageLen() int {
	return envLen + int(e.schemaLen) + int(e.batchLen) + int(e.textLen)
}

// put writes the envelope into b[:64], reserved bytes zeroed.
func (e envelope) put(b []byte) {
	b = b[:envLen]
	clear(b)
	le := binary.LittleEndian
	le.PutUint32(b[0:], envMagic)
	le.PutUint16(b[4:], envVersion)
	le.PutUint16(b[6:], e.kind)
	le.PutUint64(b[8:], e.session)
	le.PutUint64(b[16:], e.id)
	le.PutUint64(b[24:], e.deadlineNs)
	le.PutUint32(b[32:], e.status)
	le.PutUint32(b[36:], e.schemaLen)
	le.PutUint32(b[40:], e.batchLen)
	le.PutUint32(b[44:], e.textLen)
}

// parseEnvelope reads the envelope at the start of b and checks that its
// lengths fit its kind; the slot length is checked by checkLen.
func parseEnvelope(b []byte) (envelope, error) {
	var e envelope
	if len(b) < envLen {
		return e, &envError{"Short", fmt.Sprintf("%d bytes, shorter than the 64-byte envelope", len(b))}
	}
	le := binary.LittleEndian
	if m := le.Uint32(b); m != envMagic {
		return e, &envError{"BadMagic", fmt.Sprintf("magic %#010x, want %#010x (\"ALRQ\")", m, envMagic)}
	}
	if v := le.Uint16(b[4:]); v != envVersion {
		return e, &envError{"VersionMismatch", fmt.Sprintf("envelope version %d, this build speaks %d", v, envVersion)}
	}
	e = envelope{
		kind: le.Uint16(b[6:]), session: le.Uint64(b[8:]), id: le.Uint64(b[16:]),
		deadlineNs: le.Uint64(b[24:]), status: le.Uint32(b[32:]),
		schemaLen: le.Uint32(b[36:]), batchLen: le.Uint32(b[40:]), textLen: le.Uint32(b[44:]),
	}
	bad := func(format string, args ...any) (envelope, error) {
		return e, &envError{"BadLengths", fmt.Sprintf(format, args...)}
	}
	switch e.kind {
	case kindError:
		if e.schemaLen != 0 || e.batchLen != 0 {
			return bad("an error message with schema_len %d and batch_len %d", e.schemaLen, e.batchLen)
		}
	case kindRequest, kindReply:
		if e.textLen != 0 {
			return bad("kind %d with text_len %d", e.kind, e.textLen)
		}
		if e.schemaLen == 0 || e.schemaLen%64 != 0 {
			return bad("schema_len %d is not a positive multiple of 64", e.schemaLen)
		}
		if e.batchLen == 0 {
			return bad("kind %d without a record batch message", e.kind)
		}
	default:
		return e, &envError{"BadKind", fmt.Sprintf("unknown kind %d", e.kind)}
	}
	return e, nil
}

// checkLen checks that the envelope's lengths add up to the slot length.
func (e envelope) checkLen(n int) error {
	if e.messageLen() != n {
		return &envError{"BadLengths", fmt.Sprintf("64 + %d + %d + %d bytes announced, the slot holds %d", e.schemaLen, e.batchLen, e.textLen, n)}
	}
	return nil
}
