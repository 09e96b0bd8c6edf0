//! The e-mail transports: SMTP (`lettre`), or files in `<data_dir>/mail/`
//! for development when no SMTP server is configured.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::NotificationSettings;

pub enum MailTransport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// One `.eml` file per e-mail in this directory (owner-only, like its files).
    File(std::path::PathBuf),
}

/// Why an e-mail was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth retrying: the server is down, busy or timed out.
    Temporary(String),
    /// Retrying cannot help: a bad address, a 5xx refusal.
    Permanent(String),
}

impl SendError {
    pub fn message(&self) -> &str {
        match self {
            SendError::Temporary(m) | SendError::Permanent(m) => m,
        }
    }
}

impl MailTransport {
    pub fn from_settings(cfg: &NotificationSettings, data_dir: &Path) -> anyhow::Result<Self> {
        match cfg.smtp_url.as_ref().filter(|u| !u.expose().trim().is_empty()) {
            Some(url) => {
                // The URL carries the password: errors name the setting, never the value.
                let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose().trim())
                    .map_err(|_| anyhow::anyhow!("notifications.smtp_url is not a usable smtp:// or smtps:// URL"))?;
                Ok(MailTransport::Smtp(
                    builder
                        .timeout(Some(Duration::from_secs(cfg.send_timeout_secs.max(1))))
                        .build(),
                ))
            }
            None => {
                let dir = data_dir.join("mail");
                crate::startup::private_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
                tracing::info!(mail.dir = %dir.display(), "no SMTP server configured: e-mails are written as files");
                Ok(MailTransport::File(dir))
            }
        }
    }

    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            MailTransport::Smtp(smtp) => smtp.send(message).await.map(|_| ()).map_err(|e| {
                if e.is_permanent() {
                    SendError::Permanent(e.to_string())
                } else {
                    SendError::Temporary(e.to_string())
                }
            }),
            MailTransport::File(dir) => {
                let (dir, bytes) = (dir.clone(), message.formatted());
                tokio::task::spawn_blocking(move || write_eml(&dir, &bytes))
                    .await
                    .map_err(|e| SendError::Temporary(format!("the e-mail writer stopped: {e}")))?
                    .map_err(|e| SendError::Temporary(format!("cannot write the e-mail file: {e}")))
            }
        }
    }
}

/// Writes one e-mail as `<random uuid>.eml` in `dir`, whole or not at all.
///
/// Hand-written rather than lettre's file transport, which creates the
/// `.eml` in place with the default mode and fills it afterwards: a process
/// killed in between left a truncated (or empty) e-mail for whatever picks up
/// the directory, readable by others until the permissions were fixed. Here
/// the e-mail goes to a hidden temporary file created owner-only, is synced,
/// and is renamed to its `.eml` name (atomic within a directory).
fn write_eml(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let id = uuid::Uuid::new_v4();
    let tmp = dir.join(format!(".{id}.eml.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // E-mails hold personal data: readable by the owner only, from the start.
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&tmp, dir.join(format!("{id}.eml"))));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// A plain-text e-mail with the given Message-ID.
pub fn build_message(from: &Mailbox, to: &str, subject: &str, body: &str, message_id: &str) -> Result<Message, SendError> {
    let to: Mailbox = to
        .parse()
        .map_err(|e| SendError::Permanent(format!("the recipient's address is not usable: {e}")))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(message_id.to_owned()))
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_owned())
        .map_err(|e| SendError::Permanent(format!("the e-mail cannot be built: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_file_appears_whole_and_owner_only_with_nothing_left_beside_it() {
        let dir = std::env::temp_dir().join(format!("agora-mail-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let from: Mailbox = "Agora <no-reply@agora.localhost>".parse().unwrap();
        let message = build_message(&from, "buyer@example.org", "Order 1 funded", "Body", "<abc@agora>").unwrap();
        let bytes = message.formatted();
        write_eml(&dir, &bytes).unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files[0].extension().and_then(|e| e.to_str()), Some("eml"));
        assert_eq!(std::fs::read(&files[0]).unwrap(), bytes);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_message_carries_the_given_message_id_and_recipient() {
        let from: Mailbox = "Agora <no-reply@agora.localhost>".parse().unwrap();
        let message = build_message(&from, "buyer@example.org", "Order 1 funded", "Body", "<abc@agora>").unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        assert!(raw.contains("Message-ID: <abc@agora>"), "{raw}");
        assert!(raw.contains("To: buyer@example.org"), "{raw}");
        assert!(raw.contains("Subject: Order 1 funded"), "{raw}");
    }

    #[test]
    fn an_unusable_address_is_a_permanent_failure() {
        let from: Mailbox = "no-reply@agora.localhost".parse().unwrap();
        assert!(matches!(
            build_message(&from, "not an address", "s", "b", "<x@agora>"),
            Err(SendError::Permanent(_))
        ));
    }

    #[test]
    fn plain_starttls_and_tls_smtp_urls_are_accepted() {
        let mut cfg = crate::config::Settings::default().notifications;
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://user:pass@mail.example.org:587?tls=required",
            "smtps://user:pass@mail.example.org",
        ] {
            cfg.smtp_url = Some(crate::config::Secret::new(url));
            assert!(matches!(
                MailTransport::from_settings(&cfg, Path::new("/nonexistent")),
                Ok(MailTransport::Smtp(_))
            ));
        }
    }

    #[test]
    fn a_bad_smtp_url_is_refused_without_echoing_it() {
        let mut cfg = crate::config::Settings::default().notifications;
        cfg.smtp_url = Some(crate::config::Secret::new("ftp://user:hunter2@host"));
        let err = MailTransport::from_settings(&cfg, Path::new("/nonexistent")).err().unwrap();
        assert!(!format!("{err:#}").contains("hunter2"));
    }
}
