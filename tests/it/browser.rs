//! The browser tests' harness: Debian's headless chromium, driven through chromedriver's
//! WebDriver (the `fantoccini` client), against a controller on loopback.
//!
//! A [`Browser`] finds `chromium` and `chromedriver` ([`find_programs`]) and, when either is
//! missing, panics naming it and saying how to install both: a browser test never skips. It
//! starts chromedriver on a free loopback port, in a process group of its own, and opens one
//! headless session with a temporary profile. Dropping it (also while a test panics) kills the
//! group, chromium's processes with it, so no chromium outlives its test (chromium's crash
//! handlers run in sessions of their own and exit when the browser they watch has; with
//! `--disable-crashpad-for-testing` chromium 156 opens no page). If the test process
//! dies outright, chromedriver dies with the thread that started it (`PR_SET_PDEATHSIG`), and
//! chromium, which talks to chromedriver over a pipe (`--remote-debugging-pipe`), with
//! chromedriver. So a browser is made on the thread that drops it (the test's own).
//!
//! The calls block (the other integration tests are plain `#[test]`s): each runs on the
//! browser's own current-thread tokio runtime. Waits only bound a hang and assert nothing about
//! time: a wait that runs out says what it awaited and shows the page's text. Screenshots are
//! kept as test artefacts: `$STEWARD_TEST_ARTEFACTS/browser/`, else
//! `<target dir>/test-artefacts/browser/`, as `<test>-<name>.png`.
//!
//! The controller's HTTP listener is plain HTTP on loopback (see `fleet_harness`), so the
//! session accepts no invalid certificate (`acceptInsecureCerts` is false).
//! The pages' content security policy applies to scripts a test runs in them:
//! [`Browser::post_from_page`] reports a request the policy stops as [`Fetched::Blocked`] (the
//! console's policy lets a page's script reach its own origin only).
//!
//! The browser tests are `#[ignore]`d, since a fresh machine's `cargo test` has no browser.
//! `.ci/run` installs Debian's `chromium` and `chromium-driver` when missing and runs the
//! ignored tests of the modules its `browser_modules` pattern names (`browser` now; a module of
//! browser tests is added there), failing, not skipping, where there is no browser.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::cookies::Cookie;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::fleet_harness::Fleet;

/// What a test that finds no browser says to do.
const INSTALL: &str = "install Debian's chromium and chromium-driver; .ci/run does";

/// How long a wait for an element, a page or a script may last: it bounds a hang.
const WAIT: Duration = Duration::from_secs(30);

/// How long chromedriver may take to answer, and chromium to open a session: headless
/// chromium on a small, busy machine is slow to start.
const START: Duration = Duration::from_secs(120);

/// The names the browser goes by, in the order they are tried in each directory.
const CHROMIUM_NAMES: &[&str] = &["chromium", "chromium-browser"];

/// The names of the WebDriver server.
const CHROMEDRIVER_NAMES: &[&str] = &["chromedriver"];

/// The browser and its WebDriver server, as found.
#[derive(Debug)]
pub(crate) struct Programs {
    pub(crate) chromium: PathBuf,
    pub(crate) chromedriver: PathBuf,
}

/// Where [`find_programs`] looks, in order: Debian's `/usr/lib/chromium` first (the browser
/// itself, not `/usr/bin/chromium`, the launcher script that adds flags of its own), then
/// `PATH`, then `/usr/bin` (for a test run with an empty `PATH`).
pub(crate) fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/lib/chromium")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.push(PathBuf::from("/usr/bin"));
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|dir| seen.insert(dir.clone()));
    dirs
}

