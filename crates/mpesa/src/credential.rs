//! The B2C `SecurityCredential`: the initiator password encrypted with the public key of the
//! certificate Safaricom publishes (RSA, PKCS#1 v1.5 padding), base64-encoded.

use base64::Engine as _;
use rsa::pkcs8::DecodePublicKey as _;
use rsa::{Pkcs1v15Encrypt, RsaPublicKey};
use x509_cert::Certificate;
use x509_cert::der::{DecodePem as _, Encode as _};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CredentialError(pub String);

/// The RSA public key of a PEM certificate (`-----BEGIN CERTIFICATE-----`); a bare PEM public
/// key (`-----BEGIN PUBLIC KEY-----`) is accepted too.
pub fn public_key_from_pem(pem: &str) -> Result<RsaPublicKey, CredentialError> {
    if pem.contains("BEGIN PUBLIC KEY") {
        return RsaPublicKey::from_public_key_pem(pem.trim())
            .map_err(|err| CredentialError(format!("the public key cannot be read: {err}")));
    }
    let certificate = Certificate::from_pem(pem.trim().as_bytes())
        .map_err(|err| CredentialError(format!("the certificate cannot be read: {err}")))?;
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|err| CredentialError(format!("the certificate's key cannot be read: {err}")))?;
    RsaPublicKey::from_public_key_der(&spki)
        .map_err(|err| CredentialError(format!("the certificate's key is not RSA: {err}")))
}

/// `base64(RSA-PKCS#1-v1.5(initiator password))` with the certificate's key.
pub fn security_credential(
    initiator_password: &str,
    certificate_pem: &str,
) -> Result<String, CredentialError> {
    let key = public_key_from_pem(certificate_pem)?;
    let mut rng = rand_core06::OsRng;
    let encrypted = key
        .encrypt(&mut rng, Pkcs1v15Encrypt, initiator_password.as_bytes())
        .map_err(|err| CredentialError(format!("cannot encrypt the initiator password: {err}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(encrypted))
}

/// A key pair and a self-signed certificate for it, as a simulator (or a test) needs to check
/// credentials it is sent. 1024-bit keys keep start-up fast; they are for local use only.
pub mod local {
    use std::str::FromStr as _;
    use std::time::Duration;

    use base64::Engine as _;
    use rsa::pkcs1v15::SigningKey;
    use rsa::{Pkcs1v15Encrypt, RsaPrivateKey};
    use x509_cert::builder::{Builder as _, CertificateBuilder, Profile};
    use x509_cert::der::EncodePem as _;
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::spki::SubjectPublicKeyInfoOwned;
    use x509_cert::time::Validity;

    use super::CredentialError;

    #[derive(Debug, Clone)]
    pub struct LocalCertificate {
        pub private_key: RsaPrivateKey,
        pub certificate_pem: String,
    }

    impl LocalCertificate {
        pub fn generate() -> Result<Self, CredentialError> {
            let fail = |what: &str, err: &dyn std::fmt::Display| {
                CredentialError(format!("cannot {what}: {err}"))
            };
            let mut rng = rand_core06::OsRng;
            let private_key =
                RsaPrivateKey::new(&mut rng, 1024).map_err(|e| fail("generate a key", &e))?;
            let public_der =
                rsa::pkcs8::EncodePublicKey::to_public_key_der(&private_key.to_public_key())
                    .map_err(|e| fail("encode the key", &e))?;
            let spki = SubjectPublicKeyInfoOwned::try_from(public_der.as_bytes())
                .map_err(|e| fail("encode the key", &e))?;
            let subject = Name::from_str("CN=Local Daraja simulator,O=PesaChama")
                .map_err(|e| fail("name the certificate", &e))?;
            let validity = Validity::from_now(Duration::from_secs(10 * 365 * 24 * 3600))
                .map_err(|e| fail("date the certificate", &e))?;
            let signer = SigningKey::<rsa::sha2::Sha256>::new(private_key.clone());
            let builder = CertificateBuilder::new(
                Profile::Root,
                SerialNumber::from(1u32),
                validity,
                subject,
                spki,
                &signer,
            )
            .map_err(|e| fail("build the certificate", &e))?;
            let certificate = builder
                .build::<rsa::pkcs1v15::Signature>()
                .map_err(|e| fail("sign the certificate", &e))?;
            let certificate_pem = certificate
                .to_pem(x509_cert::der::pem::LineEnding::LF)
                .map_err(|e| fail("encode the certificate", &e))?;
            Ok(Self {
                private_key,
                certificate_pem,
            })
        }

        /// The password inside a credential, or `None` when it was not made with our key.
        pub fn decrypt(&self, credential: &str) -> Option<String> {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(credential)
                .ok()?;
            let plain = self.private_key.decrypt(Pkcs1v15Encrypt, &bytes).ok()?;
            String::from_utf8(plain).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::local::LocalCertificate;
    use super::*;

    #[test]
    fn a_credential_decrypts_to_the_password_with_the_certificates_key() {
        let local = LocalCertificate::generate().unwrap();
        let credential = security_credential("Safaricom999!*!", &local.certificate_pem).unwrap();
        assert_eq!(
            local.decrypt(&credential).as_deref(),
            Some("Safaricom999!*!")
        );
        // Random padding: the same password never encrypts the same way twice.
        assert_ne!(
            credential,
            security_credential("Safaricom999!*!", &local.certificate_pem).unwrap()
        );
        assert!(security_credential("x", "not a certificate").is_err());
    }
}
