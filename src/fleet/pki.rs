//! The controller's certificate authority and the TLS configurations of the agent port.
//!
//! Owns [`Ca`] (the CA key pair and certificate, the server certificate of the agent port,
//! agent certificates), the agent's key and CSR
//! ([`new_agent_key`]), the client configurations an agent dials with
//! ([`enroll_client_config`], [`agent_client_config`]), and [`write_private`], the one way
//! key material reaches the disk.
//!
//! A CA is built one way, [`Ca::from_pems`], from PEM made by [`Ca::generate`]: a controller
//! with an embedded store keeps the pair in its data directory ([`Ca::load_or_create`]);
//! controllers that share a database keep it there, the key sealed ([`crate::fleet::seal`]).
//! Server certificates are each controller's own, in its data directory, signed by the CA.
//!
//! **Architecture Invariant:** an agent certificate is built by the CA from scratch. Only the
//! public key is taken from the agent's CSR, after its self-signature is checked; the name is
//! the one the controller approved, never one the CSR asks for, and no extension is copied
//! (the Puppet and Salt CVEs were CAs signing what they were asked to sign).
//!
//! **Architecture Invariant:** every file written here is created with mode 0600 in a
//! directory created with mode 0700, and replaced atomically (temp file + rename), so a crash
//! leaves the old file or the new one.
//!
//! Every TLS configuration is built with the `ring` provider explicitly: nothing depends on a
//! process-wide default provider. Every one offers the ALPN protocol [`ALPN`].

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateSigningRequestDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use zeroize::Zeroizing;

/// The ALPN protocol of the agent port.
pub const ALPN: &[u8] = b"steward/1";

/// The CA certificate's subject common name.
const CA_COMMON_NAME: &str = "steward CA";

/// How long the CA certificate is valid.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// How long a server certificate is valid.
const SERVER_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A server certificate that expires within this is re-created.
const SERVER_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Certificates start this long in the past, so a peer whose clock is a little behind
/// accepts them.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// Names the server certificate always carries, so local agents can always dial it.
const ALWAYS_SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// The controller's CA: its key pair and its self-signed certificate. `Debug` shows the
/// fingerprint, never the key.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    fingerprint: String,
}

/// What a verified peer certificate says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The node name: the certificate's subject common name.
    pub node: String,
    /// `sha256:` and the lowercase hex SHA-256 of the certificate's DER.
    pub fingerprint: String,
    /// When the certificate expires.
    pub not_after: SystemTime,
}

/// An agent's new key pair (ECDSA P-256) and a CSR for it, both PEM.
pub struct AgentKey {
    /// The private key, PKCS#8 PEM. Secret: write it with [`write_private`].
    pub key_pem: String,
    /// The certificate signing request, PEM.
    pub csr_pem: String,
}

/// Why a certificate, key or TLS configuration could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Only one of the CA's two files exists.
    #[error(
        "{present} exists but {missing} does not; refusing to create a new CA over half of an old one (restore the file, or remove both to start a new CA and re-enroll every agent)"
    )]
    IncompleteCa {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// A key file does not hold the key of its certificate.
    #[error("{key} does not hold the key of the certificate {cert}")]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// A CA key (given as PEM) is not the key of the CA certificate it was given with.
    #[error("the CA key does not belong to the CA certificate {fingerprint}")]
    CaKeyMismatch {
        /// The certificate's fingerprint.
        fingerprint: String,
    },
    /// A certificate given as a CA's is not one: no basicConstraints CA:true, or a key usage
    /// without keyCertSign.
    #[error(
        "the certificate {fingerprint} is not a CA certificate (it needs basicConstraints CA:true and, with a key usage, keyCertSign)"
    )]
    NotACa {
        /// The certificate's fingerprint.
        fingerprint: String,
    },
    /// A certificate could not be parsed.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(#[source] Malformed),
    /// A private key could not be parsed.
    #[error("invalid private key: {0}")]
    InvalidKey(#[source] Malformed),
    /// A CSR could not be parsed, or its self-signature does not verify.
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(#[source] Malformed),
    /// A fingerprint is not `sha256:` and 64 hex digits.
    #[error("invalid CA fingerprint `{0}`: expected `sha256:` and 64 hex digits")]
    InvalidFingerprint(String),
    /// A node name that cannot go into a certificate.
    #[error(
        "invalid node name `{0}`: a node name uses letters, digits, `.`, `_` and `-`, at most 253 characters"
    )]
    InvalidNodeName(String),
    /// A certificate has no subject common name.
    #[error("the certificate has no subject common name")]
    NoCommonName,
    /// Making a key or certificate failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// Building a TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Building a certificate verifier failed.
    #[error("TLS certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The system's random number generator failed. (Not a `#[source]`: without getrandom's
    /// `std` feature its error does not implement `std::error::Error`.)
    #[error("random number generator: {0}")]
    Random(getrandom::Error),
}

