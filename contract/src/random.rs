//! Randomness straight from the operating system's CSPRNG, with failures as errors rather than
//! panics (a key or nonce is never made from anything weaker).

use rand::TryRngCore;
use rand::rngs::OsRng;

#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(#[from] rand::rand_core::OsError);

pub(crate) fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    OsRng.try_fill_bytes(buf)?;
    Ok(())
}

const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `len` characters drawn uniformly from `[A-Za-z0-9]`. Bytes at or above 248 (= 4 × 62) are
/// rejected so that every character is exactly equally likely.
pub(crate) fn alphanumeric(len: usize) -> Result<String, RandomError> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        fill(&mut buf)?;
        for &b in &buf {
            if b < 248 && out.len() < len {
                out.push(char::from(ALPHANUMERIC[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphanumeric_has_the_length_and_alphabet_asked_for() {
        let s = alphanumeric(1000).unwrap();
        assert_eq!(s.len(), 1000);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
        // 1000 draws over 62 symbols: every class shows up.
        assert!(s.bytes().any(|b| b.is_ascii_uppercase()));
        assert!(s.bytes().any(|b| b.is_ascii_lowercase()));
        assert!(s.bytes().any(|b| b.is_ascii_digit()));
    }

    #[test]
    fn draws_differ() {
        assert_ne!(alphanumeric(32).unwrap(), alphanumeric(32).unwrap());
    }
}
