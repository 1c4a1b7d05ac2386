//! The 64-byte envelope that starts every channel message (LAYOUT.md §12.2).

use thiserror::Error;

/// `magic`: the ASCII bytes `ALRQ` as a little-endian u32.
pub const MAGIC: u32 = 0x5152_4C41;
/// Envelope version written and accepted.
pub const VERSION: u16 = 1;
/// Size of the envelope; the IPC messages (or error text) follow it.
pub const ENVELOPE_LEN: usize = 64;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A record batch for the worker (on `NAME.req`).
    Request,
    /// The worker's record batch answer (on `NAME.rep`).
    Reply,
    /// The worker's error answer: a status code and UTF-8 text (on `NAME.rep`).
    Error,
}

impl Kind {
    /// The `kind` field value.
    pub fn code(self) -> u16 {
        match self {
            Kind::Request => 1,
            Kind::Reply => 2,
            Kind::Error => 3,
        }
    }

    fn from_code(code: u16) -> Option<Kind> {
        match code {
            1 => Some(Kind::Request),
            2 => Some(Kind::Reply),
            3 => Some(Kind::Error),
            _ => None,
        }
    }
}

/// Status codes of `ERROR` replies (LAYOUT.md §12.4).
pub mod status {
    /// The handler returned an error.
    pub const HANDLER: u32 = 1;
    /// The worker could not decode the request.
    pub const BAD_REQUEST: u32 = 2;
    /// The handler panicked.
    pub const PANIC: u32 = 3;
    /// The handler's batch does not fit in a reply slot.
    pub const REPLY_TOO_LARGE: u32 = 4;
}

/// One decoded envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    /// Request, reply or error.
    pub kind: Kind,
    /// The client's session id (non-zero).
    pub session: u64,
    /// Correlation id, unique within the session (non-zero).
    pub id: u64,
    /// `CLOCK_MONOTONIC` deadline in ns, 0 = none.
    pub deadline_ns: u64,
    /// Error status (§12.4) for [`Kind::Error`], else 0.
    pub status: u32,
    /// Bytes of the schema message after the envelope (a multiple of 64).
    pub schema_len: u32,
    /// Bytes of the record batch message after the schema message.
    pub batch_len: u32,
    /// Bytes of error text after the envelope ([`Kind::Error`]).
    pub text_len: u32,
}

/// Why bytes are not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    /// Fewer than 64 bytes.
    #[error("channel message of {len} bytes is shorter than its 64-byte envelope")]
    Short {
        /// Bytes found.
        len: usize,
    },
    /// The first four bytes are not `ALRQ`.
    #[error("bad envelope magic {found:#010x} (expected {MAGIC:#010x}, \"ALRQ\")")]
    BadMagic {
        /// Value found.
        found: u32,
    },
    /// Another envelope version.
    #[error("envelope version {found}, this build speaks version {VERSION}")]
    VersionMismatch {
        /// Version found.
        found: u16,
    },
    /// A `kind` other than 1, 2, 3.
    #[error("unknown envelope kind {found}")]
    BadKind {
        /// Value found.
        found: u16,
    },
    /// Lengths that contradict the kind or the slot length.
    #[error("envelope lengths: {reason}")]
    BadLengths {
        /// What does not add up.
        reason: String,
    },
}

impl EnvelopeError {
    /// Short name of the error kind, as used by `testdata/reqrep/envelopes.json`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            EnvelopeError::Short { .. } => "Short",
            EnvelopeError::BadMagic { .. } => "BadMagic",
            EnvelopeError::VersionMismatch { .. } => "VersionMismatch",
            EnvelopeError::BadKind { .. } => "BadKind",
            EnvelopeError::BadLengths { .. } => "BadLengths",
        }
    }
}

use crate::layout::{get_u16 as u16_at, get_u32 as u32_at, get_u64 as u64_at};

impl Envelope {
    /// Length of the whole message this envelope announces.
    pub fn message_len(&self) -> usize {
        ENVELOPE_LEN + self.schema_len as usize + self.batch_len as usize + self.text_len as usize
    }

    /// Writes the envelope into `out[..64]` (reserved bytes zeroed).
    pub fn write_to(&self, out: &mut [u8]) {
        let out = &mut out[..ENVELOPE_LEN];
        out.fill(0);
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&self.kind.code().to_le_bytes());
        out[8..16].copy_from_slice(&self.session.to_le_bytes());
        out[16..24].copy_from_slice(&self.id.to_le_bytes());
        out[24..32].copy_from_slice(&self.deadline_ns.to_le_bytes());
        out[32..36].copy_from_slice(&self.status.to_le_bytes());
        out[36..40].copy_from_slice(&self.schema_len.to_le_bytes());
        out[40..44].copy_from_slice(&self.batch_len.to_le_bytes());
        out[44..48].copy_from_slice(&self.text_len.to_le_bytes());
    }

    /// The 64 envelope bytes.
    pub fn to_bytes(&self) -> [u8; ENVELOPE_LEN] {
        let mut b = [0u8; ENVELOPE_LEN];
        self.write_to(&mut b);
        b
    }

    /// Parses the envelope at the start of `bytes` and checks that its
    /// lengths fit its kind (LAYOUT.md §12.2). The slot length is checked
    /// separately by [`Envelope::check_len`].
    pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        if bytes.len() < ENVELOPE_LEN {
            return Err(EnvelopeError::Short { len: bytes.len() });
        }
        let magic = u32_at(bytes, 0);
        if magic != MAGIC {
            return Err(EnvelopeError::BadMagic { found: magic });
        }
        let version = u16_at(bytes, 4);
        if version != VERSION {
            return Err(EnvelopeError::VersionMismatch { found: version });
        }
        let code = u16_at(bytes, 6);
        let kind = Kind::from_code(code).ok_or(EnvelopeError::BadKind { found: code })?;
        let env = Envelope {
            kind,
            session: u64_at(bytes, 8),
            id: u64_at(bytes, 16),
            deadline_ns: u64_at(bytes, 24),
            status: u32_at(bytes, 32),
            schema_len: u32_at(bytes, 36),
            batch_len: u32_at(bytes, 40),
            text_len: u32_at(bytes, 44),
        };
        let bad = |reason: String| Err(EnvelopeError::BadLengths { reason });
        match kind {
            Kind::Error => {
                if env.schema_len != 0 || env.batch_len != 0 {
                    return bad(format!(
                        "an error message with schema_len {} and batch_len {}",
                        env.schema_len, env.batch_len
                    ));
                }
            }
            Kind::Request | Kind::Reply => {
                if env.text_len != 0 {
                    return bad(format!("a {kind:?} with text_len {}", env.text_len));
                }
                if env.schema_len == 0 || env.schema_len % 64 != 0 {
                    return bad(format!(
                        "schema_len {} is not a positive multiple of 64",
                        env.schema_len
                    ));
                }
                if env.batch_len == 0 {
                    return bad(format!("a {kind:?} without a record batch message"));
                }
            }
        }
        Ok(env)
    }

    /// Checks that the envelope's lengths add up to the slot's `len`.
    pub fn check_len(&self, len: usize) -> Result<(), EnvelopeError> {
        if self.message_len() != len {
            return Err(EnvelopeError::BadLengths {
                reason: format!(
                    "64 + {} + {} + {} bytes announced, the slot holds {len}",
                    self.schema_len, self.batch_len, self.text_len
                ),
            });
        }
        Ok(())
    }
}
