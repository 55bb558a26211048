//! Mail transports: SMTP (lettre) for production, and `.eml` files in a folder, the embedded
//! default, so that a newcomer can read what MyEvents would have sent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::domain::Mail;

#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Hands `mail` over for delivery; `Ok` once the receiving side has taken it.
    async fn send(&self, mail: &Mail) -> Result<(), SendError>;

    /// Hands `mails` over, one answer per mail in their order. One after another here; a
    /// transport that can do better for a batch says so.
    async fn send_all(&self, mails: &[Mail]) -> Vec<Result<(), SendError>> {
        let mut sent = Vec::with_capacity(mails.len());
        for mail in mails {
            sent.push(self.send(mail).await);
        }
        sent
    }
}

/// Why a mail was not sent, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// The mail can never be sent as it is (an address refused for good): no more attempts.
    pub permanent: bool,
    pub message: String,
}

impl SendError {
    pub fn permanent(message: String) -> Self {
        Self {
            permanent: true,
            message,
        }
    }

    /// A failure that may pass: a server down, a disk full.
    pub fn transient(message: String) -> Self {
        Self {
            permanent: false,
            message,
        }
    }
}

/// A transport from `notifications.mail_url`:
/// - `file` (`data_dir/mail`) or `file:DIR`: one `<mail id>.eml` per mail;
/// - `smtp://[user:password@]host[:port][?tls=opportunistic|required]` (STARTTLS) or
///   `smtps://…` (TLS from the first byte), as lettre reads them.
pub fn from_url(url: &str, data_dir: &Path, from: &str) -> Result<Arc<dyn Transport>, String> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| format!("notifications.from {from:?} is not a mailbox: {e}"))?;
    if url == "file" {
        return Ok(Arc::new(FileTransport::new(data_dir.join("mail"), from)));
    }
    if let Some(dir) = url.strip_prefix("file:").filter(|d| !d.is_empty()) {
        return Ok(Arc::new(FileTransport::new(
            PathBuf::from(dir.trim_start_matches("//")),
            from,
        )));
    }
    if url.starts_with("smtp://") || url.starts_with("smtps://") {
        let smtp = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("mail URL {url:?}: {e}"))?
            .build();
        return Ok(Arc::new(SmtpTransport { smtp, from }));
    }
    Err(format!(
        "mail URL {url:?} is not supported: use file, file:DIR, smtp://… or smtps://…"
    ))
}

/// The message on the wire: plain text and HTML alternatives, with a Message-ID made from the
/// mail's id, so that a mail sent twice (see `crate::sender`) is recognisable as one.
pub fn message(from: &Mailbox, mail: &Mail) -> Result<Message, SendError> {
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| SendError::permanent(format!("{:?} is not a mailbox: {e}", mail.to)))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .message_id(Some(format!("<{}@myevents>", mail.id)))
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(mail.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(mail.html.clone()),
                ),
        )
        .map_err(|e| SendError::permanent(format!("cannot build mail {}: {e}", mail.id)))
}

/// Writes each mail to `<dir>/<mail id>.eml`. A file that exists already is that mail sent
/// before, so sending is idempotent: the file transport sends each mail exactly once even if
/// the process dies between writing a file and recording it sent.
pub struct FileTransport {
    dir: PathBuf,
    from: Mailbox,
}

impl FileTransport {
    pub fn new(dir: PathBuf, from: Mailbox) -> Self {
        Self { dir, from }
    }

    fn path_of(&self, id: &str) -> PathBuf {
        // Ids are ours (`booked-<uuid>`, …); anything else is replaced so a name cannot escape
        // the folder.
        let safe: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.eml"))
    }
}

#[async_trait]
impl Transport for FileTransport {
    async fn send(&self, mail: &Mail) -> Result<(), SendError> {
        let mut sent = self.send_all(std::slice::from_ref(mail)).await;
        sent.pop()
            .unwrap_or_else(|| Err(SendError::transient("nothing was written".into())))
    }

