//! Randomness from the operating system, for keys, salts and opaque tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `N` random bytes. The OS generator failing is not something to carry on from.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut out).expect("the operating system's random generator");
    out
}

/// 256 random bits as URL-safe text: refresh tokens, client secrets, generated passwords.
pub fn token() -> String {
    URL_SAFE_NO_PAD.encode(bytes::<32>())
}
