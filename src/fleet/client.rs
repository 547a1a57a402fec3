//! The CLI's side of the HTTP API: `STEWARD_CONTROLLER` + `STEWARD_TOKEN_FILE`, and
//! `STEWARD_CA_FILE` for an API served over TLS.
//!
//! Owns [`Client`] and [`ClientError`]: every failure of a call is a typed value, and a call the
//! controller answered with an error status keeps that status ([`ClientError::status`]), so the
//! CLI decides what to do from the value and never parses the text.
//! It must not print anything or choose exit codes: that is `cli`'s job.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use base64::Engine;

use crate::fleet::api::NodeInfo;
use crate::fleet::command::{CommandEvent, CommandRequest, CommandResponse};
use crate::fleet::run::{BundleFile, Event, MAX_BUNDLE_BYTES, RunRequest, RunResponse};
use crate::fleet::wire::WireFacts;
use crate::schema::KnownNode;

/// A connection to a controller's API.
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// Largest API answer read into memory (reports of big runs).
const MAX_ANSWER: u64 = 256 * 1024 * 1024;

/// Why a call to the controller's API (or the preparation of one) failed.
///
/// The messages are what the CLI prints after `error: `.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No controller URL was given.
    #[error("no controller: set STEWARD_CONTROLLER (or --controller) to the API's URL")]
    NoController,
    /// No admin token file was given.
    #[error("STEWARD_TOKEN_FILE (or --token-file) must name the controller's admin.token")]
    NoTokenFile,
    /// The URL is neither `http://` nor `https://`.
    #[error("STEWARD_CONTROLLER `{0}` must be an http:// or https:// URL of the controller's API")]
    BadUrl(String),
    /// An `https://` URL without a host.
    #[error("STEWARD_CONTROLLER `{0}` has no host")]
    NoHost(String),
    /// An `https://` URL without a CA file to trust it through.
    #[error(
        "STEWARD_CONTROLLER `{0}` is https: set STEWARD_CA_FILE (or --ca-file) to the \
         controller's CA certificate, DATA_DIR/ca.crt, to trust its certificate"
    )]
    NoCaFile(String),
    /// A plain `http://` URL to another machine: the token would cross the network in clear.
    #[error(
        "refusing to send the admin token over plain HTTP to `{0}`, which is not this machine \
         (anyone on the path could read it): serve the API with `steward serve --http-tls` and \
         set STEWARD_CONTROLLER=https://... and STEWARD_CA_FILE=DATA_DIR/ca.crt, or reach it \
         through a tunnel to 127.0.0.1"
    )]
    PlainHttp(String),
    /// The admin token file could not be read.
    #[error("token file {}: {source}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The CA file could not be read.
    #[error("STEWARD_CA_FILE {}: {source}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The CA file is not PEM.
    #[error("STEWARD_CA_FILE {}: {source}", path.display())]
    CaPem {
        /// The file.
        path: PathBuf,
        /// Why it does not parse.
        source: ureq::Error,
    },
    /// The CA file holds no certificate.
    #[error(
        "STEWARD_CA_FILE {}: no PEM certificate in it (use the controller's DATA_DIR/ca.crt)",
        .0.display()
    )]
    NoCaCertificate(PathBuf),
    /// The TLS handshake with the controller failed: most likely the wrong CA or host name.
    #[error(
        "controller {base}: {source} (is STEWARD_CA_FILE the controller's DATA_DIR/ca.crt, and \
         the host one of its certificate's names?)"
    )]
    Tls {
        /// The controller's URL.
        base: String,
        /// What failed.
        source: ureq::Error,
    },
    /// The controller could not be reached, or the exchange failed.
    #[error("controller {base}: {source}")]
    Transport {
        /// The controller's URL.
        base: String,
        /// What failed.
        source: ureq::Error,
    },
    /// The controller answered with an error status.
    #[error("controller answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: ureq::http::StatusCode,
        /// The `code` of the JSON error body (`not_found`, `conflict`, ...); `None` when the
        /// body was not one (an older controller, or a proxy in between).
        code: Option<String>,
        /// The error's message: the JSON error body's, or the body as text without a
        /// leading `error: `.
        message: String,
    },
    /// A successful answer's body could not be read.
    #[error("{0}")]
    Body(#[source] ureq::Error),
    /// A request body could not be encoded.
    #[error("{0}")]
    Encode(#[source] serde_json::Error),
    /// A stream of events broke off.
    #[error("controller: {0}")]
    Stream(#[source] std::io::Error),
    /// An event of a stream is not JSON of the expected shape.
    #[error("controller sent a malformed event: {0}")]
    MalformedEvent(#[source] serde_json::Error),
    /// The node list is not JSON of the expected shape.
    #[error("controller's node list: {0}")]
    MalformedNodes(#[source] serde_json::Error),
    /// A stream of events ended before its final event.
    #[error("the controller ended the stream early (did it restart?)")]
    EarlyEnd,
}

impl ClientError {
    /// The HTTP status when the controller answered with an error, else `None` (the call did
    /// not get that far).
    pub fn status(&self) -> Option<ureq::http::StatusCode> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The `code` of the controller's JSON error body, when it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// Why a project could not be bundled for upload ([`bundle`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// A project file whose path has no file name.
    #[error("{}: not a file name", .0.display())]
    NotAFileName(PathBuf),
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The project directory could not be walked.
    #[error("{0}")]
    Walk(#[from] walkdir::Error),
    /// A walked file is not under the project (it cannot happen with `walkdir`, but it is
    /// not worth a panic).
    #[error("{0}")]
    Outside(#[from] std::path::StripPrefixError),
    /// A file name that is not UTF-8, so cannot travel in JSON.
    #[error("{}: the name is not UTF-8", .0.display())]
    NotUtf8(PathBuf),
    /// The project is larger than a controller accepts.
    #[error(
        "{} is over the {MAX_BUNDLE_BYTES}-byte limit of a project sent to a controller",
        .0.display()
    )]
    TooLarge(PathBuf),
}

impl Client {
    /// A client for `url` (`http://HOST:PORT` or `https://HOST:PORT`) with the admin token read
    /// from `token_file`; an https URL is trusted through the CA certificate(s) in `ca_file`
    /// (the controller's `DATA_DIR/ca.crt`), and no other.
    ///
    /// Refuses, before connecting, to send the token over plain HTTP to anything but this
    /// machine (a loopback address or `localhost`).
    pub fn new(
        url: &str,
        token_file: Option<&Path>,
        ca_file: Option<&Path>,
    ) -> Result<Client, ClientError> {
        let Some(token_file) = token_file else {
            return Err(ClientError::NoTokenFile);
        };
        let tls = if let Some(rest) = url.strip_prefix("https://") {
            if host_of(rest).is_empty() {
                return Err(ClientError::NoHost(url.to_string()));
            }
            let Some(ca_file) = ca_file else {
                return Err(ClientError::NoCaFile(url.to_string()));
            };
            Some(tls_trusting(ca_file)?)
        } else if let Some(rest) = url.strip_prefix("http://") {
            let host = host_of(rest);
            if !is_loopback(host) {
                return Err(ClientError::PlainHttp(host.to_string()));
            }
            None
        } else {
            return Err(ClientError::BadUrl(url.to_string()));
        };
        let token = std::fs::read_to_string(token_file)
            .map_err(|source| ClientError::TokenFile {
                path: token_file.to_path_buf(),
                source,
            })?
            .trim()
            .to_string();
        let mut config = ureq::Agent::config_builder().http_status_as_error(false);
        if let Some(tls) = tls {
            config = config.tls_config(tls);
        }
        let agent: ureq::Agent = config.build().into();
        Ok(Client {
            base: url.trim_end_matches('/').to_string(),
            token,
            agent,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn check(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let base = self.base.clone();
        let mut response = response.map_err(|source| match source {
            ureq::Error::Rustls(_) | ureq::Error::Tls(_) => ClientError::Tls { base, source },
            source => ClientError::Transport { base, source },
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        let (code, message) = error_of(&body);
        Err(ClientError::Status {
            status,
            code,
            message,
        })
    }

    /// `GET path` as text (`Accept: text/plain`: the API answers JSON by default).
    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let response = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.bearer())
            .header("Accept", "text/plain")
            .call();
        self.text(response)
    }

    /// `GET path` as JSON.
    fn get_json(&self, path: &str) -> Result<String, ClientError> {
        let response = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.bearer())
            .header("Accept", "application/json")
            .call();
        self.text(response)
    }

    /// `POST path` (no body) as text.
    pub fn post_text(&self, path: &str) -> Result<String, ClientError> {
        let response = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.bearer())
            .header("Accept", "text/plain")
            // The API takes a change only as JSON, a body or not (docs/reference/api.md).
            .header("Content-Type", "application/json")
            .send_empty();
        self.text(response)
    }

    /// A successful answer's body as text.
    fn text(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, ClientError> {
        self.check(response)?
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(ClientError::Body)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// `steward node tag`: sets and removes a node's tags; the answer in `format` (`text` or
    /// `json`, the API's `?format=`).
    pub fn node_tags(
        &self,
        name: &str,
        request: &crate::fleet::api::TagRequest,
        format: &str,
    ) -> Result<String, ClientError> {
        let response = self
            .agent
            .post(self.url(&format!("/v1/nodes/{name}/tags?format={format}")))
            .header("Authorization", self.bearer())
            .header("Accept", "text/plain")
            .send_json(request);
        self.text(response)
    }

    /// `steward findings resolve ID [--note TEXT]`: the answer in `format` (`text` or `json`).
    pub fn resolve_finding(
        &self,
        id: i64,
        request: &crate::fleet::api::ResolveRequest,
        format: &str,
    ) -> Result<String, ClientError> {
        let response = self
            .agent
            .post(self.url(&format!("/v1/findings/{id}/resolve?format={format}")))
            .header("Authorization", self.bearer())
            .header("Accept", "text/plain")
            .send_json(request);
        self.text(response)
    }

    /// The inventory.
    pub fn nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        let text = self.get_json("/v1/nodes")?;
        serde_json::from_str(&text).map_err(ClientError::MalformedNodes)
    }

    /// The enrolled, unrevoked nodes as lowering sees them: their controller tags and the
    /// facts they last reported, so the CLI renders documents for the nodes the controller
    /// will (as `fleet::run` does with the store's copy).
    pub fn inventory(&self) -> Result<Vec<KnownNode>, ClientError> {
        Ok(self
            .nodes()?
            .into_iter()
            .filter(|node| node.revoked_at.is_none())
            .map(|node| KnownNode {
                facts: WireFacts::stored(&node.name, &node.facts),
                name: node.name,
                tags: node.tags,
            })
            .collect())
    }

    /// Starts a run and follows its progress to the end.
    pub fn run(
        &self,
        request: &RunRequest,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<RunResponse, ClientError> {
        let mut done = None;
        self.post_lines("/v1/runs", request, &mut |event: Event| match event {
            Event::Done(response) => done = Some(response),
            event => on_event(&event),
        })?;
        done.ok_or(ClientError::EarlyEnd)
    }

    /// Starts a command run and follows it to the end.
    pub fn command(
        &self,
        request: &CommandRequest,
        on_event: &mut dyn FnMut(&CommandEvent),
    ) -> Result<CommandResponse, ClientError> {
        let mut done = None;
        self.post_lines(
            "/v1/commands",
            request,
            &mut |event: CommandEvent| match event {
                CommandEvent::Done(response) => done = Some(response),
                event => on_event(&event),
            },
        )?;
        done.ok_or(ClientError::EarlyEnd)
    }

    /// POSTs `body` as JSON and hands each JSON line of the answer to `on_line`.
    fn post_lines<E: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        on_line: &mut dyn FnMut(E),
    ) -> Result<(), ClientError> {
        let body = serde_json::to_vec(body).map_err(ClientError::Encode)?;
        let response = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.bearer())
            .header("Content-Type", "application/json")
            .send(&body[..]);
        let mut response = self.check(response)?;
        let reader = BufReader::new(response.body_mut().with_config().limit(MAX_ANSWER).reader());
        for line in reader.lines() {
            let line = line.map_err(ClientError::Stream)?;
            if line.trim().is_empty() {
                continue;
            }
            let event: E = serde_json::from_str(&line).map_err(ClientError::MalformedEvent)?;
            on_line(event);
        }
        Ok(())
    }
}

/// The code and message of an error answer's body: the API's JSON error
/// (`{"error": {"code", "message"}}`), or else the text without a leading `error: `.
fn error_of(body: &str) -> (Option<String>, String) {
    match serde_json::from_str::<crate::fleet::api::ErrorBody>(body) {
        Ok(parsed) => (Some(parsed.error.code), parsed.error.message),
        Err(_) => (None, body.trim().trim_start_matches("error: ").to_string()),
    }
}

/// The host of `rest`, a URL after its `scheme://`: without user, port, path or brackets.
fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(bracketed) = host_port.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or("");
    }
    host_port.split(':').next().unwrap_or("")
}

/// True for `localhost` and loopback addresses (127.0.0.0/8, ::1).
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// TLS that trusts only the certificates in the PEM file `ca_file`.
fn tls_trusting(ca_file: &Path) -> Result<ureq::tls::TlsConfig, ClientError> {
    let pem = std::fs::read(ca_file).map_err(|source| ClientError::CaFile {
        path: ca_file.to_path_buf(),
        source,
    })?;
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(certificate)) => certificates.push(certificate),
            Ok(_) => {}
            Err(source) => {
                return Err(ClientError::CaPem {
                    path: ca_file.to_path_buf(),
                    source,
                });
            }
        }
    }
    if certificates.is_empty() {
        return Err(ClientError::NoCaCertificate(ca_file.to_path_buf()));
    }
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certificates))
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .build())
}

