//! The archive's Ed25519 signing key: a hex seed in `archive-signing.key` (mode 0600), with
//! the public key beside it in `archive-signing.pub`.

use std::io::Write;
use std::path::Path;

use ed25519_dalek::{Signer as _, SigningKey};
use rand::RngCore;

use crate::error::{ArchiveError, Result};
use crate::hash::{checkpoint_message, tombstone_message};
use crate::types::{Checkpoint, Tombstone};

/// File name of the private key inside the archive directory.
pub const KEY_FILE: &str = "archive-signing.key";
/// File name of the public key (hex) inside the archive directory.
pub const PUBLIC_KEY_FILE: &str = "archive-signing.pub";

/// Signs checkpoints and tombstones.
pub(crate) struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", hex::encode(self.public_key()))
    }
}

impl Signer {
    /// A fresh random key (for in-memory archives).
    pub(crate) fn generate() -> Signer {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        Signer {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// Load `dir/archive-signing.key`, creating it (mode 0600) if missing.
    pub(crate) fn load_or_create(dir: &Path) -> Result<Signer> {
        let path = dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                check_mode(&path)?;
                let mut seed = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut seed).map_err(|e| {
                    ArchiveError::Key(format!("{}: not a 64-digit hex seed: {e}", path.display()))
                })?;
                Ok(Signer {
                    key: SigningKey::from_bytes(&seed),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let signer = Signer::generate();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(&path).map_err(|e| ArchiveError::io(&path, e))?;
                f.write_all(format!("{}\n", hex::encode(signer.key.to_bytes())).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| ArchiveError::io(&path, e))?;
                let pub_path = dir.join(PUBLIC_KEY_FILE);
                std::fs::write(&pub_path, format!("{}\n", hex::encode(signer.public_key())))
                    .map_err(|e| ArchiveError::io(&pub_path, e))?;
                tracing::info!(path = %path.display(), "created archive signing key");
                Ok(signer)
            }
            Err(e) => Err(ArchiveError::io(&path, e)),
        }
    }

    pub(crate) fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub(crate) fn checkpoint(&self, seq: u64, hash: [u8; 32], at_ms: i64) -> Checkpoint {
        let signature = self
            .key
            .sign(&checkpoint_message(seq, &hash, at_ms))
            .to_bytes();
        Checkpoint {
            seq,
            hash,
            at_ms,
            signature,
        }
    }

    /// Fill in `t.signature`.
    pub(crate) fn sign_tombstone(&self, t: &mut Tombstone) {
        t.signature = self.key.sign(&tombstone_message(t)).to_bytes();
    }
}

/// Refuse a private key readable by group or others.
fn check_mode(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| ArchiveError::io(path, e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ArchiveError::Key(format!(
                "{} has mode {mode:o}; it must not be accessible by group or others (chmod 600)",
                path.display()
            )));
        }
    }
    let _ = path;
    Ok(())
}