    /// Every file of the batch in one blocking task: a thread hop per file was a good part of
    /// what a mail cost.
    async fn send_all(&self, mails: &[Mail]) -> Vec<Result<(), SendError>> {
        let files: Vec<Result<(PathBuf, Vec<u8>), SendError>> = mails
            .iter()
            .map(|mail| {
                Ok((
                    self.path_of(&mail.id),
                    message(&self.from, mail)?.formatted(),
                ))
            })
            .collect();
        let dir = self.dir.clone();
        let count = mails.len();
        let written = tokio::task::spawn_blocking(move || {
            files
                .into_iter()
                .map(|file| {
                    let (path, bytes) = file?;
                    write_once(&dir, &path, &bytes).map_err(SendError::transient)
                })
                .collect::<Vec<_>>()
        })
        .await;
        written.unwrap_or_else(|e| {
            let failed = SendError::transient(format!("cannot write mail files: {e}"));
            vec![Err(failed); count]
        })
    }
}

/// Writes `bytes` to `path` unless it exists (the same mail, sent before). Written aside and
/// renamed, so a reader never sees half a mail and a crash leaves no partial file that would
/// count as sent.
fn write_once(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    let partial = path.with_extension("eml.partial");
    // The folder is made on the first mail only, not checked before every one.
    let written = match std::fs::write(&partial, bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))
            .and_then(|()| std::fs::write(&partial, bytes).map_err(|e| e.to_string())),
        other => other.map_err(|e| e.to_string()),
    };
    written.map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    std::fs::rename(&partial, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub struct SmtpTransport {
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

#[async_trait]
impl Transport for SmtpTransport {
    async fn send(&self, mail: &Mail) -> Result<(), SendError> {
        let message = message(&self.from, mail)?;
        self.smtp.send(message).await.map(|_| ()).map_err(|e| {
            // A 5xx answer will be the same next time; anything else (no connection, 4xx,
            // a timeout) may pass.
            let text = format!("SMTP: {e}");
            if e.is_permanent() {
                SendError::permanent(text)
            } else {
                SendError::transient(text)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(id: &str) -> Mail {
        Mail {
            id: id.into(),
            to: "ann@example.com".into(),
            subject: "Your tickets".into(),
            text: "Seats: 2".into(),
            html: "<p>Seats: 2</p>".into(),
            trace: None,
        }
    }

    #[tokio::test]
    async fn the_file_transport_writes_one_eml_per_mail_and_a_second_send_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let transport = from_url(
            &format!("file:{}", dir.path().display()),
            Path::new("."),
            "MyEvents <t@myevents.example>",
        )
        .unwrap();
        transport.send(&mail("booked-1")).await.unwrap();
        let path = dir.path().join("booked-1.eml");
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(first.contains("Message-ID: <booked-1@myevents>"), "{first}");
        assert!(first.contains("To: ann@example.com"), "{first}");
        assert!(first.contains("text/html"), "{first}");
        transport.send(&mail("booked-1")).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn a_batch_writes_each_good_mail_and_refuses_a_bad_address_alone() {
        let dir = tempfile::tempdir().unwrap();
        let transport = FileTransport::new(
            dir.path().join("mail"),
            "MyEvents <t@myevents.example>".parse().unwrap(),
        );
        let mut bad = mail("booked-2");
        bad.to = "not an address".into();
        let sent = transport
            .send_all(&[mail("booked-1"), bad, mail("booked-3")])
            .await;
        assert!(sent[0].is_ok() && sent[2].is_ok(), "{sent:?}");
        assert!(sent[1].as_ref().is_err_and(|e| e.permanent), "{sent:?}");
        let mut files: Vec<String> = std::fs::read_dir(dir.path().join("mail"))
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["booked-1.eml", "booked-3.eml"]);
    }

    #[test]
    fn unsupported_urls_and_bad_senders_are_refused_with_the_reason() {
        let here = Path::new(".");
        let err = from_url("pigeon://loft", here, "a@example.com")
            .err()
            .unwrap();
        assert!(err.contains("pigeon://loft"), "{err}");
        let err = from_url("file", here, "not a mailbox").err().unwrap();
        assert!(err.contains("notifications.from"), "{err}");
        assert!(from_url("smtp://127.0.0.1:2525", here, "a@example.com").is_ok());
    }
}