/// The files of a project, for upload: what `steward plan` would read, plus the templates
/// and sources beside them (hidden entries and `.steward/` are left out).
pub fn bundle(project: &Path) -> Result<Vec<BundleFile>, BundleError> {
    let engine = base64::engine::general_purpose::STANDARD;
    if project.is_file() {
        let name = project
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .ok_or_else(|| BundleError::NotAFileName(project.to_path_buf()))?;
        let bytes = std::fs::read(project).map_err(|source| BundleError::Read {
            path: project.to_path_buf(),
            source,
        })?;
        return Ok(vec![BundleFile {
            path: name,
            data: engine.encode(bytes),
        }]);
    }
    let mut files = Vec::new();
    let mut total = 0usize;
    let walker = walkdir::WalkDir::new(project)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            entry.depth() == 0 || !entry.file_name().to_string_lossy().starts_with('.')
        });
    for entry in walker {
        let entry = entry?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(project)?;
        let relative = relative
            .to_str()
            .ok_or_else(|| BundleError::NotUtf8(entry.path().to_path_buf()))?
            .to_string();
        let mut bytes = Vec::new();
        std::fs::File::open(entry.path())
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|source| BundleError::Read {
                path: entry.path().to_path_buf(),
                source,
            })?;
        total += bytes.len();
        if total > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge(project.to_path_buf()));
        }
        files.push(BundleFile {
            path: relative,
            data: engine.encode(bytes),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::{Client, ClientError, error_of, host_of, is_loopback};

    /// The messages of the errors found before any connection, as the CLI prints them.
    #[test]
    fn setup_errors_keep_their_messages() {
        let token = std::path::Path::new("/nonexistent/admin.token");
        let message = |url: &str, ca: Option<&str>| match Client::new(
            url,
            Some(token),
            ca.map(std::path::Path::new),
        ) {
            Ok(_) => panic!("{url} was accepted"),
            Err(err) => err.to_string(),
        };
        assert_eq!(
            message("ftp://x", None),
            "STEWARD_CONTROLLER `ftp://x` must be an http:// or https:// URL of the \
             controller's API"
        );
        assert_eq!(
            message("https://", None),
            "STEWARD_CONTROLLER `https://` has no host"
        );
        assert_eq!(
            message("https://c.example", None),
            "STEWARD_CONTROLLER `https://c.example` is https: set STEWARD_CA_FILE (or \
             --ca-file) to the controller's CA certificate, DATA_DIR/ca.crt, to trust its \
             certificate"
        );
        assert_eq!(
            message("http://c.example:7080", None),
            "refusing to send the admin token over plain HTTP to `c.example`, which is not \
             this machine (anyone on the path could read it): serve the API with \
             `steward serve --http-tls` and set STEWARD_CONTROLLER=https://... and \
             STEWARD_CA_FILE=DATA_DIR/ca.crt, or reach it through a tunnel to 127.0.0.1"
        );
        assert!(
            message("http://127.0.0.1:7080", None)
                .starts_with("token file /nonexistent/admin.token: ")
        );
        assert!(
            message("https://c.example", Some("/nonexistent/ca.crt"))
                .starts_with("STEWARD_CA_FILE /nonexistent/ca.crt: ")
        );
        let Err(err) = Client::new("http://127.0.0.1", None, None) else {
            panic!("no token file was accepted");
        };
        assert!(matches!(err, ClientError::NoTokenFile), "{err:?}");
        assert_eq!(err.status(), None);
    }

    #[test]
    fn a_refusal_keeps_its_status() {
        let err = ClientError::Status {
            status: ureq::http::StatusCode::NOT_FOUND,
            code: Some("not_found".to_string()),
            message: "no node `x`".to_string(),
        };
        assert_eq!(err.status(), Some(ureq::http::StatusCode::NOT_FOUND));
        assert_eq!(err.code(), Some("not_found"));
        assert_eq!(
            err.to_string(),
            "controller answered 404 Not Found: no node `x`"
        );
    }

    /// The message of a JSON error body, and of a text one (an older controller, a proxy).
    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(
            error_of(r#"{"error":{"code":"conflict","message":"finding 3 is already resolved"}}"#),
            (
                Some("conflict".to_string()),
                "finding 3 is already resolved".to_string()
            )
        );
        assert_eq!(
            error_of("error: no run `x`\n"),
            (None, "no run `x`".to_string())
        );
        assert_eq!(
            error_of("<html>Bad Gateway</html>"),
            (None, "<html>Bad Gateway</html>".to_string())
        );
    }

    #[test]
    fn only_loopback_hosts_get_the_token_over_plain_http() {
        for (rest, host, loopback) in [
            ("127.0.0.1:7080", "127.0.0.1", true),
            ("127.8.9.1:7080/", "127.8.9.1", true),
            ("localhost:7080", "localhost", true),
            ("[::1]:7080/v1", "::1", true),
            ("user@127.0.0.1:7080", "127.0.0.1", true),
            (
                "127.0.0.1.evil.example:7080",
                "127.0.0.1.evil.example",
                false,
            ),
            ("evil.example@127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1@evil.example:80", "evil.example", false),
            ("10.255.255.1:9", "10.255.255.1", false),
            ("[fe80::1]:80", "fe80::1", false),
            ("localhost.evil.example", "localhost.evil.example", false),
            ("", "", false),
        ] {
            assert_eq!(host_of(rest), host, "{rest}");
            assert_eq!(is_loopback(host_of(rest)), loopback, "{rest}");
        }
    }
}