/// What is wrong with a certificate, key or CSR ([`PkiError::InvalidCertificate`],
/// [`PkiError::InvalidKey`], [`PkiError::InvalidCsr`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// Not PEM of the expected kind.
    #[error("{0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    /// Not DER of the expected structure.
    #[error("{0}")]
    Der(#[from] x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// A key or public key that does not load.
    #[error("{0}")]
    Key(#[from] rcgen::Error),
    /// Bytes after the structure.
    #[error("trailing bytes")]
    TrailingBytes,
    /// A subject common name that is not a string.
    #[error("subject common name: {0}")]
    CommonName(#[source] x509_parser::error::X509Error),
    /// A CSR whose self-signature does not verify.
    #[error("self-signature does not verify: {0}")]
    Signature(#[source] x509_parser::error::X509Error),
    /// A CSR whose public key does not load.
    #[error("public key: {0}")]
    PublicKey(#[source] rcgen::Error),
}

impl Ca {
    /// Loads `D/ca.key` + `D/ca.crt`, creating them on first start ([`Ca::generate`]), with
    /// [`Ca::from_pems`].
    ///
    /// Refuses (rather than replacing) a CA with only one of its two files, or whose key does
    /// not match its certificate: a new CA would cut off every enrolled agent.
    pub fn load_or_create(data_dir: &Path) -> Result<Ca, PkiError> {
        let key_path = data_dir.join("ca.key");
        let cert_path = data_dir.join("ca.crt");
        let key_exists = exists(&key_path)?;
        let cert_exists = exists(&cert_path)?;
        match (key_exists, cert_exists) {
            (true, true) => {}
            (false, false) => create_ca(&key_path, &cert_path)?,
            (true, false) => {
                return Err(PkiError::IncompleteCa {
                    present: key_path,
                    missing: cert_path,
                });
            }
            (false, true) => {
                return Err(PkiError::IncompleteCa {
                    present: cert_path,
                    missing: key_path,
                });
            }
        }
        let key_pem = Zeroizing::new(read_to_string(&key_path)?);
        let cert_pem = read_to_string(&cert_path)?;
        Ca::from_pems(&cert_pem, &key_pem).map_err(|err| match err {
            PkiError::CaKeyMismatch { .. } => PkiError::KeyMismatch {
                key: key_path,
                cert: cert_path,
            },
            other => other,
        })
    }

    /// Makes a new CA (ECDSA P-256, CN "steward CA", 10-year lifetime, CA:true pathlen 0,
    /// keyCertSign) and returns its certificate PEM and its key PEM (PKCS#8). Writes nothing:
    /// the caller keeps the pair where its controllers find it, the key sealed or in a file
    /// written with [`write_private`].
    pub fn generate() -> Result<(String, Zeroizing<String>), PkiError> {
        let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(CA_COMMON_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_LIFETIME);
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key_pair)?;
        Ok((cert.pem(), Zeroizing::new(key_pair.serialize_pem())))
    }

    /// The CA of a certificate and its key, both PEM (as [`Ca::generate`] makes them).
    ///
    /// Refuses a key that is not the certificate's ([`PkiError::CaKeyMismatch`]), a
    /// certificate that is not a CA's ([`PkiError::NotACa`]), and PEM that does not parse
    /// ([`PkiError::InvalidCertificate`], [`PkiError::InvalidKey`]).
    pub fn from_pems(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let cert_der = parse_cert_pem(cert_pem)?;
        let cert = parse_cert_der(&cert_der)?;
        let fingerprint = fingerprint_of(&cert_der);
        let key_pair = KeyPair::from_pem(key_pem).map_err(|e| PkiError::InvalidKey(e.into()))?;
        if cert.public_key().subject_public_key.data.as_ref() != key_pair.public_key_raw() {
            return Err(PkiError::CaKeyMismatch { fingerprint });
        }
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(basic)) if basic.value.ca);
        let may_sign = match cert.key_usage() {
            Ok(Some(usage)) => usage.value.key_cert_sign(),
            Ok(None) => true,
            Err(_) => false,
        };
        if !is_ca || !may_sign {
            return Err(PkiError::NotACa { fingerprint });
        }
        drop(cert);
        let issuer = Issuer::from_ca_cert_der(&cert_der, key_pair)?;
        Ok(Ca {
            issuer,
            cert_pem: cert_pem.to_string(),
            cert_der,
            fingerprint,
        })
    }

    /// The CA's private key, PKCS#8 PEM: secret, to be sealed
    /// ([`crate::fleet::seal::KeyFile::seal`]) or written with [`write_private`], never logged.
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.issuer.key().serialize_pem())
    }

    /// `sha256:` + lowercase hex of the CA certificate's DER.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The TLS server config of the agent port.
    ///
    /// The server certificate (`D/server.key`, `D/server.crt`, signed by this CA, serverAuth,
    /// SANs = `names` plus "localhost" and 127.0.0.1, each an IP address when it parses as
    /// one, else a DNS name) is created on first use and re-created when missing, unreadable,
    /// not issued by this CA, expiring within 30 days, or when its SANs differ.
    ///
    /// The chain presented is [server certificate, CA certificate]: an enrolling agent pins
    /// the CA by fingerprint, so the CA certificate must be in it. Client certificates are
    /// optional at the TLS level (an enrolling agent has none), but one that is presented
    /// must chain to this CA. Whether an unauthenticated connection may do anything but
    /// enroll is the caller's decision. ALPN: [`ALPN`].
    pub fn server_config(
        &self,
        data_dir: &Path,
        names: &[String],
    ) -> Result<Arc<ServerConfig>, PkiError> {
        let key_path = data_dir.join("server.key");
        let cert_path = data_dir.join("server.crt");
        let wanted = server_names(names);
        let (key_pem, cert_der) = match self.usable_server_cert(&key_path, &cert_path, &wanted) {
            Some(found) => found,
            None => self.create_server_cert(&key_path, &cert_path, &wanted)?,
        };
        let key_der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| PkiError::InvalidKey(e.into()))?;
        let provider = provider();
        let mut roots = RootCertStore::empty();
        roots.add(self.cert_der.clone())?;
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(vec![cert_der, self.cert_der.clone()], key_der)?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Arc::new(config))
    }

    /// Signs an agent's certificate for the approved node name `node`, valid for `lifetime`.
    /// Returns the certificate PEM.
    ///
    /// Only the CSR's public key is used, after its self-signature verifies. The certificate
    /// is built here: subject CN = `node`, CA:false, keyUsage digitalSignature, extended key
    /// usage clientAuth only, a random serial. Names and extensions the CSR asks for are
    /// ignored.
    pub fn sign_agent(
        &self,
        node: &str,
        csr_pem: &str,
        lifetime: Duration,
    ) -> Result<String, PkiError> {
        check_node_name(node)?;
        let public_key = csr_public_key(csr_pem)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(node);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, lifetime);
        params.serial_number = Some(random_serial()?);
        let cert = params.signed_by(&public_key, &self.issuer)?;
        Ok(cert.pem())
    }

    /// The server key PEM and certificate DER at these paths, when they can be used as they
    /// are.
    fn usable_server_cert(
        &self,
        key_path: &Path,
        cert_path: &Path,
        wanted: &BTreeSet<String>,
    ) -> Option<(String, CertificateDer<'static>)> {
        let key_pem = std::fs::read_to_string(key_path).ok()?;
        let cert_pem = std::fs::read_to_string(cert_path).ok()?;
        let key_pair = KeyPair::from_pem(&key_pem).ok()?;
        let cert_der = parse_cert_pem(&cert_pem).ok()?;
        let cert = parse_cert_der(&cert_der).ok()?;
        let ca_cert = parse_cert_der(&self.cert_der).ok()?;
        let renew_at = SystemTime::now() + SERVER_RENEW_BEFORE;
        let usable = cert.public_key().subject_public_key.data.as_ref()
            == key_pair.public_key_raw()
            && cert.verify_signature(Some(ca_cert.public_key())).is_ok()
            && to_system_time(cert.validity().not_after.timestamp()) > renew_at
            && cert_names(&cert) == *wanted;
        drop(cert);
        usable.then_some((key_pem, cert_der))
    }

    /// Makes and writes a new server key and certificate.
    fn create_server_cert(
        &self,
        key_path: &Path,
        cert_path: &Path,
        wanted: &BTreeSet<String>,
    ) -> Result<(String, CertificateDer<'static>), PkiError> {
        let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name("steward controller");
        params.subject_alt_names = wanted
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(name.clone().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, SERVER_LIFETIME);
        params.serial_number = Some(random_serial()?);
        let cert = params.signed_by(&key_pair, &self.issuer)?;
        let key_pem = key_pair.serialize_pem();
        // The key first: a crash in between leaves a key that does not match the old
        // certificate, which the next start notices and replaces.
        write_private(key_path, key_pem.as_bytes())?;
        write_private(cert_path, cert.pem().as_bytes())?;
        Ok((key_pem, cert.der().clone()))
    }
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Ca")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// What a certificate (DER) says about its holder. The caller has verified the certificate
/// (the TLS handshake did); this only reads it.
pub fn peer_identity(cert_der: &[u8]) -> Result<PeerIdentity, PkiError> {
    let cert = parse_cert_der(cert_der)?;
    let node = cert
        .subject()
        .iter_common_name()
        .next()
        .ok_or(PkiError::NoCommonName)?
        .as_str()
        .map_err(|e| PkiError::InvalidCertificate(Malformed::CommonName(e)))?
        .to_string();
    Ok(PeerIdentity {
        node,
        fingerprint: fingerprint_of(cert_der),
        not_after: to_system_time(cert.validity().not_after.timestamp()),
    })
}

