package arrowshm

import (
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/ring"
)

// ipcValidator checks the records arrow-go's ipc.Reader decodes from IPC
// messages (flag 1). The ipc.Reader checks framing and buffer ranges (and
// Alloy checks every buffer lies inside the body before it), but not the
// contents: offsets out of the value range, invalid UTF-8, dictionary keys
// out of range, union type ids or a null count that disagrees with the
// bitmap go through, and reading such a record later panics or returns
// garbage. So every record is validated before the Reader hands it out.
//
// arrow-go's array.ValidateFull cannot be called on these records as they
// are: it rejects some arrays arrow-go's own IPC loader builds. A null
// column comes with no buffer slots (the validator wants the always-null
// slot), and an empty dense union with a nil offsets buffer (the validator
// dereferences it and panics). The validator therefore checks a normalized
// view of each column (the same buffers, with those two shapes completed)
// and checks dictionary-encoded nodes itself: their keys against the
// dictionary, and each dictionary once (arrow-go's Memo hands every record
// the same dictionary data until a dictionary batch replaces it), instead of
// validating the whole dictionary again with every record.
type ipcValidator struct {
	// dicts are the dictionaries already validated (retained, so an address
	// is not reused for another dictionary while it is in the set). After
	// each record only the ones it used are kept.
	dicts map[*array.Data]struct{}
	// used collects the dictionaries of the record being checked.
	used map[*array.Data]struct{}
}

// check validates rec: in full (O(n): offsets, UTF-8, dictionary keys,
// union type ids and offsets, null counts), or, with full false, only the
// O(1) checks of array.Validate (buffer sizes against lengths, children,
// types). A panic inside arrow-go on data the checks missed is an error too.
func (v *ipcValidator) check(rec arrow.RecordBatch, full bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid arrays: %v", r)
		}
	}()
	if v.used == nil {
		v.used = map[*array.Data]struct{}{}
	}
	defer v.keepUsed()
	for i, col := range rec.Columns() {
		if int64(col.Len()) != rec.NumRows() {
			return fmt.Errorf("column %d (%s) has %d rows, the batch %d", i, rec.Schema().Field(i).Name, col.Len(), rec.NumRows())
		}
		if err := v.column(col, full); err != nil {
			return fmt.Errorf("column %d (%s): %w", i, rec.Schema().Field(i).Name, err)
		}
	}
	return nil
}

// column validates one column. A dictionary-encoded column is checked
// here: its dictionary once (see ipcValidator), its keys with every record.
// Other columns go to arrow-go's validator, through a normalized view if
// they need one.
func (v *ipcValidator) column(col arrow.Array, full bool) error {
	if v.used == nil {
		v.used = map[*array.Data]struct{}{}
	}
	d, ok := col.Data().(*array.Data)
	if !ok {
		return fmt.Errorf("array data of type %T", col.Data())
	}
	if dt, ok := d.DataType().(*arrow.DictionaryType); ok {
		return v.dictionaryColumn(d, dt, full)
	}
	return validateData(d, full)
}

// validateData validates the array of d, through a normalized view if it
// needs one. A panic inside arrow-go on data the checks missed is an error.
func validateData(d *array.Data, full bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid arrays: %v", r)
		}
	}()
	if needsView(d) {
		d = view(d)
		defer d.Release()
	}
	arr := array.MakeFromData(d)
	defer arr.Release()
	if full {
		return array.ValidateFull(arr)
	}
	return array.Validate(arr)
}

// needsView reports whether d, a node below it or a dictionary of one is
// one of the shapes array.ValidateFull gets wrong: null arrays (no buffer
// slots) and dense unions (maybe a nil offsets buffer).
func needsView(d arrow.ArrayData) bool {
	switch d.DataType().ID() {
	case arrow.NULL, arrow.DENSE_UNION:
		return true
	}
	if dict := dictOf(d); dict != nil && needsView(dict) {
		return true
	}
	for _, c := range d.Children() {
		if needsView(c) {
			return true
		}
	}
	return false
}

// dictOf is d's dictionary, nil if it has none (arrow-go returns a nil
// *array.Data in the interface then).
func dictOf(d arrow.ArrayData) *array.Data {
	dict, _ := d.Dictionary().(*array.Data)
	return dict
}

