//! The CLI's side of the HTTP API: `STEWARD_CONTROLLER` + `STEWARD_TOKEN_FILE`.

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
    /// A client for `url` (`http://HOST:PORT`) with the admin token read from `token_file`.
    pub fn new(url: &str, token_file: Option<&Path>) -> Result<Client, String> {
        let Some(token_file) = token_file else {
            return Err(
                "STEWARD_TOKEN_FILE (or --token-file) must name the controller's admin.token"
                    .to_string(),
            );
        };
        let token = std::fs::read_to_string(token_file)
            .map_err(|err| format!("token file {}: {err}", token_file.display()))?
            .trim()
            .to_string();
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(format!(
                "STEWARD_CONTROLLER `{url}` must be an http:// URL of the controller's API"
            ));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
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
        let mut response = response.map_err(|err| format!("controller {}: {err}", self.base))?;
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
