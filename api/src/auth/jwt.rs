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
            // Another process starting on the same directory may win; then
            // its key is the one everybody uses.
            let pem = create_private_once(&path, &pem).map_err(io)?;
            tracing::info!(key.path = %path.display(), "generated a development JWT signing key");
            Ok(pem)
        }
        Err(e) => Err(io(e)),
    }
}

/// Creates the secret file `path` holding `contents`, readable only by its
/// owner, unless it exists already; returns what `path` holds afterwards (ours,
/// or the contents of whoever created it first).
///
/// The file appears whole or not at all. Writing it in place left, when the
/// process was killed between creating and filling it, an empty or short key
/// file that every later start refused to parse, and let a second process
/// starting on the same directory read that half-written file or fail on
/// "already exists". So the contents go to a temporary file in the same
/// directory, synced, and are then hard-linked to `path`: link(2) is atomic
/// and never replaces an existing file. (std has no rename-without-replace;
/// the hard link is how to get one without `unsafe`.)
pub fn create_private_once(path: &Path, contents: &str) -> std::io::Result<String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", Uuid::new_v4().simple()));
    write_private(&tmp, contents)?;
    let linked = match std::fs::hard_link(&tmp, path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        // A file system without hard links: rename (which would replace a
        // file created meanwhile, so only when there is none).
        Err(_) if !path.exists() => std::fs::rename(&tmp, path),
        other => other,
    };
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            // Make the new directory entry durable too.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(contents.to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read_to_string(path),
        Err(e) => Err(e),
    }
}

/// Writes a new secret file readable only by its owner (`create_new`: never
/// over an existing one). Not atomic: see [`create_private_once`] for files
/// another start must be able to read.
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
    fn a_secret_file_is_created_whole_once_and_then_kept() {
        let dir = std::env::temp_dir().join(format!("agora-once-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret.key");
        assert_eq!(create_private_once(&path, "first").unwrap(), "first");
        assert_eq!(create_private_once(&path, "second").unwrap(), "first", "an existing file is never replaced");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o077, 0);
        }
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret.key")], "no temporary file is left");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Replicas starting together on one data directory: every one gets the
    /// same complete contents, none fails and none reads a half-written file.
    /// (Writing in place, the losers got "already exists" or an empty file.)
    #[test]
    fn racing_creators_all_end_with_the_first_complete_contents() {
        for round in 0..20 {
            let dir = std::env::temp_dir().join(format!("agora-race-{round}-{}", Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("secret.key");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let seen: Vec<String> = (0..8)
                .map(|i| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        create_private_once(&path, &format!("contents of writer {i} ").repeat(200))
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect();
            let on_disk = std::fs::read_to_string(&path).unwrap();
            assert!(seen.iter().all(|s| *s == on_disk), "round {round}: every creator agrees");
            assert_eq!(on_disk.len(), "contents of writer 0 ".len() * 200, "round {round}: complete");
            std::fs::remove_dir_all(dir).unwrap();
        }
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
