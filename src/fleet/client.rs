//! The CLI's side of the HTTP API: `STEWARD_CONTROLLER` + `STEWARD_TOKEN_FILE`, and
//! `STEWARD_CA_FILE` for an API served over TLS.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use base64::Engine;

use crate::fleet::api::NodeInfo;
use crate::fleet::command::{CommandEvent, CommandRequest, CommandResponse};
use crate::fleet::run::{BundleFile, Event, MAX_BUNDLE_BYTES, RunRequest, RunResponse};

/// A connection to a controller's API.
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// Largest API answer read into memory (reports of big runs).
const MAX_ANSWER: u64 = 256 * 1024 * 1024;

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
    ) -> Result<Client, String> {
        let Some(token_file) = token_file else {
            return Err(
                "STEWARD_TOKEN_FILE (or --token-file) must name the controller's admin.token"
                    .to_string(),
            );
        };
        let tls = if let Some(rest) = url.strip_prefix("https://") {
            if host_of(rest).is_empty() {
                return Err(format!("STEWARD_CONTROLLER `{url}` has no host"));
            }
            let Some(ca_file) = ca_file else {
                return Err(format!(
                    "STEWARD_CONTROLLER `{url}` is https: set STEWARD_CA_FILE (or --ca-file) to \
                     the controller's CA certificate, DATA_DIR/ca.crt, to trust its certificate"
                ));
            };
            Some(tls_trusting(ca_file)?)
        } else if let Some(rest) = url.strip_prefix("http://") {
            let host = host_of(rest);
            if !is_loopback(host) {
                return Err(format!(
                    "refusing to send the admin token over plain HTTP to `{host}`, which is not \
                     this machine (anyone on the path could read it): serve the API with \
                     `steward serve --http-tls` and set STEWARD_CONTROLLER=https://... and \
                     STEWARD_CA_FILE=DATA_DIR/ca.crt, or reach it through a tunnel to 127.0.0.1"
                ));
            }
            None
        } else {
            return Err(format!(
                "STEWARD_CONTROLLER `{url}` must be an http:// or https:// URL of the \
                 controller's API"
            ));
        };
        let token = std::fs::read_to_string(token_file)
            .map_err(|err| format!("token file {}: {err}", token_file.display()))?
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
    ) -> Result<ureq::http::Response<ureq::Body>, String> {
        let mut response = response.map_err(|err| match err {
            ureq::Error::Rustls(_) | ureq::Error::Tls(_) => format!(
                "controller {}: {err} (is STEWARD_CA_FILE the controller's DATA_DIR/ca.crt, and \
                 the host one of its certificate's names?)",
                self.base
            ),
            err => format!("controller {}: {err}", self.base),
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
        let body = body.trim().trim_start_matches("error: ");
        Err(format!("controller answered {status}: {body}"))
    }

    /// `GET path` as text.
    pub fn get_text(&self, path: &str) -> Result<String, String> {
        let response = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.bearer())
            .call();
        self.text(response)
    }

    /// `POST path` (no body) as text.
    pub fn post_text(&self, path: &str) -> Result<String, String> {
        let response = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.bearer())
            // The API takes a change only as JSON, a body or not (docs/reference/api.md).
            .header("Content-Type", "application/json")
            .send_empty();
        self.text(response)
    }

    /// A successful answer's body as text.
    fn text(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, String> {
        self.check(response)?
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|err| err.to_string())
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// `steward node tag`: sets and removes a node's tags; the answer as text.
    pub fn node_tags(
        &self,
        name: &str,
        request: &crate::fleet::api::TagRequest,
    ) -> Result<String, String> {
        let response = self
            .agent
            .post(self.url(&format!("/v1/nodes/{name}/tags")))
            .header("Authorization", self.bearer())
            .send_json(request);
        self.text(response)
    }

    /// The inventory.
    pub fn nodes(&self) -> Result<Vec<NodeInfo>, String> {
        let text = self.get_text("/v1/nodes")?;
        serde_json::from_str(&text).map_err(|err| format!("controller's node list: {err}"))
    }

    /// Starts a run and follows its progress to the end.
    pub fn run(
        &self,
        request: &RunRequest,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<RunResponse, String> {
        let mut done = None;
        self.post_lines("/v1/runs", request, &mut |event: Event| match event {
            Event::Done(response) => done = Some(response),
            event => on_event(&event),
        })?;
        done.ok_or_else(early_end)
    }

    /// Starts a command run and follows it to the end.
    pub fn command(
        &self,
        request: &CommandRequest,
        on_event: &mut dyn FnMut(&CommandEvent),
    ) -> Result<CommandResponse, String> {
        let mut done = None;
        self.post_lines(
            "/v1/commands",
            request,
            &mut |event: CommandEvent| match event {
                CommandEvent::Done(response) => done = Some(response),
                event => on_event(&event),
            },
        )?;
        done.ok_or_else(early_end)
    }

    /// POSTs `body` as JSON and hands each JSON line of the answer to `on_line`.
    fn post_lines<E: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        on_line: &mut dyn FnMut(E),
    ) -> Result<(), String> {
        let body = serde_json::to_vec(body).map_err(|err| err.to_string())?;
        let response = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.bearer())
            .header("Content-Type", "application/json")
            .send(&body[..]);
        let mut response = self.check(response)?;
        let reader = BufReader::new(response.body_mut().with_config().limit(MAX_ANSWER).reader());
        for line in reader.lines() {
            let line = line.map_err(|err| format!("controller: {err}"))?;
            if line.trim().is_empty() {
                continue;
            }
            let event: E = serde_json::from_str(&line)
                .map_err(|err| format!("controller sent a malformed event: {err}"))?;
            on_line(event);
        }
        Ok(())
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
fn tls_trusting(ca_file: &Path) -> Result<ureq::tls::TlsConfig, String> {
    let pem = std::fs::read(ca_file)
        .map_err(|err| format!("STEWARD_CA_FILE {}: {err}", ca_file.display()))?;
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(certificate)) => certificates.push(certificate),
            Ok(_) => {}
            Err(err) => return Err(format!("STEWARD_CA_FILE {}: {err}", ca_file.display())),
        }
    }
    if certificates.is_empty() {
        return Err(format!(
            "STEWARD_CA_FILE {}: no PEM certificate in it (use the controller's DATA_DIR/ca.crt)",
            ca_file.display()
        ));
    }
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certificates))
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .build())
}

