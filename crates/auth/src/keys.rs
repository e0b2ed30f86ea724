//! The built-in issuer's signing key: ES256 (ECDSA on P-256), made on first start and kept
//! in the data directory, never in the repository. Its public half is published as a JWK,
//! named by its RFC 7638 thumbprint, so verifiers pick it by `kid`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "token-signing-key.pem";

#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} does not hold a PKCS#8 P-256 private key")]
    Malformed { path: PathBuf },
}

impl SigningKey {
    pub fn generate() -> Self {
        Self::from_p256(&Self::generate_p256())
    }

    fn from_p256(key: &p256::ecdsa::SigningKey) -> Self {
        let point = key.verifying_key().to_encoded_point(false);
        let x = URL_SAFE_NO_PAD.encode(point.x().map(|x| &x[..]).unwrap_or_default());
        let y = URL_SAFE_NO_PAD.encode(point.y().map(|y| &y[..]).unwrap_or_default());
        // RFC 7638: the hash of the required members, in lexicographic order, no spaces.
        let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint.as_bytes()));
        #[allow(clippy::expect_used)]
        let der = key.to_pkcs8_der().expect("a P-256 key encodes as PKCS#8");
        Self {
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            decoding: DecodingKey::from_ec_components(&x, &y)
                .unwrap_or_else(|_| DecodingKey::from_secret(&[])),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "x": x, "y": y,
                "kid": kid, "use": "sig", "alg": "ES256"
            }),
            kid,
        }
    }

    /// The key in `dir/token-signing-key.pem`, made there (mode 0600) if there is none.
    /// Two processes starting at once agree on one key: only the first creation wins.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join(FILE_NAME);
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        crate::secret_file::create_once(&path, || {
            #[allow(clippy::expect_used)]
            let pem = Self::generate_p256()
                .to_pkcs8_pem(LineEnding::LF)
                .expect("a P-256 key encodes as PEM");
            pem.as_bytes().to_vec()
        })
        .map_err(io)?;
        let pem = std::fs::read_to_string(&path).map_err(io)?;
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&pem)
            .map_err(|_| KeyError::Malformed { path: path.clone() })?;
        Ok(Self::from_p256(&key))
    }

    fn generate_p256() -> p256::ecdsa::SigningKey {
        // A random 256-bit string is a valid P-256 scalar except with probability ~2^-32.
        loop {
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&crate::random::bytes::<32>()) {
                return key;
            }
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK, for the JWKS endpoint.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// A compact JWS of `claims`, ES256, with this key's `kid`.
    pub fn sign(&self, claims: &impl serde::Serialize) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        // Signing with a well-formed key and serialisable claims cannot fail.
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_read_back_the_same() {
        let dir = std::env::temp_dir().join(format!("meditrack-keys-{}", uuid::Uuid::now_v7()));
        let first = SigningKey::load_or_create(&dir).unwrap();
        let again = SigningKey::load_or_create(&dir).unwrap();
        assert_eq!(first.kid(), again.kid());
        assert_ne!(first.kid(), SigningKey::generate().kid());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "only the owner reads the key");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
