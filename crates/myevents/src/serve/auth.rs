//! The token secrets.

use anyhow::{Context, bail};
use platform::{Auth, Config};

/// Whether a secret is one of the placeholders the deployment files ship (deploy/k8s), which
/// anyone can read: a deployment that forgot to replace one must not start.
pub(crate) fn is_placeholder(secret: &str) -> bool {
    secret.starts_with("replace-me")
}

/// The token secret: configured, or generated once into `data_dir/jwt-secret` so that every
/// process sharing the folder (and every restart) accepts the same tokens.
pub(super) fn jwt_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.auth.jwt_secret {
        if secret.len() < 16 {
            bail!("auth.jwt_secret must have at least 16 characters");
        }
        if is_placeholder(secret) {
            bail!(
                "auth.jwt_secret is still the placeholder of the deployment files: anyone could \
                 sign tokens with it; set a secret of your own (e.g. `openssl rand -hex 32`)"
            );
        }
        return Ok(secret.as_bytes().to_vec());
    }
    let path = config.data_dir.join("jwt-secret");
    match std::fs::read(&path) {
        Ok(secret) if secret.len() >= 16 => return Ok(secret),
        Ok(_) => bail!(
            "{} is too short to be a secret; delete it to make a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let secret: String = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    platform::tls::write_private(&path, secret.as_bytes())?;
    Ok(secret.into_bytes())
}

/// `auth.jwt_previous_secret`, if set: the secret before a rotation.
pub(super) fn previous_jwt_secret(config: &Config) -> anyhow::Result<Option<&[u8]>> {
    let Some(previous) = &config.auth.jwt_previous_secret else {
        return Ok(None);
    };
    if previous.len() < 16 || is_placeholder(previous) {
        bail!(
            "auth.jwt_previous_secret is too short or a placeholder of the deployment files: \
             set it to the secret before the rotation, or unset it"
        );
    }
    Ok(Some(previous.as_bytes()))
}

/// Signs with `secret`; also accepts the tokens of `previous`, during a rotation.
pub(super) fn auth(config: &Config, secret: &[u8], previous: Option<&[u8]>) -> Auth {
    let settings = &config.auth;
    let auth = Auth::new(secret, settings.token_ttl_secs)
        .with_issuer_and_audience(&settings.jwt_issuer, &settings.jwt_audience);
    match previous {
        Some(previous) => auth.with_previous_secret(previous),
        None => auth,
    }
}
