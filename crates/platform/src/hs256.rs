//! HS256, the one algorithm MyEvents signs and accepts tokens with, as jsonwebtoken's crypto
//! provider. jsonwebtoken's own providers bring every algorithm it knows (RSA, ECDSA, EdDSA:
//! about 30 crates, a seventh of a cold build of `scripts/start`, and the RSA crate's timing
//! advisory); this one is HMAC-SHA-256 from RustCrypto and nothing else. Any other algorithm
//! in a token's header is refused before a key is used.

use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::Sha256;
use signature::{Signer, Verifier};

/// Installs the provider for this process; calling it again changes nothing.
pub fn install() {
    // An error means a provider is installed already: this one, by an earlier call.
    let _ = PROVIDER.install_default();
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    jwk_utils: JwkUtils::new_unimplemented(),
};

struct Hs256(Hmac<Sha256>);

impl Hs256 {
    fn new(algorithm: &Algorithm, secret: Result<&[u8]>) -> Result<Self> {
        if *algorithm != Algorithm::HS256 {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        Hmac::new_from_slice(secret?)
            .map(Hs256)
            .map_err(|_| ErrorKind::InvalidKeyFormat.into())
    }

    fn mac(&self, message: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(message);
        mac
    }
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Ok(Box::new(Hs256::new(algorithm, key.try_get_hmac_secret())?))
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    Ok(Box::new(Hs256::new(algorithm, key.try_get_hmac_secret())?))
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self.mac(message).finalize().into_bytes().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    /// In constant time (`verify_slice`), so that a forger learns nothing from how long a wrong
    /// signature takes to refuse.
    fn verify(&self, message: &[u8], tag: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        self.mac(message)
            .verify_slice(tag)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

    /// jwt.io's HS256 example: the signature of a known header and payload under a known key.
    #[test]
    fn the_signature_is_hmac_sha256_of_the_header_and_payload() {
        super::install();
        let signed = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                      eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ";
        let key = EncodingKey::from_secret(b"your-256-bit-secret");
        assert_eq!(
            jsonwebtoken::crypto::sign(signed.as_bytes(), &key, Algorithm::HS256).unwrap(),
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
        let wrong = "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5d";
        let decoding = DecodingKey::from_secret(b"your-256-bit-secret");
        assert!(
            !jsonwebtoken::crypto::verify(wrong, signed.as_bytes(), &decoding, Algorithm::HS256)
                .unwrap_or(false)
        );
    }

    #[test]
    fn another_algorithm_is_refused() {
        super::install();
        let key = EncodingKey::from_secret(b"0123456789abcdef");
        let claims = serde_json::json!({"sub": "u", "exp": 4_000_000_000u64});
        assert!(jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &key).is_err());
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
        let decoding = DecodingKey::from_secret(b"0123456789abcdef");
        let hs512 = Validation::new(Algorithm::HS512);
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &hs512).is_err());
        let hs256 = Validation::new(Algorithm::HS256);
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &hs256).is_ok());
    }
}