/// Makes an agent's key pair (ECDSA P-256) and a CSR for it naming `node`. The CA ignores
/// the name (it signs the name it approved); it is there for people reading the CSR.
pub fn new_agent_key(node: &str) -> Result<AgentKey, PkiError> {
    check_node_name(node)?;
    let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(node);
    let csr = params.serialize_request(&key_pair)?;
    Ok(AgentKey {
        key_pem: key_pair.serialize_pem(),
        csr_pem: csr.pem()?,
    })
}

/// The client TLS config for enrollment, when the agent knows only the CA's fingerprint
/// (`sha256:` + hex, from the join token).
///
/// The server is accepted only when the chain it presents contains a certificate whose DER
/// hashes to the fingerprint, and its end-entity certificate verifies (webpki, for the
/// server name dialed) with that certificate as the only trust anchor. No client
/// certificate. ALPN: [`ALPN`].
pub fn enroll_client_config(ca_fingerprint: &str) -> Result<Arc<ClientConfig>, PkiError> {
    let pinned = parse_fingerprint(ca_fingerprint)?;
    let provider = provider();
    let verifier = PinnedCaVerifier {
        fingerprint: pinned,
        provider: provider.clone(),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The client TLS config of the mutually authenticated connection: trusts only `ca_pem`,
/// presents `cert_pem` with `key_pem`. ALPN: [`ALPN`].
pub fn agent_client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ClientConfig>, PkiError> {
    let mut roots = RootCertStore::empty();
    roots.add(parse_cert_pem(ca_pem)?)?;
    let cert_der = parse_cert_pem(cert_pem)?;
    let key_der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| PkiError::InvalidKey(e.into()))?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert_der], key_der)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The notAfter of a PEM certificate (for renewal decisions).