// view returns a copy of the node tree of d (dictionaries included) over
// the same buffers, which array.ValidateFull checks correctly: null arrays
// get their always-null buffer slot, empty dense unions with a nil offsets
// buffer an empty one. Anything else about the nodes is left as it is, for
// the validator to judge.
func view(d arrow.ArrayData) *array.Data {
	bufs := d.Buffers()
	nulls := d.NullN()
	switch d.DataType().ID() {
	case arrow.NULL:
		if len(bufs) == 0 {
			bufs = []*memory.Buffer{nil}
		}
		// Every value of a null array is null, whatever count the message
		// gave (writers differ: 0 or the length).
		nulls = d.Len()
	case arrow.DENSE_UNION:
		if d.Len() == 0 && len(bufs) == 3 && bufs[2] == nil {
			bufs = []*memory.Buffer{bufs[0], bufs[1], memory.NewBufferBytes([]byte{})}
		}
	}
	kids := make([]arrow.ArrayData, len(d.Children()))
	for i, c := range d.Children() {
		kids[i] = view(c)
	}
	var out *array.Data
	if dict := dictOf(d); dict != nil {
		dv := view(dict)
		out = array.NewDataWithDictionary(d.DataType(), d.Len(), bufs, nulls, d.Offset(), dv)
		dv.Release()
	} else {
		out = array.NewData(d.DataType(), d.Len(), bufs, kids, nulls, d.Offset())
	}
	for _, k := range kids {
		k.Release()
	}
	return out
}

// dictionaryColumn checks a dictionary-encoded column: its dictionary
// (once per dictionary), then its keys as an index array and, in full,
// against the dictionary's length.
func (v *ipcValidator) dictionaryColumn(d *array.Data, dt *arrow.DictionaryType, full bool) error {
	if len(d.Children()) != 0 {
		return fmt.Errorf("a dictionary array with children")
	}
	dict := dictOf(d)
	if dict == nil {
		if d.Len() > 0 {
			return fmt.Errorf("a non-empty dictionary array has no dictionary")
		}
		return nil
	}
	if !arrow.TypeEqual(dict.DataType(), dt.ValueType) {
		return fmt.Errorf("the dictionary has type %s, want %s", dict.DataType(), dt.ValueType)
	}
	if err := v.dictionary(dict, full); err != nil {
		return err
	}
	idx := array.NewData(dt.IndexType, d.Len(), d.Buffers(), nil, d.NullN(), d.Offset())
	defer idx.Release()
	// The index array's own checks (buffer sizes, null count) come first,
	// so the keys read below lie inside their buffer.
	if err := validateData(idx, full); err != nil {
		return fmt.Errorf("dictionary keys: %w", err)
	}
	if !full {
		return nil
	}
	arr := array.MakeFromData(idx)
	defer arr.Release()
	if err := checkKeys(arr, dict.Len()); err != nil {
		return fmt.Errorf("dictionary keys: %w", err)
	}
	return nil
}

// dictionary validates a dictionary unless it was validated in full
// before.
func (v *ipcValidator) dictionary(dict *array.Data, full bool) error {
	if _, seen := v.dicts[dict]; seen {
		if _, dup := v.used[dict]; !dup {
			v.used[dict] = struct{}{} // keepUsed moves the reference over
		}
		return nil
	}
	if err := validateData(dict, full); err != nil {
		return dictError{err}
	}
	if !full {
		return nil // not validated in full: checked again next time
	}
	if _, dup := v.used[dict]; !dup {
		dict.Retain()
		v.used[dict] = struct{}{}
	}
	return nil
}

// keepUsed keeps the dictionaries the last record used, releasing the
// others (replaced by dictionary batches since).
func (v *ipcValidator) keepUsed() {
	for d := range v.dicts {
		if _, ok := v.used[d]; !ok {
			d.Release()
		}
	}
	v.dicts, v.used = v.used, v.dicts
	if v.used == nil {
		v.used = map[*array.Data]struct{}{}
	}
	clear(v.used)
}

// release drops every dictionary the validator holds.
func (v *ipcValidator) release() {
	clear(v.used)
	v.keepUsed() // nothing is in use: every dictionary goes
	v.dicts, v.used = nil, nil
}

// checkKeys checks that every non-null key of an index array lies in
// [0, n).
func checkKeys(arr arrow.Array, n int) error {
	switch a := arr.(type) {
	case *array.Int8:
		return keysIn(a, a.Int8Values(), n)
	case *array.Int16:
		return keysIn(a, a.Int16Values(), n)
	case *array.Int32:
		return keysIn(a, a.Int32Values(), n)
	case *array.Int64:
		return keysIn(a, a.Int64Values(), n)
	case *array.Uint8:
		return keysIn(a, a.Uint8Values(), n)
	case *array.Uint16:
		return keysIn(a, a.Uint16Values(), n)
	case *array.Uint32:
		return keysIn(a, a.Uint32Values(), n)
	case *array.Uint64:
		return keysIn(a, a.Uint64Values(), n)
	}
	return fmt.Errorf("index type %s", arr.DataType())
}

