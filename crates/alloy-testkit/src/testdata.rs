//! Random record batches over many Arrow types, for the round-trip tests
//! (deterministic from a seed, so proptest shrinks the seed and the sizes).

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::*;
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields, Schema};

/// A small xorshift generator.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `Some(f(self))` four times out of five when `nulls`, else always.
    fn opt<T>(&mut self, nulls: bool, f: impl FnOnce(&mut Rng) -> T) -> Option<T> {
        if nulls && self.below(5) == 0 {
            None
        } else {
            Some(f(self))
        }
    }

    fn string(&mut self) -> String {
        let n = self.below(12) as usize;
        (0..n)
            .map(|_| ['a', 'é', 'Z', '7', ' ', '√', 'q'][self.below(7) as usize])
            .collect()
    }
}

/// Number of column kinds the round-trip property tests draw from
/// (`0..KINDS`): the types every path (Rust and Go, IPC) carries.
pub const KINDS: u64 = 24;

/// The further kinds [`column()`] knows (`KINDS..ALL_KINDS`): the rest of the
/// Arrow type system (float16, decimal256, intervals, durations, large and
/// fixed-size binary/list, map, unions, run-end encoded, view types, null,
/// list views),
/// tested kind by kind in both directions (`src/arrow/types_tests.rs`,
/// `tests/arrow_go_to_rust.rs`).
pub const ALL_KINDS: u64 = 44;

