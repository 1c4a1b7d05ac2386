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

/// Number of column kinds [`column`] knows.
pub const KINDS: u64 = 24;

/// A random column of kind `kind % KINDS` with `n` rows.
pub fn column(kind: u64, n: usize, nulls: bool, r: &mut Rng) -> (Field, ArrayRef) {
    macro_rules! prim {
        ($arr:ty, $f:expr) => {
            Arc::new(<$arr>::from_iter((0..n).map(|_| r.opt(nulls, $f)))) as ArrayRef
        };
    }
    let a: ArrayRef = match kind % KINDS {
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
        _ => {
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
    };
    let f = Field::new(format!("c{kind}"), a.data_type().clone(), true);
    (f, a)
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