type key interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

func keysIn[K key](arr arrow.Array, keys []K, n int) error {
	nulls := arr.NullN() != 0
	for i, k := range keys {
		// Compared as int64 and uint64 at once: a negative key fails the
		// first test, one above int64's range the second.
		if (int64(k) < 0 || uint64(k) >= uint64(n)) && !(nulls && arr.IsNull(i)) {
			return fmt.Errorf("key %d at index %d is outside the %d-value dictionary", k, i, n)
		}
	}
	return nil
}

// ipcCheck is what the Reader keeps to validate IPC records and to name
// the message an error comes from.
type ipcCheck struct {
	valid ipcValidator
	// seq is the sequence of the last IPC message received.
	seq uint64
	// dicts are the sequences of the dictionary batches received since the
	// record batch before the last one.
	dicts       []uint64
	afterRecord bool
	// msgErr is the last error Message returned: an error of the ring or
	// of Alloy's framing checks, not of arrow-go's decoding.
	msgErr error
}

// note records l, a dictionary or record batch about to be decoded.
func (m *slotMessages) note(l *ring.Lease) {
	c := &m.check
	c.seq = l.Seq()
	switch l.Flags() {
	case FlagIPCDictionaryBatch:
		if c.afterRecord {
			c.dicts, c.afterRecord = c.dicts[:0], false
		}
		c.dicts = append(c.dicts, l.Seq())
	case FlagIPCRecordBatch:
		c.afterRecord = true
	}
}

// at names the last message received, and the dictionary batches before
// it when a dictionary may be at fault.
func (m *slotMessages) at(dicts bool) string {
	c := &m.check
	s := fmt.Sprintf("slot %d (sequence %d)", c.seq%uint64(m.r.Layout().SlotCount), c.seq)
	if dicts && len(c.dicts) > 0 && c.afterRecord {
		s += fmt.Sprintf(" or the dictionary batches before it (sequences %v)", c.dicts)
	}
	return s
}

// checkRecord validates the record the ipc.Reader decoded from the last
// record batch received (in full unless WithTrustedProducer), and names
// that message (and the dictionary batches before it, when a dictionary
// is at fault) in its ErrCorrupt error.
func (m *slotMessages) checkRecord(rec arrow.RecordBatch) error {
	err := m.check.valid.check(rec, !m.trusted)
	if err == nil {
		return nil
	}
	var de dictError
	return fmt.Errorf("%s: %w: %v", m.at(errors.As(err, &de)), ErrCorrupt, err)
}

// ipcErr is the error the ipc.Reader ended with: the ring's and Alloy's
// own errors as they are, arrow-go's decoding errors (a damaged message
// Alloy's framing checks let through) as ErrCorrupt naming the message.
// The ipc.Reader is done for good: its last message, and a record batch
// received for it but not read (after a dictionary batch it failed on), are
// dropped, and their slots with them.
func (m *slotMessages) ipcErr(err error) error {
	m.dropLast()
	if m.pending != nil {
		m.pending.Release()
		m.pending = nil
	}
	if err == nil || (m.check.msgErr != nil && errors.Is(err, m.check.msgErr)) {
		return err
	}
	return fmt.Errorf("%s: %w: %v", m.at(true), ErrCorrupt, err)
}

// fail ends the iteration with err, a record that failed its check: the
// ipc.Reader drops the record and ends too, and its message reader the
// last message (read in place: the slot).
func (rd *Reader) fail(err error) {
	rd.err = err
	rd.msgs.end = err
	rd.ipc.Next()
}

// dictError marks a dictionary's own validation error.
type dictError struct{ err error }

func (e dictError) Error() string { return "dictionary: " + e.err.Error() }
func (e dictError) Unwrap() error { return e.err }

// afterFault ends a Next whose ring faulted (its file truncated under this
// process, ring/fault.go): deferred after the ring's CatchFault, it makes
// the truncation the Reader's error, also when arrow-go recovered the
// fault itself and the Reader met some other error.
func (rd *Reader) afterFault(ok *bool, fault *error) {
	if *fault != nil {
		rd.err, *ok = *fault, false
		return
	}
	if !*ok && rd.err != nil {
		if t := rd.msgs.r.Truncated(); t != nil {
			rd.err = t
		}
	}
}