/// The first executable of each program in `dirs`, or the message that names what is missing.
pub(crate) fn find_programs(dirs: &[PathBuf]) -> Result<Programs, String> {
    let find = |names: &[&str]| {
        dirs.iter()
            .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
            .find(|path| is_executable(path))
    };
    match (find(CHROMIUM_NAMES), find(CHROMEDRIVER_NAMES)) {
        (Some(chromium), Some(chromedriver)) => Ok(Programs {
            chromium,
            chromedriver,
        }),
        (chromium, chromedriver) => {
            let mut missing = Vec::new();
            if chromium.is_none() {
                missing.push(format!("the browser ({})", CHROMIUM_NAMES.join(" or ")));
            }
            if chromedriver.is_none() {
                missing.push("its WebDriver server (chromedriver)".to_string());
            }
            let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            Err(format!(
                "this browser test cannot run: {} {} missing (searched: {}); {INSTALL}",
                missing.join(" and "),
                if missing.len() == 1 { "is" } else { "are" },
                if searched.is_empty() {
                    "nowhere".to_string()
                } else {
                    searched.join(", ")
                },
            ))
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// chromedriver as a child process in a process group of its own; the group (chromedriver
/// and the chromium it started) is killed on drop.
struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
    /// The directory the browser's files go to (its `XDG_CONFIG_HOME` and `XDG_CACHE_HOME`
    /// too): each of its processes names it on its command line.
    dir: PathBuf,
}

impl Driver {
    /// Starts chromedriver on a free loopback port and waits until it answers. A port taken
    /// between the pick and chromedriver's bind makes it exit: when it exits, it is tried
    /// again (three times in all) on another port.
    fn start(program: &Path, dir: &Path) -> Driver {
        let log = dir.join("chromedriver.log");
        let mut why = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(program);
            cmd.arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                // chromium's crash handlers keep their database under the configuration
                // directory: this one, not the home directory's.
                .env("XDG_CONFIG_HOME", dir.join("config"))
                .env("XDG_CACHE_HOME", dir.join("cache"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0);
            // SAFETY: only prctl, an async-signal-safe system call, between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                        .map_err(std::io::Error::from)
                });
            }
            let child = cmd
                .spawn()
                .unwrap_or_else(|err| panic!("cannot start {}: {err}", program.display()));
            let mut driver = Driver {
                child,
                port,
                log: log.clone(),
                dir: dir.to_path_buf(),
            };
            match driver.wait_ready() {
                Ok(()) => return driver,
                Err(err) if matches!(driver.child.try_wait(), Ok(Some(_))) => why = err,
                Err(err) => panic!("chromedriver ({}) did not start: {err}", program.display()),
            }
        }
        panic!("chromedriver ({}) did not start: {why}", program.display());
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "it exited ({status}) before it answered on port {}; its log ends:\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            if self.ready() {
                return Ok(());
            }
            if start.elapsed() > START {
                return Err(format!(
                    "it did not answer on port {} within {} s; its log ends:\n{}",
                    self.port,
                    START.as_secs(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// True when chromedriver's `GET /status` says it is ready for a session.
    fn ready(&self) -> bool {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.contains("\"ready\":true")
    }

    /// The last lines of chromedriver's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        // The group's id is chromedriver's pid (process_group(0)); it is ours until we reap
        // chromedriver below, so the signal cannot reach anything else.
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
        // chromium's processes are reparented and reaped by init, and its crash handlers (in
        // sessions of their own) exit when they see it gone: wait, boundedly, until none is
        // left, so that their directory is removed after them.
        let start = Instant::now();
        while (killpg(group, None).is_ok() || !processes_naming(&self.dir).is_empty())
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The processes whose command line names `dir` (from /proc), as `(pid, command line)`.
pub(crate) fn processes_naming(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(&needle).then_some((pid, cmdline))
        })
        .collect()
}

/// A loopback port no process listens on (yet).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// What a `fetch` run in the page gave.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// The server answered (after redirects): its status, the final URL and the body.
    Answered {
        status: u16,
        url: String,
        body: String,
    },
    /// The browser refused to send it or got no answer: the error, and the content security
    /// policy directive that stopped it, when one did.
    Blocked {
        error: String,
        violated: Option<String>,
    },
}

/// One headless chromium session for one test. Every call blocks until the browser answers;
/// a failure panics with what was asked, where, and the page's text.
///
/// Dropping it kills chromedriver's process group without closing the session first (the
/// profile is thrown away): the fields drop in order, the group dies before the directory
/// with chromium's profile is removed.
pub(crate) struct Browser {
    client: Client,
    runtime: tokio::runtime::Runtime,
    base: String,
    test: String,
    driver: Driver,
    work: tempfile::TempDir,
}

impl Browser {
    /// A browser whose relative paths ([`Browser::goto`]) are under `base`
    /// (`http://127.0.0.1:PORT`). Panics, saying what to install, without chromium or
    /// chromedriver.
    pub(crate) fn start(base: &str) -> Browser {
        let programs = find_programs(&search_dirs()).unwrap_or_else(|missing| panic!("{missing}"));
        let work = tempfile::tempdir().unwrap();
        let driver = Driver::start(&programs.chromedriver, work.path());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let profile = work.path().join("profile");
        let capabilities = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": false,
            "pageLoadStrategy": "normal",
            "timeouts": {
                "implicit": 0,
                "pageLoad": WAIT.as_millis() as u64,
                "script": WAIT.as_millis() as u64,
            },
            "goog:chromeOptions": {
                "binary": programs.chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                    // chromium exits when chromedriver does (see the module's doc).
                    "--remote-debugging-pipe",
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities);
        let connected = runtime
            .block_on(async { tokio::time::timeout(START, builder.connect(&driver.url())).await });
        let client = match connected {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => panic!(
                "chromium ({}) did not open a session through chromedriver: {err}\n\
                 chromedriver's log ends:\n{}",
                programs.chromium.display(),
                driver.log_tail()
            ),
            Err(_) => panic!(
                "chromium ({}) did not open a session within {} s; chromedriver's log ends:\n{}",
                programs.chromium.display(),
                START.as_secs(),
                driver.log_tail()
            ),
        };
        Browser {
            client,
            runtime,
            base: base.trim_end_matches('/').to_string(),
            test: test_name(),
            driver,
            work,
        }
    }

    /// The process group of chromedriver and the chromium it started.
    pub(crate) fn process_group(&self) -> i32 {
        self.driver.child.id() as i32
    }

    /// The directory of the browser's profile and other files, removed on drop.
    pub(crate) fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// The WebDriver client, for what the helpers do not cover (with [`Browser::block_on`]).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Runs a future of the client's on the browser's runtime.
    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// `path` under the base URL when it starts with `/`, else `path` itself (a whole URL).
    pub(crate) fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{path}", self.base)
        } else {
            path.to_string()
        }
    }

    /// Opens `path` (see [`Browser::url`]) and waits until it has loaded.
    pub(crate) fn goto(&self, path: &str) {
        let url = self.url(path);
        if let Err(err) = self.block_on(self.client().goto(&url)) {
            panic!("cannot open {url}: {err}");
        }
    }

    /// The URL of the page shown now.
    pub(crate) fn current_url(&self) -> String {
        match self.block_on(self.client().current_url()) {
            Ok(url) => url.to_string(),
            Err(err) => panic!("cannot read the current URL: {err}"),
        }
    }

    /// The visible text of the page (its `body`), or why there is none.
    pub(crate) fn page_text(&self) -> String {
        let script =
            "return document.body ? document.body.innerText : document.documentElement.outerHTML;";
        match self.block_on(self.client().execute(script, Vec::new())) {
            Ok(Value::String(text)) => text,
            Ok(other) => format!("(the page's text is not a string: {other})"),
            Err(err) => format!("(cannot read the page's text: {err})"),
        }
    }

    /// The first element `css` matches, once there is one (waiting at most [`WAIT`]).
    pub(crate) fn wait_for(&self, css: &str) -> Element {
        self.wait_for_at_most(css, WAIT)
    }

    /// [`Browser::wait_for`] with another bound.
    pub(crate) fn wait_for_at_most(&self, css: &str, bound: Duration) -> Element {
        let wait = self
            .client()
            .wait()
            .at_most(bound)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css));
        match self.block_on(wait) {
            Ok(element) => element,
            Err(err) => panic!(
                "waited {} s for an element matching `{css}` on {}, in vain ({err}); the page's \
                 text:\n{}",
                bound.as_secs_f32(),
                self.current_url(),
                self.page_text()
            ),
        }
    }

    /// The text of the first element `css` matches.
    pub(crate) fn text_of(&self, css: &str) -> String {
        let element = self.wait_for(css);
        self.block_on(element.text())
            .unwrap_or_else(|err| panic!("cannot read the text of `{css}`: {err}"))
    }

    /// The texts of every element `css` matches, in document order, once there is one.
    pub(crate) fn texts_of(&self, css: &str) -> Vec<String> {
        self.wait_for(css);
        let elements = self
            .block_on(self.client().find_all(Locator::Css(css)))
            .unwrap_or_else(|err| panic!("cannot find `{css}`: {err}"));
        elements
            .iter()
            .map(|element| {
                self.block_on(element.text())
                    .unwrap_or_else(|err| panic!("cannot read the text of `{css}`: {err}"))
            })
            .collect()
    }

    /// Clears the field `css` matches and types `text` into it.
    pub(crate) fn fill(&self, css: &str, text: &str) {
        let element = self.wait_for(css);
        let typed = self.block_on(async {
            element.clear().await?;
            element.send_keys(text).await
        });
        if let Err(err) = typed {
            panic!("cannot type into `{css}` on {}: {err}", self.current_url());
        }
    }

    /// Clicks the element `css` matches (and waits for a page it opens to load).
    pub(crate) fn click(&self, css: &str) {
        let element = self.wait_for(css);
        if let Err(err) = self.block_on(element.click()) {
            panic!(
                "cannot click `{css}` on {}: {err}; the page's text:\n{}",
                self.current_url(),
                self.page_text()
            );
        }
    }

    /// The cookies the browser holds for the page shown now (`HttpOnly` ones too).
    pub(crate) fn cookies(&self) -> Vec<Cookie<'static>> {
        self.block_on(self.client().get_all_cookies())
            .unwrap_or_else(|err| panic!("cannot read the cookies: {err}"))
    }

    /// Runs `script` in the page (WebDriver's execute script: `arguments` are `args`) and
    /// returns what it returns.
    pub(crate) fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.block_on(self.client().execute(script, args))
            .unwrap_or_else(|err| panic!("the script failed on {}: {err}", self.current_url()))
    }

    /// A `POST` of `body` (as `content_type`) to `path`, sent by `fetch` from the page shown
    /// now, as a script in it would: with its cookies (same origin), without a token the page
    /// holds unless the body has it. The page's content security policy applies: a request it
    /// stops comes back as [`Fetched::Blocked`] with the directive.
    pub(crate) fn post_from_page(&self, path: &str, content_type: &str, body: &str) -> Fetched {
        let script = r#"
            const [url, type, body, done] = arguments;
            let violated = null;
            document.addEventListener('securitypolicyviolation',
                (e) => { violated = e.violatedDirective; });
            fetch(url, { method: 'POST', headers: { 'Content-Type': type }, body,
                         credentials: 'same-origin' })
                .then(async (r) => done({ status: r.status, url: r.url, body: await r.text() }))
                // The violation event is queued as a task of its own: let it run first.
                .catch((e) => setTimeout(() => done({ error: String(e), violated }), 100));
        "#;
        let args = vec![json!(self.url(path)), json!(content_type), json!(body)];
        let answer = self
            .block_on(self.client().execute_async(script, args))
            .unwrap_or_else(|err| {
                panic!("the fetch script failed on {}: {err}", self.current_url())
            });
        match answer["status"].as_u64() {
            Some(status) => Fetched::Answered {
                status: status as u16,
                url: answer["url"].as_str().unwrap_or_default().to_string(),
                body: answer["body"].as_str().unwrap_or_default().to_string(),
            },
            None => Fetched::Blocked {
                error: answer["error"].as_str().unwrap_or_default().to_string(),
                violated: answer["violated"].as_str().map(str::to_string),
            },
        }
    }

    /// Saves a screenshot of the window as `<test>-<name>.png` in the artefacts directory
    /// ([`artefacts_dir`]), prints its path and returns it.
    pub(crate) fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .block_on(self.client().screenshot())
            .unwrap_or_else(|err| {
                panic!("cannot take a screenshot of {}: {err}", self.current_url())
            });
        let dir = artefacts_dir();
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        let path = dir.join(format!("{}-{}.png", self.test, file_safe(name)));
        std::fs::write(&path, png)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        println!("screenshot: {}", path.display());
        path
    }
}