/// A random column of kind `kind % KINDS` with `n` rows.
///
/// Kinds below [`ALL_KINDS`] are taken as they are; larger ones wrap into
/// `0..KINDS`.
pub fn column(kind: u64, n: usize, nulls: bool, r: &mut Rng) -> (Field, ArrayRef) {
    let kind = if kind < ALL_KINDS { kind } else { kind % KINDS };
    if kind >= KINDS {
        let a = extended_column(kind, n, nulls, r);
        return (
            Field::new(format!("c{kind}"), a.data_type().clone(), true),
            a,
        );
    }
    macro_rules! prim {
        ($arr:ty, $f:expr) => {
            Arc::new(<$arr>::from_iter((0..n).map(|_| r.opt(nulls, $f)))) as ArrayRef
        };
    }
    let a: ArrayRef = match kind {
        0 => prim!(Int8Array, |r| r.next_u64() as i8),
        1 => prim!(Int16Array, |r| r.next_u64() as i16),
        2 => prim!(Int32Array, |r| r.next_u64() as i32),
        3 => prim!(Int64Array, |r| r.next_u64() as i64),
        4 => prim!(UInt8Array, |r| r.next_u64() as u8),
        5 => prim!(UInt16Array, |r| r.next_u64() as u16),
        6 => prim!(UInt32Array, |r| r.next_u64() as u32),
        7 => prim!(UInt64Array, |r| r.next_u64()),
        8 => prim!(Float32Array, |r| (r.next_u64() as i32) as f32 / 7.0),
        9 => prim!(Float64Array, |r| (r.next_u64() as i64) as f64 / 3.0),
        10 => Arc::new(BooleanArray::from_iter(
            (0..n).map(|_| r.opt(nulls, |r| r.next_u64() & 1 == 1)),
        )),
        11 => Arc::new(StringArray::from_iter(
            (0..n).map(|_| r.opt(nulls, Rng::string)),
        )),
        12 => Arc::new(LargeStringArray::from_iter(
            (0..n).map(|_| r.opt(nulls, Rng::string)),
        )),
        13 => Arc::new(BinaryArray::from_iter(
            (0..n).map(|_| r.opt(nulls, |r| r.string().into_bytes())),
        )),
        14 => prim!(Date32Array, |r| r.below(40_000) as i32 - 10_000),
        15 => prim!(Date64Array, |r| (r.below(40_000) as i64 - 10_000)
            * 86_400_000),
        16 => prim!(Time32MillisecondArray, |r| r.below(86_400_000) as i32),
        17 => prim!(Time64MicrosecondArray, |r| r.below(86_400_000_000) as i64),
        18 => Arc::new(
            TimestampMicrosecondArray::from_iter(
                (0..n).map(|_| r.opt(nulls, |r| r.next_u64() as i64 >> 12)),
            )
            .with_timezone("UTC"),
        ),
        19 => Arc::new(
            TimestampNanosecondArray::from_iter(
                (0..n).map(|_| r.opt(nulls, |r| r.next_u64() as i64 >> 2)),
            )
            .with_timezone("+02:00"),
        ),
        20 => Arc::new(
            Decimal128Array::from_iter(
                (0..n).map(|_| r.opt(nulls, |r| (r.next_u64() as i64 as i128) * 1000 + 7)),
            )
            .with_precision_and_scale(38, 3)
            .expect("valid precision"),
        ),
        21 => {
            let mut b = ListBuilder::new(arrow_array::builder::Int32Builder::new());
            for _ in 0..n {
                if nulls && r.below(5) == 0 {
                    b.append_null();
                } else {
                    for _ in 0..r.below(4) {
                        let v = r.opt(nulls, |r| r.next_u64() as i32);
                        b.values().append_option(v);
                    }
                    b.append(true);
                }
            }
            Arc::new(b.finish())
        }
        22 => {
            let x: ArrayRef = prim!(Int32Array, |r| r.next_u64() as i32);
            let y: ArrayRef = Arc::new(StringArray::from_iter(
                (0..n).map(|_| r.opt(nulls, Rng::string)),
            ));
            let fields = Fields::from(vec![
                Field::new("x", DataType::Int32, true),
                Field::new("y", DataType::Utf8, true),
            ]);
            let valid = nulls.then(|| NullBuffer::from_iter((0..n).map(|_| r.below(6) != 0)));
            Arc::new(StructArray::try_new(fields, vec![x, y], valid).expect("valid struct"))
        }
        23 => {
            let mut b = StringDictionaryBuilder::<Int32Type>::new();
            let words = ["red", "green", "blue", "", "ünïcode"];
            for _ in 0..n {
                match r.opt(nulls, |r| words[r.below(words.len() as u64) as usize]) {
                    Some(w) => b.append_value(w),
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        _ => unreachable!("kind {kind} is below KINDS"),
    };
    let f = Field::new(format!("c{kind}"), a.data_type().clone(), true);
    (f, a)
}

/// Kinds `KINDS..ALL_KINDS`.
fn extended_column(kind: u64, n: usize, nulls: bool, r: &mut Rng) -> ArrayRef {
    use arrow_array::builder::*;
    use arrow_buffer::{i256, IntervalDayTime, IntervalMonthDayNano, ScalarBuffer};
    use arrow_schema::UnionFields;
    macro_rules! prim {
        ($arr:ty, $f:expr) => {
            Arc::new(<$arr>::from_iter((0..n).map(|_| r.opt(nulls, $f)))) as ArrayRef
        };
    }
    match kind {
        24 => prim!(Float16Array, |r| half::f16::from_f32(
            (r.next_u64() as i16) as f32 / 8.0
        )),
        25 => Arc::new(
            Decimal256Array::from_iter((0..n).map(|_| {
                r.opt(nulls, |r| {
                    i256::from_i128(r.next_u64() as i64 as i128)
                        .wrapping_mul(i256::from_i128(1 << 70))
                })
            }))
            .with_precision_and_scale(76, 10)
            .expect("valid precision"),
        ),
        26 => prim!(IntervalYearMonthArray, |r| r.below(2000) as i32 - 1000),
        27 => prim!(IntervalDayTimeArray, |r| IntervalDayTime::new(
            r.below(400) as i32 - 200,
            r.next_u64() as i32
        )),
        28 => prim!(IntervalMonthDayNanoArray, |r| IntervalMonthDayNano::new(
            r.below(30) as i32,
            r.below(60) as i32 - 30,
            r.next_u64() as i64 >> 4
        )),
        29 => prim!(DurationNanosecondArray, |r| r.next_u64() as i64 >> 8),
        30 => Arc::new(LargeBinaryArray::from_iter(
            (0..n).map(|_| r.opt(nulls, |r| r.string().into_bytes())),
        )),
        31 => Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                (0..n).map(|_| r.opt(nulls, |r| r.next_u64().to_le_bytes()[..5].to_vec())),
                5,
            )
            .expect("valid fixed-size binary"),
        ),
        32 => {
            let mut b = LargeListBuilder::new(Int64Builder::new());
            for _ in 0..n {
                if nulls && r.below(5) == 0 {
                    b.append_null();
                } else {
                    for _ in 0..r.below(4) {
                        b.values().append_value(r.next_u64() as i64);
                    }
                    b.append(true);
                }
            }
            Arc::new(b.finish())
        }
        33 => {
            let mut b = FixedSizeListBuilder::new(Int16Builder::new(), 3);
            for _ in 0..n {
                for _ in 0..3 {
                    let v = r.opt(nulls, |r| r.next_u64() as i16);
                    b.values().append_option(v);
                }
                b.append(!(nulls && r.below(5) == 0));
            }
            Arc::new(b.finish())
        }
        34 => {
            let mut b = MapBuilder::new(None, StringBuilder::new(), Int32Builder::new());
            for _ in 0..n {
                if nulls && r.below(5) == 0 {
                    b.append(false).expect("map entry");
                    continue;
                }
                for k in 0..r.below(3) {
                    b.keys().append_value(format!("k{k}"));
                    let v = r.opt(nulls, |r| r.next_u64() as i32);
                    b.values().append_option(v);
                }
                b.append(true).expect("map entry");
            }
            Arc::new(b.finish())
        }
        35 | 36 => {
            // Sparse (35) or dense (36) union of int32 and utf8.
            let dense = kind == 36;
            let fields = UnionFields::try_new(
                [0, 1],
                [
                    Field::new("i", DataType::Int32, true),
                    Field::new("s", DataType::Utf8, true),
                ],
            )
            .expect("valid union fields");
            let ids: Vec<i8> = (0..n).map(|_| r.below(2) as i8).collect();
            let (ints, strs, offsets) = if dense {
                let (mut ni, mut ns) = (0i32, 0i32);
                let offsets: Vec<i32> = ids
                    .iter()
                    .map(|&t| {
                        let c = if t == 0 { &mut ni } else { &mut ns };
                        *c += 1;
                        *c - 1
                    })
                    .collect();
                (ni as usize, ns as usize, Some(ScalarBuffer::from(offsets)))
            } else {
                (n, n, None)
            };
            let i: ArrayRef = Arc::new(Int32Array::from_iter(
                (0..ints).map(|_| r.opt(nulls, |r| r.next_u64() as i32)),
            ));
            let s: ArrayRef = Arc::new(StringArray::from_iter(
                (0..strs).map(|_| r.opt(nulls, Rng::string)),
            ));
            Arc::new(
                UnionArray::try_new(fields, ScalarBuffer::from(ids), offsets, vec![i, s])
                    .expect("valid union"),
            )
        }
        37 => {
            let mut b = StringRunBuilder::<Int32Type>::new();
            let mut left = n;
            while left > 0 {
                let run = (1 + r.below(4) as usize).min(left);
                match r.opt(nulls, |r| ["x", "yy", "", "zzz"][r.below(4) as usize]) {
                    Some(v) => (0..run).for_each(|_| b.append_value(v)),
                    None => (0..run).for_each(|_| b.append_null()),
                }
                left -= run;
            }
            Arc::new(b.finish())
        }
        38 => {
            Arc::new(StringViewArray::from_iter((0..n).map(|_| {
                r.opt(nulls, |r| r.string().repeat(1 + r.below(3) as usize))
            })))
        }
        39 => Arc::new(BinaryViewArray::from_iter((0..n).map(|_| {
            r.opt(nulls, |r| {
                r.string().repeat(1 + r.below(4) as usize).into_bytes()
            })
        }))),
        40 => Arc::new(NullArray::new(n)),
        41 => prim!(Time64NanosecondArray, |r| r.below(86_400_000_000_000)
            as i64),
        42 => {
            // List views may overlap and go out of order: each view
            // points at a random range of a shared values array.
            let values = Int32Array::from_iter(
                (0..2 * n + 4).map(|_| r.opt(nulls, |r| r.next_u64() as i32)),
            );
            let total = values.len() as u64;
            let (offsets, sizes): (Vec<i32>, Vec<i32>) = (0..n)
                .map(|_| {
                    let start = r.below(total);
                    let size = r.below((total - start).min(4) + 1);
                    (start as i32, size as i32)
                })
                .unzip();
            let valid = NullBuffer::from_iter((0..n).map(|_| !(nulls && r.below(5) == 0)));
            Arc::new(
                ListViewArray::try_new(
                    Arc::new(Field::new("item", DataType::Int32, true)),
                    ScalarBuffer::from(offsets),
                    ScalarBuffer::from(sizes),
                    Arc::new(values),
                    nulls.then_some(valid),
                )
                .expect("valid list view"),
            )
        }
        43 => {
            let values = StringArray::from_iter((0..n + 2).map(|_| r.opt(nulls, |r| r.string())));
            let total = values.len() as u64;
            let (offsets, sizes): (Vec<i64>, Vec<i64>) = (0..n)
                .map(|i| {
                    // Back to front, so offsets decrease.
                    let start = total - 1 - (i as u64 % total);
                    (start as i64, r.below(total - start + 1) as i64)
                })
                .unzip();
            Arc::new(
                LargeListViewArray::try_new(
                    Arc::new(Field::new("item", DataType::Utf8, true)),
                    ScalarBuffer::from(offsets),
                    ScalarBuffer::from(sizes),
                    Arc::new(values),
                    None,
                )
                .expect("valid large list view"),
            )
        }
        _ => unreachable!("kind {kind} is not an extended kind"),
    }
}

/// A random batch: `kinds` columns, `rows` rows, then sliced from `offset`
/// (so buffers of sliced arrays are exercised).
pub fn batch(seed: u64, kinds: &[u64], rows: usize, offset: usize, nulls: bool) -> RecordBatch {
    let mut r = Rng::new(seed);
    let (fields, cols): (Vec<Field>, Vec<ArrayRef>) = kinds
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            let (f, a) = column(k, rows + offset, nulls, &mut r);
            (f.with_name(format!("c{i}_{k}")), a)
        })
        .unzip();
    let b = if fields.is_empty() {
        let opts = RecordBatchOptions::new().with_row_count(Some(rows + offset));
        RecordBatch::try_new_with_options(Arc::new(Schema::empty()), vec![], &opts)
    } else {
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
    };
    b.expect("valid batch").slice(offset, rows)
}

/// Batches of one dictionary column whose dictionary grows: batch `k` uses
/// the first `3 + 2k` words (for the delta-dictionary tests).
pub fn growing_dictionary_batches(n: usize) -> Vec<RecordBatch> {
    let words: Vec<String> = (0..3 + 2 * n).map(|i| format!("word{i}")).collect();
    (0..n)
        .map(|k| {
            let dict_len = 3 + 2 * k;
            let values = Arc::new(StringArray::from_iter_values(&words[..dict_len]));
            let keys = Int32Array::from_iter(
                (0..20).map(|i| (i % 7 != 3).then_some(((i * 5 + k) % dict_len) as i32)),
            );
            let dict = DictionaryArray::<Int32Type>::try_new(keys, values).unwrap();
            RecordBatch::try_from_iter([("tag", Arc::new(dict) as _)]).unwrap()
        })
        .collect()
}