fn early_end() -> String {
    "the controller ended the stream early (did it restart?)".to_string()
}

/// The files of a project, for upload: what `steward plan` would read, plus the templates
/// and sources beside them (hidden entries and `.steward/` are left out).
pub fn bundle(project: &Path) -> Result<Vec<BundleFile>, String> {
    let engine = base64::engine::general_purpose::STANDARD;
    if project.is_file() {
        let name = project
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .ok_or_else(|| format!("{}: not a file name", project.display()))?;
        let bytes =
            std::fs::read(project).map_err(|err| format!("{}: {err}", project.display()))?;
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
        let entry = entry.map_err(|err| err.to_string())?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry
            .path()
            .strip_prefix(project)
            .map_err(|err| err.to_string())?;
        let relative = relative
            .to_str()
            .ok_or_else(|| format!("{}: the name is not UTF-8", entry.path().display()))?
            .to_string();
        let mut bytes = Vec::new();
        std::fs::File::open(entry.path())
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|err| format!("{}: {err}", entry.path().display()))?;
        total += bytes.len();
        if total > MAX_BUNDLE_BYTES {
            return Err(format!(
                "{} is over the {MAX_BUNDLE_BYTES}-byte limit of a project sent to a controller",
                project.display()
            ));
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
    use super::{host_of, is_loopback};

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
