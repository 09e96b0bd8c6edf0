//! Access tokens: short-lived JWTs signed with Ed25519 (EdDSA).
//!
//! The private key comes from configuration (PEM or a file). In development a key
//! is generated once and kept in the data directory with owner-only permissions;
//! in production the server refuses to start without a configured key.

use std::path::Path;

use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{AuthSettings, Mode};

const AUDIENCE: &str = "agora-api";
const DEV_KEY_FILE: &str = "jwt-ed25519.pem";

#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    #[error("production mode needs auth.jwt_private_key_pem or auth.jwt_private_key_file (AGORA__AUTH__JWT_PRIVATE_KEY_FILE)")]
    MissingInProduction,
    #[error("the JWT signing key is not a PKCS#8 Ed25519 PEM")]
    InvalidKey,
    #[error("cannot read or write the JWT key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: Uuid,
    /// The login session (refresh-token family); logout revokes it.
    pub sid: Uuid,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired; refresh the session")]
    Expired,
    #[error("the access token is invalid")]
    Invalid,
}

/// The signing and verification keys. Never printed.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    ttl_secs: i64,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(<redacted>)")
    }
}

impl JwtKeys {
    /// Loads the configured key, or in development the data directory's key,
    /// generating it on first start.
    pub fn load(settings: &AuthSettings, mode: Mode, data_dir: &Path) -> Result<Self, KeyLoadError> {
        let pem = if let Some(pem) = &settings.jwt_private_key_pem {
            pem.expose().to_owned()
        } else if let Some(path) = &settings.jwt_private_key_file {
            std::fs::read_to_string(path).map_err(|source| KeyLoadError::Io {
                path: path.display().to_string(),
                source,
            })?
        } else if mode == Mode::Production {
            return Err(KeyLoadError::MissingInProduction);
        } else {
            development_key(data_dir)?
        };
        Self::from_pem(&pem, settings)
    }

    fn from_pem(pem: &str, settings: &AuthSettings) -> Result<Self, KeyLoadError> {
        let signing = SigningKey::from_pkcs8_pem(pem.trim()).map_err(|_| KeyLoadError::InvalidKey)?;
        let public_pem = signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| KeyLoadError::InvalidKey)?;
        Ok(Self {
            encoding: EncodingKey::from_ed_pem(pem.trim().as_bytes()).map_err(|_| KeyLoadError::InvalidKey)?,
            decoding: DecodingKey::from_ed_pem(public_pem.as_bytes()).map_err(|_| KeyLoadError::InvalidKey)?,
            issuer: settings.issuer.clone(),
            ttl_secs: i64::try_from(settings.access_token_ttl_secs).unwrap_or(i64::MAX / 2),
        })
    }

    /// A new PKCS#8 PEM Ed25519 private key, for `agora keys jwt` and development.
    pub fn generate_pem() -> Result<String, KeyLoadError> {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        key.to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|_| KeyLoadError::InvalidKey)
    }

    pub fn issue(&self, user_id: Uuid, session_id: Uuid, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        let iat = now.timestamp();
        let exp = iat + self.ttl_secs;
        let claims = AccessClaims {
            sub: user_id,
            sid: session_id,
            iss: self.issuer.clone(),
            aud: AUDIENCE.to_owned(),
            iat,
            exp,
        };
        // Signing with a key that parsed cannot fail; an empty token would be
        // rejected by every verifier, so it is a safe fallback.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .unwrap_or_default();
        let expires = DateTime::from_timestamp(exp, 0).unwrap_or(now);
        (token, expires)
    }

    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 5;
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[&self.issuer]);
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

fn development_key(data_dir: &Path) -> Result<String, KeyLoadError> {
    let path = data_dir.join(DEV_KEY_FILE);
    let io = |source| KeyLoadError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(pem) => Ok(pem),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let pem = JwtKeys::generate_pem()?;
            write_private(&path, &pem).map_err(io)?;
            tracing::info!(key.path = %path.display(), "generated a development JWT signing key");
            Ok(pem)
        }
        Err(e) => Err(io(e)),
    }
}

/// Writes a secret file readable only by its owner.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn keys() -> JwtKeys {
        let pem = JwtKeys::generate_pem().unwrap();
        JwtKeys::from_pem(&pem, &Settings::default().auth).unwrap()
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_user() {
        let k = keys();
        let (user, sid) = (Uuid::new_v4(), Uuid::new_v4());
        let (token, _) = k.issue(user, sid, Utc::now());
        let claims = k.verify(&token).unwrap();
        assert_eq!((claims.sub, claims.sid), (user, sid));
    }

    #[test]
    fn expired_foreign_and_tampered_tokens_are_rejected() {
        let k = keys();
        let (old, _) = k.issue(Uuid::new_v4(), Uuid::new_v4(), Utc::now() - chrono::Duration::hours(1));
        assert_eq!(k.verify(&old).unwrap_err(), TokenError::Expired);
        let (foreign, _) = keys().issue(Uuid::new_v4(), Uuid::new_v4(), Utc::now());
        assert_eq!(k.verify(&foreign).unwrap_err(), TokenError::Invalid);
        let (token, _) = k.issue(Uuid::new_v4(), Uuid::new_v4(), Utc::now());
        let mut tampered = token.into_bytes();
        let mid = tampered.len() / 2;
        tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
        assert!(k.verify(&String::from_utf8(tampered).unwrap()).is_err());
    }

    #[test]
    fn production_refuses_to_start_without_a_key() {
        let dir = std::env::temp_dir();
        let err = JwtKeys::load(&Settings::default().auth, Mode::Production, &dir).unwrap_err();
        assert!(matches!(err, KeyLoadError::MissingInProduction));
    }

    #[test]
    fn development_key_is_generated_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("agora-jwt-{}", Uuid::new_v4()));
        let settings = Settings::default().auth;
        let a = JwtKeys::load(&settings, Mode::Development, &dir).unwrap();
        let b = JwtKeys::load(&settings, Mode::Development, &dir).unwrap();
        let (token, _) = a.issue(Uuid::new_v4(), Uuid::new_v4(), Utc::now());
        assert!(b.verify(&token).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(DEV_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
