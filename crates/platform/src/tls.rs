//! Certificates: `myevents gen-cert` writes a self-signed pair, like the reference's
//! `generate_cert.go`, for serving HTTPS in development.

use std::path::Path;

use anyhow::Context;

/// Writes `cert.pem` and `key.pem` for `hosts` into `dir`; returns their paths.
pub fn write_self_signed(
    hosts: &[String],
    dir: &Path,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let certified = rcgen::generate_simple_self_signed(hosts.to_vec())
        .context("cannot generate a certificate")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem())
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    write_private(&key_path, certified.signing_key.serialize_pem().as_bytes())?;
    Ok((cert_path, key_path))
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Uses ring for TLS everywhere in the process; the first call wins, later calls are no-ops.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