/// Where screenshots go: `$STEWARD_TEST_ARTEFACTS/browser`, else `test-artefacts/browser`
/// in the target directory (the parent of the integration tests' `CARGO_TARGET_TMPDIR`, so a
/// `CARGO_TARGET_DIR` elsewhere is followed).
pub(crate) fn artefacts_dir() -> PathBuf {
    let root = match std::env::var_os("STEWARD_TEST_ARTEFACTS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
            tmp.parent().unwrap_or(tmp).join("test-artefacts")
        }
    };
    root.join("browser")
}

/// The running test's name (libtest names each test's thread after it), safe in a file name.
fn test_name() -> String {
    let thread = std::thread::current();
    match thread.name() {
        Some(name) if name != "main" => file_safe(name),
        _ => "browser".to_string(),
    }
}

/// `name` with `::` as `.` and anything but letters, digits, `-`, `_` and `.` as `-`.
fn file_safe(name: &str) -> String {
    name.replace("::", ".")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[test]
fn without_a_browser_the_finder_names_what_is_missing_and_how_to_install_it() {
    let none = find_programs(&[]).unwrap_err();
    assert!(
        none.contains(
            "the browser (chromium or chromium-browser) and its WebDriver server \
             (chromedriver) are missing"
        ) && none.contains("searched: nowhere")
            && none.contains(INSTALL),
        "{none}"
    );

    // A directory with only chromedriver: the browser is what is missing, and it says where it
    // looked.
    let dir = tempfile::tempdir().unwrap();
    let driver = dir.path().join("chromedriver");
    std::fs::write(&driver, "#!/bin/sh\n").unwrap();
    let not_executable = find_programs(&[dir.path().to_path_buf()]).unwrap_err();
    assert!(
        not_executable.contains("chromium or chromium-browser")
            && not_executable.contains("chromedriver"),
        "a file that is not executable is not a program: {not_executable}"
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&driver, std::fs::Permissions::from_mode(0o755)).unwrap();
    let only_driver = find_programs(&[dir.path().to_path_buf()]).unwrap_err();
    assert!(
        only_driver.contains("the browser (chromium or chromium-browser) is missing")
            && !only_driver.contains("chromedriver)")
            && only_driver.contains(&dir.path().display().to_string())
            && only_driver.contains(INSTALL),
        "{only_driver}"
    );

    // The real search list: Debian's directory of the browser first, then PATH, each once.
    let dirs = search_dirs();
    assert_eq!(dirs[0], Path::new("/usr/lib/chromium"), "{dirs:?}");
    assert!(dirs.contains(&PathBuf::from("/usr/bin")), "{dirs:?}");
    let unique: std::collections::HashSet<_> = dirs.iter().collect();
    assert_eq!(unique.len(), dirs.len(), "{dirs:?}");

    // With both, both are found, in the order of the search list.
    let browser = dir.path().join("chromium");
    std::fs::write(&browser, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
    let found = find_programs(&[PathBuf::from("/nonexistent"), dir.path().to_path_buf()]).unwrap();
    assert_eq!((found.chromium, found.chromedriver), (browser, driver));
}

/// Signs `browser` in to the console with `token`, from the sign-in form a page sends it to.
fn sign_in(browser: &Browser, token: &str, shot: Option<&str>) {
    browser.goto("/");
    browser.wait_for("#token");
    assert!(
        browser.current_url().contains("/login?next=%2F"),
        "{}",
        browser.current_url()
    );
    if let Some(name) = shot {
        browser.screenshot(name);
    }
    browser.fill("#token", token);
    browser.click("#sign-in");
    browser.wait_for("main h1");
    assert_eq!(
        browser.text_of("main h1"),
        "Overview",
        "{}",
        browser.page_text()
    );
}

/// How many elements `css` matches on the page now (without waiting for one).
fn count(browser: &Browser, css: &str) -> u64 {
    browser
        .execute(
            "return document.querySelectorAll(arguments[0]).length;",
            vec![json!(css)],
        )
        .as_u64()
        .unwrap_or_else(|| panic!("counting `{css}`"))
}

/// The one open finding's id, as the CLI lists it.
fn only_open_finding(fleet: &Fleet) -> i64 {
    crate::console::open_finding(fleet)
}

#[test]
#[ignore = "needs chromium and chromium-driver (Debian); .ci/run installs them"]
fn an_operator_signs_in_filters_nodes_opens_a_run_and_resolves_a_finding() {
    let fleet = crate::console::drifted_fleet();
    let id = only_open_finding(&fleet);
    let operate = fleet.token_with(&["--api", "--role", "operate", "--name", "on-call"]);
    let browser = Browser::start(&fleet.http);

    sign_in(&browser, &operate, Some("login"));
    let session = browser
        .cookies()
        .into_iter()
        .find(|c| c.name() == "steward_session")
        .unwrap_or_else(|| panic!("no session cookie: {:?}", browser.cookies()));
    assert_eq!(session.http_only(), Some(true), "{session:?}");
    assert_eq!(
        format!("{:?}", session.same_site()),
        "Some(Strict)",
        "{session:?}"
    );
    assert!(
        browser
            .page_text()
            .contains("signed in as on-call (operate)"),
        "{}",
        browser.page_text()
    );
    browser.screenshot("overview");

    // Nodes, filtered by tag through the form.
    browser.goto("/nodes");
    browser.fill("#filter-tag", "role=web");
    browser.click("#filter");
    browser.wait_for("#nodes");
    assert!(
        browser.current_url().contains("tag=role%3Dweb"),
        "{}",
        browser.current_url()
    );
    let names = browser.texts_of("#nodes td:first-child");
    assert_eq!(names, ["web-1"], "{}", browser.page_text());
    browser.screenshot("nodes");
    browser.click("#nodes a[href='/nodes/web-1']");
    browser.wait_for("#facts");
    assert_eq!(browser.text_of("main h1"), "Node web-1");
    browser.screenshot("node");

    // The drift run, with web-1's diff.
    browser.goto("/runs");
    browser.click("#runs tr:nth-child(2) a");
    browser.wait_for("#run");
    assert!(
        browser.text_of("#run").contains("drift"),
        "{}",
        browser.page_text()
    );
    let added = browser.texts_of("pre.diff span.add");
    assert!(
        added.iter().any(|line| line == "+hello from web-1"),
        "{added:?}: {}",
        browser.page_text()
    );
    let removed = browser.texts_of("pre.diff span.del");
    assert!(
        removed.iter().any(|line| line == "-edited by hand"),
        "{removed:?}"
    );
    assert_eq!(
        browser.texts_of("#downloads a"),
        ["json", "junit", "sarif", "markdown"]
    );
    browser.screenshot("run");

    // The finding, resolved with a note through its form.
    browser.goto("/findings");
    let row = format!("#finding-{id}");
    browser.wait_for(&row);
    browser.fill(&format!("{row} input[name=note]"), "the disk was replaced");
    browser.screenshot("findings");
    browser.click(&format!("{row} button"));
    browser.wait_for("#notice");
    assert_eq!(
        browser.text_of("#notice"),
        format!("Finding {id} resolved.")
    );
    let listed = fleet.cli(&["findings", "--all", "--format", "json"]);
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    let finding = &listed["findings"][0];
    assert_eq!(finding["open"], false, "{listed}");
    let resolution = finding["resolution"].as_str().unwrap();
    assert!(
        resolution.contains("on-call") && resolution.ends_with("the disk was replaced"),
        "{resolution}"
    );

    browser.goto("/compliance");
    browser.wait_for("#compliance");
    browser.screenshot("compliance");

    // The resolve is in the audit log, as the token that made it, with its note.
    browser.goto("/audit");
    browser.wait_for("#audit");
    let rows = browser.texts_of("#audit tr");
    let resolved = rows
        .iter()
        .find(|row| row.contains("POST /findings/{id}/resolve") && row.contains("ok (303)"))
        .unwrap_or_else(|| panic!("no resolve in the audit log: {rows:#?}"));
    assert!(
        resolved.contains("on-call") && resolved.contains("the disk was replaced"),
        "{resolved}"
    );
    browser.screenshot("audit");
}

#[test]
#[ignore = "needs chromium and chromium-driver (Debian); .ci/run installs them"]
fn a_read_token_gets_no_resolve_button_and_its_forged_post_is_refused() {
    let fleet = crate::console::drifted_fleet();
    let id = only_open_finding(&fleet);
    let read = fleet.token_with(&["--api", "--role", "read", "--name", "viewer"]);
    let browser = Browser::start(&fleet.http);
    sign_in(&browser, &read, None);

    browser.goto("/findings");
    browser.wait_for(&format!("#finding-{id}"));
    assert_eq!(
        count(&browser, "#findings button"),
        0,
        "{}",
        browser.page_text()
    );
    assert_eq!(
        count(&browser, "#findings tr"),
        2,
        "{}",
        browser.page_text()
    );
    browser.screenshot("findings-read");

    // The post the page would not offer, made by a script of the page with the session's own
    // CSRF token (the sign-out form's): the page's policy lets it reach the controller, which
    // refuses it for the role.
    let csrf = browser.execute(
        "return document.querySelector('input[name=csrf]').value;",
        Vec::new(),
    );
    let csrf = csrf.as_str().unwrap().to_string();
    let fetched = browser.post_from_page(
        &format!("/findings/{id}/resolve"),
        "application/x-www-form-urlencoded",
        &format!("csrf={csrf}&note=forged"),
    );
    let Fetched::Answered { status, body, url } = &fetched else {
        panic!("the request did not reach the controller: {fetched:?}");
    };
    assert_eq!(*status, 403, "{fetched:?}");
    assert_eq!(*url, format!("{}/findings/{id}/resolve", fleet.http));
    assert!(body.contains("needs the operate role"), "{fetched:?}");
    // A script may not post to another origin at all (connect-src 'self').
    let elsewhere = browser.post_from_page(
        "http://127.0.0.1:9/x",
        "application/x-www-form-urlencoded",
        "",
    );
    assert!(
        matches!(&elsewhere, Fetched::Blocked { violated, error }
            if violated.as_deref() == Some("connect-src") && !error.is_empty()),
        "{elsewhere:?}"
    );
    let listed = fleet.cli(&["findings", "--format", "json"]);
    assert!(
        listed.stdout.contains(&format!("\"id\": {id}")),
        "{}",
        listed.stdout
    );
}

#[test]
#[ignore = "needs chromium and chromium-driver (Debian); .ci/run installs them"]
fn an_operator_switches_a_schedule_off_from_its_page() {
    let fleet = Fleet::with_agents(&[("web-1", "role=web")]);
    fleet.env.write(
        "project/site.yaml",
        "steward: 1\nassociations:\n  nightly:\n    targets: { tags: { role: web } }\n    \
         documents: [web.yaml]\n    schedule: rate(1 day)\n    mode: detect\n",
    );
    fleet.env.write(
        "project/web.yaml",
        "steward: 1\nresources:\n  file:/motd:\n    content: \"hello\\n\"\n",
    );
    let project = fleet.env.path().join("project");
    let apply = fleet.cli(&["apply", project.to_str().unwrap(), "--yes"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let operate = fleet.token_with(&["--api", "--role", "operate", "--name", "on-call"]);
    let browser = Browser::start(&fleet.http);
    sign_in(&browser, &operate, None);
    browser.goto("/schedules");
    browser.wait_for("#schedule-nightly");
    assert!(
        browser.text_of("#schedule-nightly").contains("rate(1 day)"),
        "{}",
        browser.page_text()
    );
    browser.screenshot("schedules");
    browser.click("#schedule-nightly button");
    browser.wait_for("#notice");
    assert_eq!(browser.text_of("#notice"), "nightly disabled.");
    assert!(
        browser.text_of("#schedule-nightly").contains("disabled"),
        "{}",
        browser.page_text()
    );
    let listed = fleet.cli(&["schedules", "--format", "json"]);
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed["schedules"][0]["enabled"], false, "{listed}");
}

#[test]
#[ignore = "needs chromium and chromium-driver (Debian); .ci/run installs them"]
fn a_running_runs_page_shows_its_progress_live_then_its_result() {
    let fleet = Fleet::with_agents(&[("web-1", "role=web")]);
    fleet
        .env
        .write("project/site.yaml", crate::console::PROJECT);
    fleet.env.write(
        "project/web.yaml",
        "steward: 1\nresources:\n  exec:slow:\n    command: [\"/bin/sleep\", \"4\"]\n",
    );
    let read = fleet.token_with(&["--api", "--role", "read", "--name", "viewer"]);
    let browser = Browser::start(&fleet.http);
    sign_in(&browser, &read, None);
    let project = fleet.env.path().join("project");
    let mut apply = fleet
        .cli_command(&["apply", project.to_str().unwrap(), "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = crate::fleet_harness::wait_for("a running run", Duration::from_secs(60), || {
        let runs = fleet.cli(&["runs", "--format", "json"]);
        let runs: Value = serde_json::from_str(&runs.stdout).ok()?;
        runs["runs"][0]["id"].as_str().map(str::to_string)
    });
    browser.goto(&format!("/runs/{run}"));
    // The script follows the run: web-1 is listed as its task goes out.
    browser.wait_for("#live-nodes li");
    assert!(
        browser.text_of("#live-nodes").contains("web-1"),
        "{}",
        browser.page_text()
    );
    browser.screenshot("run-live");
    // When it ends, the page loads once more, finished, without the live section.
    browser.wait_for("#run-status.complete");
    assert_eq!(count(&browser, "#live"), 0, "{}", browser.page_text());
    assert!(apply.wait().unwrap().success());
}

#[test]
#[ignore = "needs chromium and chromium-driver (Debian); .ci/run installs them"]
fn the_helpers_type_click_read_run_scripts_and_see_cookies() {
    let fleet = Fleet::start();
    let browser = Browser::start(&fleet.http);

    // A page of the test's own (a data: URL has no content security policy): typing and a
    // click reach its script, and what it writes is read back.
    browser.goto(
        "data:text/html,<input id=name value=old><button id=go \
         onclick=\"document.getElementById('out').textContent='hello '+\
         document.getElementById('name').value\">go</button><p id=out></p>",
    );
    browser.fill("#name", "chromium");
    browser.click("#go");
    assert_eq!(browser.text_of("#out"), "hello chromium");
    assert_eq!(
        browser.execute("return arguments[0] + 1;", vec![json!(41)]),
        json!(42)
    );

    // The controller's origin: a cookie its page sets is among the browser's cookies.
    browser.goto("/login");
    assert!(browser.cookies().is_empty(), "{:?}", browser.cookies());
    browser.execute("document.cookie = 'probe=1; path=/';", Vec::new());
    let cookies: Vec<(String, String)> = browser
        .cookies()
        .iter()
        .map(|c| (c.name().to_string(), c.value().to_string()))
        .collect();
    assert_eq!(cookies, [("probe".to_string(), "1".to_string())]);
}

#[test]
#[ignore = "needs chromium and chromium-driver (Debian); .ci/run installs them"]
fn a_browser_leaves_no_process_behind_when_dropped_or_when_its_test_panics() {
    use nix::sys::signal::killpg;
    use nix::unistd::Pid;
    let alive = |group: i32| killpg(Pid::from_raw(group), None).is_ok();
    let page = "data:text/html,<h1>here</h1>";

    let browser = Browser::start("http://127.0.0.1:9");
    browser.goto(page);
    let group = browser.process_group();
    let dir = browser.work_dir().to_path_buf();
    assert!(alive(group), "chromedriver's group {group} is not running");
    // chromedriver, chromium's processes and its crash handlers all name the directory.
    let running = processes_naming(&dir);
    assert!(
        running
            .iter()
            .any(|(_, cmd)| cmd.contains("chrome_crashpad_handler")),
        "{running:#?}"
    );
    drop(browser);
    assert_eq!(processes_naming(&dir), [], "outlived their browser");
    assert!(!dir.exists(), "{} outlived its browser", dir.display());
    assert!(
        !alive(group),
        "chromedriver's group {group} outlived its browser"
    );

    let (tx, rx) = std::sync::mpsc::channel();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let browser = Browser::start("http://127.0.0.1:9");
        tx.send((browser.process_group(), browser.work_dir().to_path_buf()))
            .unwrap();
        browser.goto(page);
        browser.wait_for_at_most("h1.never-there", Duration::from_secs(1));
    }));
    let message = panicked.unwrap_err();
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("`h1.never-there`") && message.contains("the page's text"),
        "{message}"
    );
    let (group, dir) = rx.recv().unwrap();
    assert!(
        !alive(group),
        "chromedriver's group {group} outlived a panic"
    );
    assert_eq!(processes_naming(&dir), [], "outlived a panic");
}
