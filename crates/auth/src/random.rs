//! Randomness: from the operating system for keys, salts and opaque tokens, and from the
//! thread's generator for values made many times per request (nonces).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `N` random bytes. The OS generator failing is not something to carry on from.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut out).expect("the operating system's random generator");
    out
}

/// `N` random bytes from the thread's generator: ChaCha12 seeded from the operating system
/// and reseeded from it every 64 KiB (`rand::rng`), a cryptographically secure generator
/// without a system call per value. A `getrandom` call per nonce and per UUID was a sixth
/// of the seed's CPU (profiled: 1M patients, each with a few sealed fields and ids).
/// Nothing here forks without `exec`, so no two processes share a generator's state.
pub fn nonce<const N: usize>() -> [u8; N] {
    use rand::Rng;
    let mut out = [0u8; N];
    rand::rng().fill_bytes(&mut out);
    out
}

/// 256 random bits as URL-safe text: refresh tokens, client secrets, generated passwords.
pub fn token() -> String {
    URL_SAFE_NO_PAD.encode(bytes::<32>())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn nonces_never_repeat_within_a_thread_or_across_threads() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| (0..5_000).map(|_| super::nonce::<12>()).collect::<Vec<_>>())
            })
            .collect();
        let mut seen = HashSet::new();
        for t in threads {
            for n in t.join().unwrap() {
                assert!(seen.insert(n), "a nonce came twice");
            }
        }
        assert_eq!(seen.len(), 20_000);
    }
}
