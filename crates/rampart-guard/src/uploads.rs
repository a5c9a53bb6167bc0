//! Links to files uploaded to this server (XEP-0363 HTTP File Upload).
//!
//! Every upload gets its own URL, so the same file uploaded twice has two URLs that share
//! nothing but the file's content. The upload service plugs an [`UploadResolver`] into the
//! guard ([`Guard::set_upload_resolver`]); for every link in a message (body, XHTML-IM,
//! XEP-0066 `jabber:x:oob`) that the resolver claims, the guard uses the file's SHA-256 as
//! the behavioural key instead of the URL — the outbreak rules then see one file sent to many
//! people however many times it was uploaded — and a link to a file the upload scanner
//! refused blocks the message.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::outbreak::{KeyKind, PayloadKey};
use crate::{Action, ContentHit, Evidence, Finding, Guard, GuardError, fingerprint};

/// What the upload service knows about the file behind one of its URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadedFile {
    /// Slot handed out, nothing stored yet (the link does not work yet).
    Pending,
    /// Scanned clean and stored; `sha256` in lowercase hex.
    Available { sha256: String },
    /// Refused by the upload scanner (infected or a forbidden type), with the reason.
    Refused { reason: String },
}

/// Maps URLs of this server's upload service to the files behind them.
#[async_trait]
pub trait UploadResolver: Send + Sync {
    /// Cheap test run on every link of every message: is `url` one of ours?
    fn is_upload_url(&self, url: &str) -> bool;
    /// The file behind one of our URLs; `Ok(None)` for a URL of ours that names no upload.
    /// `Err` means the guard cannot decide (the message is held).
    async fn resolve(&self, url: &str) -> Result<Option<UploadedFile>, String>;
}

/// The guard's (optional) resolver, set once the upload service exists.
#[derive(Default)]
pub(crate) struct ResolverSlot(RwLock<Option<Arc<dyn UploadResolver>>>);

impl ResolverSlot {
    fn get(&self) -> Option<Arc<dyn UploadResolver>> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The behavioural key of an uploaded file: the same as for a shared file with that hash.
pub(crate) fn file_key(sha256_hex: &str) -> PayloadKey {
    let label = format!("sha-256:{sha256_hex}");
    PayloadKey {
        kind: KeyKind::File,
        hash: fingerprint::hash_bytes(2, label.as_bytes()),
        label: Arc::from(label.as_str()),
    }
}

impl Guard {
    /// Let the guard know the files behind upload URLs (see the module docs).
    pub fn set_upload_resolver(&self, resolver: Arc<dyn UploadResolver>) {
        *self.uploads.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(resolver);
    }

    /// Handle one link of a message if it is one of our upload URLs: `Ok(true)` when it was
    /// (its file key is pushed, or a refused file becomes the content hit), `Ok(false)` for
    /// any other link, which the caller treats as a link.
    pub(crate) async fn upload_link(
        &self,
        raw: &str,
        seen: &mut Vec<String>,
        hit: &mut Option<ContentHit>,
        keys: &mut Vec<PayloadKey>,
    ) -> Result<bool, GuardError> {
        let Some(r) = self.uploads.get() else { return Ok(false) };
        let raw = raw.trim();
        if !r.is_upload_url(raw) {
            return Ok(false);
        }
        if seen.iter().any(|s| s == raw) {
            return Ok(true);
        }
        if seen.len() >= 32 {
            return Ok(true);
        }
        seen.push(raw.to_owned());
        let file = tokio::time::timeout(self.scan_timeout, r.resolve(raw))
            .await
            .map_err(|_| GuardError::Timeout)?
            .map_err(GuardError::Engine)?;
        match file {
            None | Some(UploadedFile::Pending) => Ok(false),
            Some(UploadedFile::Available { sha256 }) => {
                let key = file_key(&sha256);
                if !keys.iter().any(|k| k.label == key.label) {
                    keys.push(key);
                }
                Ok(true)
            }
            Some(UploadedFile::Refused { reason }) => {
                if hit.is_none() {
                    *hit = Some(ContentHit {
                        finding: Finding {
                            rule: "upload.refused".into(),
                            reason: format!("blocked: link to a file the upload scanner refused ({reason})"),
                            evidence: Evidence { url: Some(raw.to_owned()), ..Evidence::default() },
                        },
                        action: Action::Block,
                    });
                }
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlocklistSet, GuardConfig, Verdict};
    use rampart_proto::{Element, Jid};

    struct Fake;

    #[async_trait]
    impl UploadResolver for Fake {
        fn is_upload_url(&self, url: &str) -> bool {
            url.starts_with("https://up.example/f/")
        }
        async fn resolve(&self, url: &str) -> Result<Option<UploadedFile>, String> {
            Ok(Some(match url.rsplit('/').next().unwrap_or("") {
                "bad.jpg" => UploadedFile::Refused { reason: "blocked: executable disguised as image (PE)".into() },
                "broken" => return Err("store down".into()),
                _ => UploadedFile::Available { sha256: "ab".repeat(32) },
            }))
        }
    }

    fn guard() -> Guard {
        let mut cfg = GuardConfig::default();
        cfg.blast.threshold = 3;
        let g = Guard::new(cfg, vec![], BlocklistSet::new());
        g.set_upload_resolver(Arc::new(Fake));
        g
    }

    fn msg(body: &str, oob: Option<&str>) -> Element {
        let mut m = Element::new("message", "jabber:client")
            .with_attr("type", "chat")
            .with_child(Element::new("body", "jabber:client").with_text(body));
        if let Some(u) = oob {
            m = m.with_child(Element::new("x", crate::ns::OOB).with_child(Element::new("url", crate::ns::OOB).with_text(u)));
        }
        m
    }

    #[tokio::test]
    async fn separate_uploads_of_one_file_are_one_blast() {
        let g = guard();
        let from = Jid::parse("mallory@example/r").unwrap();
        let mut last = Verdict::Allow;
        for i in 0..6 {
            let to = Jid::parse(&format!("victim{i}@example")).unwrap();
            let url = format!("https://up.example/f/slot{i}/sig/photo.jpg");
            last = g.inspect(&from, &to, None, &msg(&url, Some(&url))).await.unwrap();
            if !last.is_allow() {
                break;
            }
        }
        let Verdict::Quarantine(f) = last else { panic!("expected a blast quarantine, got {last:?}") };
        assert_eq!(f.rule, "outbreak.blast");
        assert_eq!(f.evidence.file_hash, Some(format!("sha-256:{}", "ab".repeat(32))));
    }

    #[tokio::test]
    async fn link_to_refused_upload_is_blocked_and_store_errors_hold() {
        let g = guard();
        let from = Jid::parse("a@example/r").unwrap();
        let to = Jid::parse("b@example").unwrap();
        let v = g.inspect(&from, &to, None, &msg("look", Some("https://up.example/f/x/sig/bad.jpg"))).await.unwrap();
        let Verdict::Block(f) = v else { panic!("{v:?}") };
        assert_eq!(f.rule, "upload.refused");
        assert!(f.reason.contains("executable disguised as image"), "{}", f.reason);
        let e = g.inspect(&from, &to, None, &msg("https://up.example/f/x/sig/broken", None)).await;
        assert!(e.is_err());
        // Other links are untouched.
        let v = g.inspect(&from, &to, None, &msg("see https://example.org/page", None)).await.unwrap();
        assert!(v.is_allow());
    }
}