pub fn not_after(cert_pem: &str) -> Result<SystemTime, PkiError> {
    let cert_der = parse_cert_pem(cert_pem)?;
    let cert = parse_cert_der(&cert_der)?;
    Ok(to_system_time(cert.validity().not_after.timestamp()))
}

/// The notBefore and notAfter of a PEM certificate.
pub fn validity(cert_pem: &str) -> Result<(SystemTime, SystemTime), PkiError> {
    let cert_der = parse_cert_pem(cert_pem)?;
    let cert = parse_cert_der(&cert_der)?;
    Ok((
        to_system_time(cert.validity().not_before.timestamp()),
        to_system_time(cert.validity().not_after.timestamp()),
    ))
}

/// True when a certificate has less than a third of its lifetime left: time to renew.
pub fn due_for_renewal(cert_pem: &str, now: SystemTime) -> bool {
    match validity(cert_pem) {
        Ok((not_before, not_after)) => {
            let lifetime = not_after.duration_since(not_before).unwrap_or_default();
            not_after
                .duration_since(now)
                .map_or(true, |left| left < lifetime / 3)
        }
        Err(_) => false,
    }
}

/// Writes `bytes` to `path` atomically as a file of mode 0600, creating its directory (and
/// missing parents) with mode 0700.
///
/// The file is created with mode 0600 (never chmod'ed after), in the same directory, then
/// synced and renamed over `path`; the directory is synced after. An existing directory's
/// mode is left as it is.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let io_err = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| PkiError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    let mut temp = tempfile::Builder::new()
        .prefix(".steward-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io_err)?;
    temp.write_all(bytes).map_err(io_err)?;
    temp.as_file().sync_all().map_err(io_err)?;
    temp.persist(path).map_err(|e| io_err(e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| PkiError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    Ok(())
}

/// Accepts a server whose chain holds the pinned CA certificate and verifies against it.
#[derive(Debug)]
struct PinnedCaVerifier {
    /// SHA-256 of the CA certificate's DER.
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned = std::iter::once(end_entity)
            .chain(intermediates)
            .find(|cert| Sha256::digest(cert.as_ref()).as_slice() == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                    rustls::OtherError(Arc::new(PinError)),
                ))
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(pinned.clone().into_owned())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The server presented no certificate with the pinned fingerprint.
#[derive(Debug)]
struct PinError;

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the server's chain holds no CA certificate with the join token's fingerprint")
    }
}

impl std::error::Error for PinError {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn create_ca(key_path: &Path, cert_path: &Path) -> Result<(), PkiError> {
    let (cert_pem, key_pem) = Ca::generate()?;
    // The certificate last: its presence means the pair is complete.
    write_private(key_path, key_pem.as_bytes())?;
    write_private(cert_path, cert_pem.as_bytes())?;
    Ok(())
}

/// The CSR's public key, after its self-signature verifies. Nothing else of the CSR is read.
fn csr_public_key(csr_pem: &str) -> Result<rcgen::SubjectPublicKeyInfo, PkiError> {
    let csr_der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| PkiError::InvalidCsr(e.into()))?;
    let (rest, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&csr_der)
            .map_err(|e| PkiError::InvalidCsr(e.into()))?;
    if !rest.is_empty() {
        return Err(PkiError::InvalidCsr(Malformed::TrailingBytes));
    }
    csr.verify_signature()
        .map_err(|e| PkiError::InvalidCsr(Malformed::Signature(e)))?;
    rcgen::SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|e| PkiError::InvalidCsr(Malformed::PublicKey(e)))
}

/// A node name goes into a certificate's CN: the documents' rule for node names.
fn check_node_name(node: &str) -> Result<(), PkiError> {
    let valid = !node.is_empty()
        && node.len() <= 253
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(PkiError::InvalidNodeName(node.escape_debug().to_string()))
    }
}

fn common_name(name: &str) -> DistinguishedName {
    let mut res = DistinguishedName::new();
    res.push(DnType::CommonName, name);
    res
}

fn set_validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = SystemTime::now();
    params.not_before = (now - CLOCK_SKEW).into();
    params.not_after = (now + lifetime).into();
}

/// 16 random bytes, positive and non-zero (RFC 5280 4.1.2.2).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(PkiError::Random)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The SANs a server certificate must carry for `names`, normalized for comparison.
fn server_names(names: &[String]) -> BTreeSet<String> {
    names
        .iter()
        .map(String::as_str)
        .chain(ALWAYS_SERVER_NAMES)
        .map(normalize_name)
        .collect()
}

fn normalize_name(name: &str) -> String {
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => name.to_ascii_lowercase(),
    }
}

/// A certificate's DNS and IP SANs, normalized like [`server_names`].
fn cert_names(cert: &X509Certificate<'_>) -> BTreeSet<String> {
    let mut res = BTreeSet::new();
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return res;
    };
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(dns) => {
                res.insert(normalize_name(dns));
            }
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                    _ => None,
                };
                match ip {
                    Some(ip) => res.insert(ip.to_string()),
                    // An address we cannot read never matches a wanted name.
                    None => res.insert(format!("invalid:{}", hex::encode(bytes))),
                };
            }
            _ => {}
        }
    }
    res
}

