//! The checked message format of `doc/TESTING.md`: self-describing test
//! messages any consumer, in either language, can verify without knowing
//! what the producer sent.

/// splitmix64 (as specified in doc/TESTING.md).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Parameters of a checked-message run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Seed mixed into the length formula.
    pub seed: u64,
    /// Smallest message (≥ 16).
    pub min: usize,
    /// Largest message.
    pub max: usize,
}

impl Spec {
    /// Length of message `j`.
    pub fn len(&self, j: u64) -> usize {
        self.min + (splitmix64(self.seed ^ j) % (self.max - self.min + 1) as u64) as usize
    }

    /// Writes message `j` into `buf` (at least `self.len(j)` bytes); returns its length.
    pub fn write(&self, j: u64, buf: &mut [u8]) -> usize {
        let len = self.len(j);
        let b = &mut buf[..len];
        b[0..8].copy_from_slice(&j.to_le_bytes());
        for (i, x) in b.iter_mut().enumerate().skip(16) {
            *x = (j.wrapping_mul(131).wrapping_add(i as u64 * 7)) as u8;
        }
        let sum = fnv(b);
        b[8..16].copy_from_slice(&sum.to_le_bytes());
        len
    }

    /// Verifies a received message; returns its number `j`.
    pub fn verify(&self, msg: &[u8]) -> Result<u64, String> {
        if msg.len() < 16 {
            return Err(format!("message of {} bytes is shorter than 16", msg.len()));
        }
        let j = u64::from_le_bytes(msg[0..8].try_into().expect("8 bytes"));
        let sum = u64::from_le_bytes(msg[8..16].try_into().expect("8 bytes"));
        if fnv(msg) != sum {
            return Err(format!("message {j}: checksum mismatch (torn or corrupt)"));
        }
        if msg.len() != self.len(j) {
            return Err(format!(
                "message {j}: length {} != expected {}",
                msg.len(),
                self.len(j)
            ));
        }
        for (i, &x) in msg.iter().enumerate().skip(16) {
            if x != (j.wrapping_mul(131).wrapping_add(i as u64 * 7)) as u8 {
                return Err(format!("message {j}: body byte {i} is wrong"));
            }
        }
        Ok(j)
    }
}

/// FNV-1a 64 over bytes 0..8 then 16..len.
fn fnv(msg: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in msg[0..8].iter().chain(&msg[16..]) {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn miri_roundtrip_and_detects_damage() {
        let s = Spec {
            seed: 1,
            min: 16,
            max: 300,
        };
        let mut buf = vec![0u8; 300];
        for j in 0..50 {
            let n = s.write(j, &mut buf);
            assert_eq!(s.verify(&buf[..n]), Ok(j));
            let mut bad = buf[..n].to_vec();
            bad[n - 1] ^= 1;
            assert!(s.verify(&bad).is_err());
            assert!(s.verify(&buf[..n - 1]).is_err());
        }
        assert!(s.verify(&[0u8; 15]).is_err());
    }

    #[test]
    fn miri_known_values() {
        // Pinned so the Go implementation can check itself against them.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        let s = Spec {
            seed: 1,
            min: 16,
            max: 4096,
        };
        let mut buf = vec![0u8; 4096];
        let n = s.write(7, &mut buf);
        assert_eq!(n, s.len(7));
        assert_eq!(&buf[0..8], &7u64.to_le_bytes());
    }
}