fn parse_fingerprint(text: &str) -> Result<[u8; 32], PkiError> {
    let invalid = || PkiError::InvalidFingerprint(text.escape_debug().to_string());
    let digits = text.strip_prefix("sha256:").ok_or_else(invalid)?;
    if digits.len() != 64 {
        return Err(invalid());
    }
    let mut res = [0u8; 32];
    hex::decode_to_slice(digits, &mut res).map_err(|_| invalid())?;
    Ok(res)
}

/// `sha256:` and the lowercase hex SHA-256 of `der`.
fn fingerprint_of(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

fn parse_cert_pem(pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::InvalidCertificate(e.into()))
}

fn parse_cert_der(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::InvalidCertificate(e.into()))?;
    if !rest.is_empty() {
        return Err(PkiError::InvalidCertificate(Malformed::TrailingBytes));
    }
    Ok(cert)
}

fn to_system_time(unix_seconds: i64) -> SystemTime {
    match u64::try_from(unix_seconds) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH - Duration::from_secs(unix_seconds.unsigned_abs()),
    }
}

fn exists(path: &Path) -> Result<bool, PkiError> {
    path.try_exists().map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_to_string(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use rustls::{ClientConnection, ServerConnection};

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    fn localhost() -> ServerName<'static> {
        ServerName::try_from("localhost").unwrap()
    }

    /// Pumps a handshake between the two configs in memory. Returns the server connection
    /// when both sides finished, or the first error either side hit.
    fn handshake(
        client_config: Arc<ClientConfig>,
        server_config: Arc<ServerConfig>,
        server_name: ServerName<'static>,
    ) -> Result<ServerConnection, rustls::Error> {
        let mut client = ClientConnection::new(client_config, server_name)?;
        let mut server = ServerConnection::new(server_config)?;
        for _ in 0..20 {
            let mut n_bytes = 0;
            let mut buf = Vec::new();
            while client.wants_write() {
                n_bytes += client.write_tls(&mut buf).unwrap();
            }
            let mut reader = buf.as_slice();
            while !reader.is_empty() {
                server.read_tls(&mut reader).unwrap();
                server.process_new_packets()?;
            }
            let mut buf = Vec::new();
            while server.wants_write() {
                n_bytes += server.write_tls(&mut buf).unwrap();
            }
            let mut reader = buf.as_slice();
            while !reader.is_empty() {
                client.read_tls(&mut reader).unwrap();
                client.process_new_packets()?;
            }
            if n_bytes == 0 && !client.is_handshaking() && !server.is_handshaking() {
                assert_eq!(server.alpn_protocol(), Some(ALPN));
                assert_eq!(client.alpn_protocol(), Some(ALPN));
                return Ok(server);
            }
        }
        panic!("handshake did not finish");
    }

    fn agent_cert(ca: &Ca, node: &str) -> (String, String) {
        let agent_key = new_agent_key(node).unwrap();
        let cert_pem = ca.sign_agent(node, &agent_key.csr_pem, DAY).unwrap();
        (cert_pem, agent_key.key_pem)
    }

    #[test]
    fn enrollment_accepts_the_pinned_ca_and_refuses_another() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(&dir.path().join("pki")).unwrap();
        let server_config = ca.server_config(&dir.path().join("pki"), &[]).unwrap();

        let right = enroll_client_config(&ca.fingerprint()).unwrap();
        let server = handshake(right, server_config.clone(), localhost()).unwrap();
        assert!(server.peer_certificates().is_none());

        let other_dir = tempfile::tempdir().unwrap();
        let other_ca = Ca::load_or_create(other_dir.path()).unwrap();
        let wrong = enroll_client_config(&other_ca.fingerprint()).unwrap();
        let err = handshake(wrong, server_config.clone(), localhost()).unwrap_err();
        let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) = &err else {
            panic!("{err:?}");
        };
        assert!(other.0.to_string().contains("fingerprint"), "{other}");

        // The pin alone is not enough: the server certificate must be valid for the name.
        let right = enroll_client_config(&ca.fingerprint()).unwrap();
        let name = ServerName::try_from("elsewhere.example").unwrap();
        let err = handshake(right, server_config, name).unwrap_err();
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "{err:?}"
        );
    }

    #[test]
    fn enrollment_refuses_a_server_that_only_shows_the_pinned_ca() {
        // A server that presents the real CA certificate beside a certificate the CA did not
        // sign.
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let impostor_dir = tempfile::tempdir().unwrap();
        let impostor = Ca::load_or_create(impostor_dir.path()).unwrap();
        impostor.server_config(impostor_dir.path(), &[]).unwrap();
        let key_pem = std::fs::read_to_string(impostor_dir.path().join("server.key")).unwrap();
        let cert_pem = std::fs::read_to_string(impostor_dir.path().join("server.crt")).unwrap();
        let server_config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![parse_cert_pem(&cert_pem).unwrap(), ca.cert_der.clone()],
                PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        let mut server_config = server_config;
        server_config.alpn_protocols = vec![ALPN.to_vec()];
        let client = enroll_client_config(&ca.fingerprint()).unwrap();
        let err = handshake(client, Arc::new(server_config), localhost()).unwrap_err();
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "{err:?}"
        );
    }

    #[test]
    fn mutual_tls_with_a_signed_agent_and_refusal_of_another_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let server_config = ca
            .server_config(dir.path(), &["controller.example".into()])
            .unwrap();

        let (cert_pem, key_pem) = agent_cert(&ca, "web-1");
        let client = agent_client_config(ca.cert_pem(), &cert_pem, &key_pem).unwrap();
        let name = ServerName::try_from("controller.example").unwrap();
        let server = handshake(client, server_config.clone(), name).unwrap();
        let peer = &server.peer_certificates().unwrap()[0];
        let identity = peer_identity(peer).unwrap();
        assert_eq!(identity.node, "web-1");
        assert_eq!(identity.fingerprint, fingerprint_of(peer));
        assert_eq!(identity.not_after, not_after(&cert_pem).unwrap());

        let other_dir = tempfile::tempdir().unwrap();
        let other_ca = Ca::load_or_create(other_dir.path()).unwrap();
        let (cert_pem, key_pem) = agent_cert(&other_ca, "web-1");
        // The agent trusts the real CA; its certificate is from another one.
        let client = agent_client_config(ca.cert_pem(), &cert_pem, &key_pem).unwrap();
        let err = handshake(client, server_config, localhost()).unwrap_err();
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "{err:?}"
        );
    }

    #[test]
    fn the_agent_refuses_a_server_from_another_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let other_ca = Ca::load_or_create(other_dir.path()).unwrap();
        let server_config = other_ca.server_config(other_dir.path(), &[]).unwrap();
        let (cert_pem, key_pem) = agent_cert(&ca, "web-1");
        let client = agent_client_config(ca.cert_pem(), &cert_pem, &key_pem).unwrap();
        let err = handshake(client, server_config, localhost()).unwrap_err();
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "{err:?}"
        );
    }

    #[test]
    fn a_csr_gets_only_its_public_key_signed() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        // A greedy CSR: another CN, CA:true, serverAuth, extra names, keyCertSign.
        let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["controller.example".to_string()]).unwrap();
        params.distinguished_name = common_name("steward CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let csr_pem = params.serialize_request(&key_pair).unwrap().pem().unwrap();

        let cert_pem = ca.sign_agent("web-1", &csr_pem, DAY).unwrap();
        let cert_der = parse_cert_pem(&cert_pem).unwrap();
        let cert = parse_cert_der(&cert_der).unwrap();
        let cns: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|cn| cn.as_str().unwrap().to_string())
            .collect();
        assert_eq!(cns, ["web-1"]);
        assert_eq!(cert.subject().iter().count(), 1);
        let basic = cert.basic_constraints().unwrap().unwrap().value;
        assert!(!basic.ca);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth);
        assert!(!eku.server_auth && !eku.any && eku.other.is_empty());
        let key_usage = cert.key_usage().unwrap().unwrap().value;
        assert!(key_usage.digital_signature() && !key_usage.key_cert_sign());
        assert!(cert.subject_alternative_name().unwrap().is_none());
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key_pair.public_key_raw()
        );
        let lifetime =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(lifetime, (DAY + CLOCK_SKEW).as_secs() as i64);
        // Verifies against the CA.
        let ca_cert = parse_cert_der(&ca.cert_der).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    }

    #[test]
    fn serials_are_random() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let agent_key = new_agent_key("web-1").unwrap();
        let serial = |pem: &str| {
            let der = parse_cert_pem(pem).unwrap();
            parse_cert_der(&der).unwrap().raw_serial().to_vec()
        };
        let first = serial(&ca.sign_agent("web-1", &agent_key.csr_pem, DAY).unwrap());
        let second = serial(&ca.sign_agent("web-1", &agent_key.csr_pem, DAY).unwrap());
        assert_ne!(first, second);
        assert!(first.len() >= 16);
    }

    #[test]
    fn a_csr_with_a_bad_signature_or_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let agent_key = new_agent_key("web-1").unwrap();
        let mut der = CertificateSigningRequestDer::from_pem_slice(agent_key.csr_pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
        // The last byte is in the signature.
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let tampered = pem_encode("CERTIFICATE REQUEST", &der);
        for csr_pem in [tampered.as_str(), "", "not a csr", ca.cert_pem()] {
            let err = ca.sign_agent("web-1", csr_pem, DAY).unwrap_err();
            assert!(matches!(err, PkiError::InvalidCsr(_)), "{csr_pem}: {err}");
        }
        for node in ["", "a b", "web/1", "ünï", &"a".repeat(254)] {
            let err = ca.sign_agent(node, &agent_key.csr_pem, DAY).unwrap_err();
            assert!(matches!(err, PkiError::InvalidNodeName(_)), "{node}: {err}");
        }
    }

    fn pem_encode(label: &str, der: &[u8]) -> String {
        use std::fmt::Write as _;
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut body = String::new();
        for chunk in der.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for idx in 0..4 {
                if idx <= chunk.len() {
                    body.push(B64[((n >> (18 - 6 * idx)) & 63) as usize] as char);
                } else {
                    body.push('=');
                }
            }
        }
        let mut res = format!("-----BEGIN {label}-----\n");
        for line in body.as_bytes().chunks(64) {
            writeln!(res, "{}", std::str::from_utf8(line).unwrap()).unwrap();
        }
        writeln!(res, "-----END {label}-----").unwrap();
        res
    }

    #[test]
    fn files_are_0600_in_a_0700_directory() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data").join("pki");
        let ca = Ca::load_or_create(&data_dir).unwrap();
        ca.server_config(&data_dir, &["10.0.0.1".into()]).unwrap();
        for dir in [dir.path().join("data"), data_dir.clone()] {
            assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        }
        let mut names: Vec<_> = std::fs::read_dir(&data_dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["ca.crt", "ca.key", "server.crt", "server.key"]);
        for name in names {
            let mode = std::fs::metadata(data_dir.join(&name)).unwrap().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        // Replacing keeps the mode, and leaves no temporary file.
        write_private(&data_dir.join("ca.crt"), ca.cert_pem().as_bytes()).unwrap();
        let mode = std::fs::metadata(data_dir.join("ca.crt")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(&data_dir).unwrap().count(), 4);
    }

    #[test]
    fn the_ca_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = Ca::load_or_create(dir.path()).unwrap();
        let second = Ca::load_or_create(dir.path()).unwrap();
        assert_eq!(first.fingerprint(), second.fingerprint());
        assert_eq!(first.cert_pem(), second.cert_pem());
        assert!(first.fingerprint().starts_with("sha256:"));
        assert_eq!(first.fingerprint().len(), "sha256:".len() + 64);
        // A certificate signed by the first loads verifies under the second.
        let (cert_pem, _) = agent_cert(&first, "web-1");
        let cert_der = parse_cert_pem(&cert_pem).unwrap();
        let ca_cert = parse_cert_der(&second.cert_der).unwrap();
        let cert = parse_cert_der(&cert_der).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();

        let ca = parse_cert_der(&first.cert_der).unwrap();
        let basic = ca.basic_constraints().unwrap().unwrap().value;
        assert!(basic.ca);
        assert_eq!(basic.path_len_constraint, Some(0));
        let cn = ca.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), CA_COMMON_NAME);
    }

    #[test]
    fn a_generated_ca_rebuilt_from_its_pems_signs_for_the_original() {
        let (cert_pem, key_pem) = Ca::generate().unwrap();
        let original = Ca::from_pems(&cert_pem, &key_pem).unwrap();
        // Rebuilt from what it hands out, as a second controller does from the database.
        let rebuilt = Ca::from_pems(original.cert_pem(), &original.key_pem()).unwrap();
        assert_eq!(rebuilt.fingerprint(), original.fingerprint());
        assert_eq!(rebuilt.cert_pem(), cert_pem);
        assert!(!format!("{rebuilt:?}").contains("PRIVATE KEY"));

        // An agent signed by the rebuilt CA verifies against the original certificate.
        let (agent_pem, _) = agent_cert(&rebuilt, "web-1");
        let agent_der = parse_cert_pem(&agent_pem).unwrap();
        let agent = parse_cert_der(&agent_der).unwrap();
        let ca_cert = parse_cert_der(&original.cert_der).unwrap();
        agent.verify_signature(Some(ca_cert.public_key())).unwrap();

        // Two controllers, each with its own data dir and server certificate, one CA: an
        // agent enrolled by one is accepted by the other, and trusts it.
        let first_dir = tempfile::tempdir().unwrap();
        let second_dir = tempfile::tempdir().unwrap();
        original.server_config(first_dir.path(), &[]).unwrap();
        let second_server = rebuilt.server_config(second_dir.path(), &[]).unwrap();
        let server_crt = |dir: &tempfile::TempDir| {
            std::fs::read_to_string(dir.path().join("server.crt")).unwrap()
        };
        assert_ne!(server_crt(&first_dir), server_crt(&second_dir));
        let (agent_pem, agent_key) = agent_cert(&original, "web-2");
        let client = agent_client_config(original.cert_pem(), &agent_pem, &agent_key).unwrap();
        let server = handshake(client, second_server, localhost()).unwrap();
        let peer = &server.peer_certificates().unwrap()[0];
        assert_eq!(peer_identity(peer).unwrap().node, "web-2");
        // An enrolling agent pinning the fingerprint accepts the second controller too.
        let client = enroll_client_config(&original.fingerprint()).unwrap();
        handshake(
            client,
            rebuilt.server_config(second_dir.path(), &[]).unwrap(),
            localhost(),
        )
        .unwrap();

        // What generate makes is what load_or_create writes and reads.
        let dir = tempfile::tempdir().unwrap();
        let from_files = Ca::load_or_create(dir.path()).unwrap();
        let read = |name| std::fs::read_to_string(dir.path().join(name)).unwrap();
        let again = Ca::from_pems(&read("ca.crt"), &read("ca.key")).unwrap();
        assert_eq!(again.fingerprint(), from_files.fingerprint());
        assert_eq!(*from_files.key_pem(), read("ca.key"));
    }

    #[test]
    fn from_pems_refuses_another_cas_key_a_non_ca_and_garbage() {
        let (cert_pem, key_pem) = Ca::generate().unwrap();
        let (other_cert_pem, other_key_pem) = Ca::generate().unwrap();
        let ca = Ca::from_pems(&cert_pem, &key_pem).unwrap();

        let err = Ca::from_pems(&cert_pem, &other_key_pem).unwrap_err();
        assert!(
            matches!(&err, PkiError::CaKeyMismatch { fingerprint } if *fingerprint == ca.fingerprint()),
            "{err:?}"
        );
        assert!(err.to_string().contains(&ca.fingerprint()), "{err}");
        let err = Ca::from_pems(&other_cert_pem, &key_pem).unwrap_err();
        assert!(matches!(err, PkiError::CaKeyMismatch { .. }), "{err:?}");

        // An agent's certificate with its own key is not a CA.
        let (agent_pem, agent_key) = agent_cert(&ca, "web-1");
        let err = Ca::from_pems(&agent_pem, &agent_key).unwrap_err();
        assert!(matches!(err, PkiError::NotACa { .. }), "{err:?}");
        // Nor is a certificate with CA:true whose key usage leaves out keyCertSign.
        let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key_pair).unwrap();
        let err = Ca::from_pems(&cert.pem(), &key_pair.serialize_pem()).unwrap_err();
        assert!(matches!(err, PkiError::NotACa { .. }), "{err:?}");

        for garbage in [
            "",
            "garbage",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            let err = Ca::from_pems(garbage, &key_pem).unwrap_err();
            assert!(matches!(err, PkiError::InvalidCertificate(_)), "{err:?}");
            assert!(
                err.to_string().starts_with("invalid certificate: "),
                "{err}"
            );
            let err = Ca::from_pems(&cert_pem, garbage).unwrap_err();
            assert!(matches!(err, PkiError::InvalidKey(_)), "{err:?}");
            assert!(
                err.to_string().starts_with("invalid private key: "),
                "{err}"
            );
        }
        // The two swapped.
        let err = Ca::from_pems(&key_pem, &cert_pem).unwrap_err();
        assert!(matches!(err, PkiError::InvalidCertificate(_)), "{err:?}");
    }

    #[test]
    fn a_ca_whose_files_do_not_match_is_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        Ca::load_or_create(dir.path()).unwrap();
        let (_, other_key_pem) = Ca::generate().unwrap();
        write_private(&dir.path().join("ca.key"), other_key_pem.as_bytes()).unwrap();
        let err = Ca::load_or_create(dir.path()).unwrap_err();
        assert!(
            matches!(&err, PkiError::KeyMismatch { key, cert }
                if *key == dir.path().join("ca.key") && *cert == dir.path().join("ca.crt")),
            "{err:?}"
        );
    }

    #[test]
    fn half_a_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Ca::load_or_create(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join("ca.key")).unwrap();
        let err = Ca::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, PkiError::IncompleteCa { .. }), "{err}");
        assert!(!dir.path().join("ca.key").exists());
    }

    #[test]
    fn the_server_certificate_is_kept_or_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let names = vec!["Controller.Example".to_string(), "10.1.2.3".to_string()];
        let server_crt = dir.path().join("server.crt");
        ca.server_config(dir.path(), &names).unwrap();
        let first = std::fs::read_to_string(&server_crt).unwrap();
        let der = parse_cert_pem(&first).unwrap();
        let cert = parse_cert_der(&der).unwrap();
        let wanted: BTreeSet<String> = ["controller.example", "10.1.2.3", "localhost", "127.0.0.1"]
            .map(String::from)
            .into();
        assert_eq!(cert_names(&cert), wanted);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);

        // Same names (in another order and case): kept.
        let same = vec!["10.1.2.3".to_string(), "controller.example".to_string()];
        ca.server_config(dir.path(), &same).unwrap();
        assert_eq!(std::fs::read_to_string(&server_crt).unwrap(), first);

        // Other names: renewed.
        ca.server_config(dir.path(), &["other.example".into()])
            .unwrap();
        let second = std::fs::read_to_string(&server_crt).unwrap();
        assert_ne!(second, first);

        // Missing: renewed.
        std::fs::remove_file(&server_crt).unwrap();
        ca.server_config(dir.path(), &["other.example".into()])
            .unwrap();
        assert_ne!(std::fs::read_to_string(&server_crt).unwrap(), second);

        // Signed by another CA (the CA was replaced): renewed.
        let other_dir = tempfile::tempdir().unwrap();
        let other_ca = Ca::load_or_create(other_dir.path()).unwrap();
        let foreign = std::fs::read_to_string(&server_crt).unwrap();
        other_ca
            .server_config(dir.path(), &["other.example".into()])
            .unwrap();
        assert_ne!(std::fs::read_to_string(&server_crt).unwrap(), foreign);
    }

    #[test]
    fn a_server_certificate_near_its_end_is_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        // Write a server certificate that expires in 10 days.
        let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        set_validity(&mut params, 10 * DAY);
        let cert = params.signed_by(&key_pair, &ca.issuer).unwrap();
        write_private(
            &dir.path().join("server.key"),
            key_pair.serialize_pem().as_bytes(),
        )
        .unwrap();
        write_private(&dir.path().join("server.crt"), cert.pem().as_bytes()).unwrap();
        ca.server_config(dir.path(), &[]).unwrap();
        let now_pem = std::fs::read_to_string(dir.path().join("server.crt")).unwrap();
        assert_ne!(now_pem, cert.pem());
        assert!(not_after(&now_pem).unwrap() > SystemTime::now() + 300 * DAY);
    }

    #[test]
    fn fingerprints_are_checked() {
        for text in [
            "",
            "sha256:",
            "sha256:zz",
            "md5:00",
            &format!("sha256:{}", "g".repeat(64)),
        ] {
            let err = enroll_client_config(text).unwrap_err();
            assert!(
                matches!(err, PkiError::InvalidFingerprint(_)),
                "{text}: {err}"
            );
        }
        enroll_client_config(&format!("sha256:{}", "Ab".repeat(32))).unwrap();
    }

    #[test]
    fn the_ca_is_shareable_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Ca>();
    }
}
