//! A seeded mutation fuzzer for the front door: loading and validating any bytes ends in
//! diagnostics, never in a panic, a hang or a span outside the text.
//!
//! Seeds are every document under `examples/` and `stdlib/` plus hostile shapes (deep nesting,
//! long repetitions, huge numbers, bad bytes). Each iteration mutates a seed with a small
//! deterministic PRNG (byte flips, insertions, deletions, splices of two seeds, a slice
//! repeated many times, a 70 KB line, huge numbers, NUL and invalid UTF-8, repeated tokens),
//! writes the result as `a.yaml` or `a.kdl` into a directory the fuzzing thread reuses, runs
//! the library's `steward::validate::validate` on it inside `catch_unwind`, and checks:
//! - it did not panic;
//! - every diagnostic has a code and a message, and every span lies inside its source text,
//!   on character boundaries;
//! - the JSON rendering (`steward::report::diagnostics::json`) is valid JSON with every
//!   diagnostic in it;
//! - it finished within the time budget, or did when run once more, or took at most 15 times
//!   what a reference project of 2,000 resources takes at that moment (timing is noisy on a
//!   busy machine: the reference slows alike); the slowest inputs are printed.
//!
//! A sample of the inputs also goes through the real binary (`steward validate`, human and
//! JSON output), which must exit 0 or 1 without crashing.
//!
//! The loop runs on a thread with an 8 MiB stack, the size of the real binary's main thread.
//! A stack overflow cannot be caught: it aborts the whole test binary, which is a failure.
//! The input that did it stays in the directory named on stderr when the run starts, with the
//! seed and iteration in its `iteration` file.
//!
//! Environment (a failure prints the line that replays it; a replay is exact while this file
//! and the seed documents are unchanged, since they make the corpus):
//! - `STEWARD_FUZZ_ITERATIONS=N`: how many inputs (default 2,000; `200000` for a long run).
//! - `STEWARD_FUZZ_SEED=N`: the PRNG seed (decimal or `0x` hex; default [`DEFAULT_SEED`]).
//! - `STEWARD_FUZZ_ITERATION=I`: replay only iteration I of the seed.
//! - `STEWARD_FUZZ_BUDGET_MS=N`: the time one input may take (default 2,000 ms).
//! - `STEWARD_FUZZ_SKIP_KDL=1`: YAML only, while a KDL reader is being rewritten; CI never
//!   sets it.
//!
//! ```text
//! STEWARD_FUZZ_ITERATIONS=200000 STEWARD_FUZZ_SEED=7 cargo test --test it fuzz -- --nocapture
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use steward::diag::SourceMap;
use steward::model::Facts;
use steward::resource::Registry;
use steward::validate::{Validated, validate};
use wait_timeout::ChildExt;

use crate::common::repo;

/// The seed used when `STEWARD_FUZZ_SEED` is not set.
const DEFAULT_SEED: u64 = 0x5745_5741_5244_0011;

/// Inputs per `cargo test` run when `STEWARD_FUZZ_ITERATIONS` is not set.
const DEFAULT_ITERATIONS: u64 = 2_000;

/// The stack of the real binary's main thread.
const STACK_BYTES: usize = 8 * 1024 * 1024;

/// Inputs larger than this are cut: the point is odd shapes, not the size limit.
const MAX_INPUT_BYTES: usize = 512 * 1024;

/// One input in this many also goes through the real binary.
const CLI_SAMPLE_EVERY: u64 = 150;

/// Failures listed in full; the rest are counted.
const MAX_FAILURES: usize = 20;

#[test]
fn mutated_documents_end_in_diagnostics() {
    let config = FuzzConfig::from_env();
    let seeds = Arc::new(all_seeds(config.skip_kdl));
    let progress = Arc::new(Mutex::new(None::<(u64, Instant)>));
    let workdir = tempfile::Builder::new()
        .prefix("fuzz-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    // Straight to the terminal, past the test harness's capture: after a stack overflow
    // nothing captured is printed, and this says where the input that did it is.
    let _ = writeln!(
        std::io::stderr(),
        "fuzz: seed {:#x}, {} iterations; the input being checked is {}/a.{{yaml,kdl}}",
        config.seed,
        config.iterations(),
        workdir.path().display()
    );
    let handle = {
        let seeds = Arc::clone(&seeds);
        let progress = Arc::clone(&progress);
        let dir = workdir.path().to_path_buf();
        let config = config.clone();
        std::thread::Builder::new()
            .name(format!("fuzz seed {:#x}", config.seed))
            .stack_size(STACK_BYTES)
            .spawn(move || fuzz(&config, &seeds, &dir, &progress))
            .unwrap()
    };
    // A hang cannot be interrupted, but it can fail the test (the thread is left behind).
    let hang = (config.budget * 15).max(Duration::from_secs(60));
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        if let Some((iteration, started)) = *progress.lock().unwrap()
            && started.elapsed() > hang
        {
            // The directory goes when this test unwinds; the input is kept.
            let saved = save_failed(&config, iteration, workdir.path());
            panic!(
                "iteration {iteration} has run for {:?}: a hang; replay with {}; the input is \
                 saved as {}",
                started.elapsed(),
                config.replay(iteration),
                saved.display()
            );
        }
    }
    let summary = match handle.join() {
        Ok(summary) => summary,
        Err(payload) => panic!("the fuzzer itself panicked: {}", panic_text(&*payload)),
    };
    eprintln!(
        "fuzz: {} inputs ({} KDL, {} through the binary) in {:.1?}; slowest:",
        summary.n_inputs, summary.n_kdl, summary.n_cli, summary.elapsed
    );
    for slow in &summary.slowest {
        eprintln!(
            "  {:>8.1?}  iteration {} ({} bytes of {:?}): {}",
            slow.elapsed, slow.iteration, slow.n_bytes, slow.syntax, slow.description
        );
    }
    if !summary.failures.is_empty() {
        panic!(
            "{} of {} inputs failed; the first {}:\n{}",
            summary.n_failed,
            summary.n_inputs,
            summary.failures.len(),
            summary.failures.join("\n")
        );
    }
}

// Each known-hostile shape on its own, through the library and the binary alike: each ends
// in sound diagnostics, and in an error unless the shape is valid (balanced comments are).

#[test]
fn hostile_kdl_closing_braces() {
    check_hostile("kdl_closing_braces", Expect::Errors);
}

#[test]
fn hostile_kdl_type_annotations() {
    check_hostile("kdl_type_annotations", Expect::Errors);
}

#[test]
fn hostile_kdl_nested_comments() {
    check_hostile("kdl_nested_comments", Expect::Valid);
}

#[test]
fn hostile_kdl_slashdash_chain() {
    check_hostile("kdl_slashdash_chain", Expect::Errors);
}

#[test]
fn hostile_kdl_comment_of_stars() {
    check_hostile("kdl_comment_of_stars", Expect::Valid);
}

#[test]
fn hostile_kdl_opening_braces() {
    check_hostile("kdl_opening_braces", Expect::Errors);
}

#[test]
fn hostile_kdl_long_string() {
    check_hostile("kdl_long_string", Expect::Errors);
}

#[test]
fn hostile_kdl_huge_numbers() {
    check_hostile("kdl_huge_numbers", Expect::Errors);
}

#[test]
fn hostile_kdl_bad_bytes() {
    check_hostile("kdl_bad_bytes", Expect::Errors);
}

#[test]
fn hostile_yaml_flow_sequences() {
    check_hostile("yaml_flow_sequences", Expect::Errors);
}

#[test]
fn hostile_yaml_flow_maps() {
    check_hostile("yaml_flow_maps", Expect::Errors);
}

#[test]
fn hostile_yaml_block_sequences() {
    check_hostile("yaml_block_sequences", Expect::Errors);
}

#[test]
fn hostile_yaml_nested_maps() {
    check_hostile("yaml_nested_maps", Expect::Errors);
}

#[test]
fn hostile_yaml_billion_laughs() {
    check_hostile("yaml_billion_laughs", Expect::Errors);
}

#[test]
fn hostile_yaml_anchors() {
    check_hostile("yaml_anchors", Expect::Errors);
}

#[test]
fn hostile_yaml_aliases() {
    check_hostile("yaml_aliases", Expect::Errors);
}

#[test]
fn hostile_yaml_complex_keys() {
    check_hostile("yaml_complex_keys", Expect::Errors);
}

#[test]
fn hostile_yaml_documents() {
    check_hostile("yaml_documents", Expect::Errors);
}

#[test]
fn hostile_yaml_binary_tags() {
    check_hostile("yaml_binary_tags", Expect::Errors);
}

#[test]
fn hostile_yaml_long_line() {
    check_hostile("yaml_long_line", Expect::Errors);
}

#[test]
fn hostile_yaml_huge_numbers() {
    check_hostile("yaml_huge_numbers", Expect::Errors);
}

#[test]
fn hostile_yaml_bad_bytes() {
    check_hostile("yaml_bad_bytes", Expect::Errors);
}

#[test]
fn hostile_yaml_template_error_past_column_65535() {
    check_hostile("yaml_template_error_past_column_65535", Expect::Errors);
}

#[test]
fn hostile_yaml_template_error_at_a_multibyte_character() {
    check_hostile(
        "yaml_template_error_at_a_multibyte_character",
        Expect::Errors,
    );
}

#[test]
fn hostile_yaml_template_unary_minus() {
    check_hostile("yaml_template_unary_minus", Expect::Errors);
}

#[test]
fn hostile_yaml_template_concatenation() {
    check_hostile("yaml_template_concatenation", Expect::Errors);
}

#[test]
fn hostile_yaml_template_loop() {
    check_hostile("yaml_template_loop", Expect::Errors);
}

/// What a hostile seed must end in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// At least one error.
    Errors,
    /// No error: the shape is odd but valid.
    Valid,
}

/// Runs one hostile seed, unmutated, through the binary and then through the library (on a
/// thread with the binary's stack): both end without a crash, within the fuzzer's time
/// budget, in what `expect` says. The binary goes first: a stack overflow there fails this
/// test alone, where in this process it would abort every test.
fn check_hostile(name: &str, expect: Expect) {
    let seed = hostile_seeds()
        .into_iter()
        .find(|seed| seed.name == name)
        .unwrap_or_else(|| panic!("no hostile seed `{name}`"));
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), seed.syntax, &seed.bytes);
    for format in ["human", "json"] {
        if let Err(failure) = run_binary(dir.path(), format) {
            panic!("{name}: {failure}");
        }
    }
    let context = CheckContext::new(FuzzConfig::from_env().budget);
    let checked = std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let (validated, _) = context.validate(path.parent().unwrap())?;
            context.check_validated(&validated)?;
            match (expect, validated.has_errors()) {
                (Expect::Errors, false) => Err("no error".to_string()),
                (Expect::Valid, true) => Err(format!(
                    "errors in a valid document: {:?}",
                    validated.diagnostics
                )),
                _ => Ok(()),
            }
        })
        .unwrap()
        .join();
    match checked {
        Ok(Ok(())) => {}
        Ok(Err(failure)) => panic!("{name}: {failure}"),
        Err(payload) => panic!("{name}: the check panicked: {}", panic_text(&*payload)),
    }
}

/// What one run fuzzes, from the environment.
#[derive(Clone)]
struct FuzzConfig {
    seed: u64,
    first: u64,
    end: u64,
    budget: Duration,
    skip_kdl: bool,
}

impl FuzzConfig {
    fn from_env() -> FuzzConfig {
        let number = |name: &str| {
            std::env::var(name).ok().map(|text| {
                let text = text.trim().replace('_', "");
                let parsed = match text.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => text.parse(),
                };
                parsed.unwrap_or_else(|err| panic!("{name}={text}: {err}"))
            })
        };
        let seed = number("STEWARD_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
        let (first, end) = match number("STEWARD_FUZZ_ITERATION") {
            Some(only) => (only, only + 1),
            None => (
                0,
                number("STEWARD_FUZZ_ITERATIONS").unwrap_or(DEFAULT_ITERATIONS),
            ),
        };
        FuzzConfig {
            seed,
            first,
            end,
            budget: Duration::from_millis(number("STEWARD_FUZZ_BUDGET_MS").unwrap_or(2_000)),
            skip_kdl: std::env::var_os("STEWARD_FUZZ_SKIP_KDL").is_some_and(|v| v != "0"),
        }
    }

    fn iterations(&self) -> u64 {
        self.end - self.first
    }

    /// The command line that runs `iteration` again.
    fn replay(&self, iteration: u64) -> String {
        let kdl = if self.skip_kdl {
            "STEWARD_FUZZ_SKIP_KDL=1 "
        } else {
            ""
        };
        format!(
            "`{kdl}STEWARD_FUZZ_SEED={:#x} STEWARD_FUZZ_ITERATION={iteration} \
             cargo test --test it fuzz::mutated -- --nocapture`",
            self.seed
        )
    }
}

/// What a fuzz run found.
struct Summary {
    n_inputs: u64,
    n_kdl: u64,
    n_cli: u64,
    elapsed: Duration,
    slowest: Vec<Slow>,
    n_failed: u64,
    failures: Vec<String>,
}

struct Slow {
    elapsed: Duration,
    iteration: u64,
    syntax: Syntax,
    n_bytes: usize,
    description: String,
}

/// The fuzz loop; runs on its own thread.
fn fuzz(
    config: &FuzzConfig,
    seeds: &[Seed],
    dir: &Path,
    progress: &Mutex<Option<(u64, Instant)>>,
) -> Summary {
    let context = CheckContext::new(config.budget);
    let started = Instant::now();
    let mut summary = Summary {
        n_inputs: 0,
        n_kdl: 0,
        n_cli: 0,
        elapsed: Duration::ZERO,
        slowest: Vec::new(),
        n_failed: 0,
        failures: Vec::new(),
    };
    for iteration in config.first..config.end {
        let input = make_input(config.seed, iteration, seeds);
        std::fs::write(
            dir.join("iteration"),
            format!("{}\n{}\n", config.replay(iteration), input.description),
        )
        .unwrap();
        write_input(dir, input.syntax, &input.bytes);
        *progress.lock().unwrap() = Some((iteration, Instant::now()));
        let mut outcome = context.validate(dir).and_then(|(validated, elapsed)| {
            context.check_validated(&validated)?;
            Ok(elapsed)
        });
        if outcome.is_ok() && iteration % CLI_SAMPLE_EVERY == CLI_SAMPLE_EVERY - 1 {
            let format = if iteration % 2 == 0 { "json" } else { "human" };
            summary.n_cli += 1;
            if let Err(failure) = run_binary(dir, format) {
                outcome = Err(failure);
            }
        }
        *progress.lock().unwrap() = None;
        summary.n_inputs += 1;
        if config.iterations() >= 20_000 && summary.n_inputs.is_multiple_of(10_000) {
            eprintln!(
                "fuzz: {} inputs, {} failed, {:.0?}",
                summary.n_inputs,
                summary.n_failed,
                started.elapsed()
            );
        }
        summary.n_kdl += u64::from(input.syntax == Syntax::Kdl);
        match outcome {
            Ok(elapsed) => {
                summary.slowest.push(Slow {
                    elapsed,
                    iteration,
                    syntax: input.syntax,
                    n_bytes: input.bytes.len(),
                    description: input.description,
                });
                summary
                    .slowest
                    .sort_by_key(|slow| std::cmp::Reverse(slow.elapsed));
                summary.slowest.truncate(5);
            }
            Err(failure) => {
                summary.n_failed += 1;
                if summary.failures.len() >= MAX_FAILURES {
                    continue;
                }
                let saved = save_failed(config, iteration, dir);
                summary.failures.push(format!(
                    "iteration {iteration} ({}; {} bytes, saved as {}): {failure}\n  \
                     replay: {}",
                    input.description,
                    input.bytes.len(),
                    saved.display(),
                    config.replay(iteration)
                ));
            }
        }
    }
    summary.elapsed = started.elapsed();
    summary
}

/// Copies the input in `dir` to `target/tmp/fuzz-failures/`, named by seed and iteration.
fn save_failed(config: &FuzzConfig, iteration: u64, dir: &Path) -> PathBuf {
    let failed_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    std::fs::create_dir_all(&failed_dir).unwrap();
    let syntax = if dir.join("a.kdl").exists() {
        Syntax::Kdl
    } else {
        Syntax::Yaml
    };
    let extension = syntax.extension();
    let saved = failed_dir.join(format!(
        "seed-{:x}-iteration-{iteration}.{extension}",
        config.seed
    ));
    std::fs::copy(dir.join(format!("a.{extension}")), &saved).unwrap();
    saved
}

/// The resources of the reference project that an input over the time budget is compared
/// with (about 0.13 s in a debug build on an idle 2-core machine).
const REFERENCE_RESOURCES: usize = 2_000;

/// How many reference validations an input may cost when it is over the budget: the budget is
/// a hang detector, and a machine busy with other tests slows both alike.
const REFERENCE_MULTIPLE: u32 = 15;

/// What every check needs, made once.
struct CheckContext {
    registry: Registry,
    facts: Facts,
    budget: Duration,
}

impl CheckContext {
    fn new(budget: Duration) -> CheckContext {
        CheckContext {
            registry: Registry::builtin(),
            facts: steward::facts::local(Path::new("/")),
            budget,
        }
    }

    /// Loads and validates the project in `dir`, within the time budget; a panic is a
    /// failure. Timing is noisy on a busy machine (`cargo test` runs tests side by side), so
    /// an input over the budget runs once more and fails only when both runs are over.
    fn validate(&self, dir: &Path) -> Result<(Validated, Duration), String> {
        let (validated, elapsed) = self.validate_once(dir)?;
        if elapsed <= self.budget {
            return Ok((validated, elapsed));
        }
        let (validated, again) = self.validate_once(dir)?;
        if again <= self.budget {
            return Ok((validated, again));
        }
        // Still over: is the input slow, or the machine? A reference project of known, linear
        // cost validated now tells; the input fails when it costs more than
        // `REFERENCE_MULTIPLE` of those as well as the budget.
        // The reference and the input are timed side by side, up to three times, because a
        // burst of load from the tests beside this one can land on either; the input fails
        // only when every pair has it over.
        let mut pairs = Vec::new();
        for _ in 0..3 {
            let reference = self.reference_time()?;
            let (validated, took) = self.validate_once(dir)?;
            if took <= reference * REFERENCE_MULTIPLE {
                return Ok((validated, took));
            }
            pairs.push(format!("{took:.1?} against {reference:.1?}"));
        }
        Err(format!(
            "took {elapsed:.1?}, then {again:.1?}: over the budget of {:?}, and over \
             {REFERENCE_MULTIPLE}x a reference of {REFERENCE_RESOURCES} resources timed beside it \
             ({})",
            self.budget,
            pairs.join(", ")
        ))
    }

    /// How long validating a reference project of [`REFERENCE_RESOURCES`] files takes now.
    fn reference_time(&self) -> Result<Duration, String> {
        let dir = tempfile::tempdir().map_err(|err| err.to_string())?;
        let mut text = String::from("steward: 1\nresources:\n");
        for i in 0..REFERENCE_RESOURCES {
            text.push_str(&format!(
                "  file:/srv/ref/f{i}:\n    content: \"line {i}\\n\"\n    mode: \"0644\"\n"
            ));
        }
        std::fs::write(dir.path().join("site.yaml"), text).map_err(|err| err.to_string())?;
        let (validated, took) = self.validate_once(dir.path())?;
        if validated.has_errors() {
            return Err(format!(
                "the reference project is not valid: {:?}",
                validated.diagnostics
            ));
        }
        Ok(took)
    }

    fn validate_once(&self, dir: &Path) -> Result<(Validated, Duration), String> {
        let started = Instant::now();
        let validated = std::panic::catch_unwind(AssertUnwindSafe(|| {
            validate(dir, &self.registry, self.facts.clone(), BTreeMap::new())
        }))
        .map_err(|payload| format!("panicked: {}", panic_text(&*payload)))?;
        Ok((validated, started.elapsed()))
    }

    /// Checks what validation returned: sound diagnostics and a JSON rendering.
    fn check_validated(&self, validated: &Validated) -> Result<(), String> {
        let sources = &validated.project.sources;
        for diag in &validated.diagnostics {
            if diag.code.is_empty() || diag.message.trim().is_empty() {
                return Err(format!("a diagnostic without code or message: {diag:?}"));
            }
            for label in &diag.labels {
                check_span(sources, label.span)
                    .map_err(|why| format!("{why} in `{}`: {}", diag.code, diag.message))?;
            }
        }
        let rendered = std::panic::catch_unwind(|| {
            steward::report::diagnostics::json(&validated.diagnostics, sources)
        })
        .map_err(|payload| format!("the JSON rendering panicked: {}", panic_text(&*payload)))?;
        let parsed: serde_json::Value = serde_json::from_str(&rendered)
            .map_err(|err| format!("the JSON rendering is not JSON: {err}"))?;
        let n_rendered = parsed["diagnostics"].as_array().map_or(0, Vec::len);
        if n_rendered != validated.diagnostics.len() {
            return Err(format!(
                "the JSON rendering has {n_rendered} of {} diagnostics",
                validated.diagnostics.len()
            ));
        }
        Ok(())
    }
}

fn check_span(sources: &SourceMap, span: steward::diag::Span) -> Result<(), String> {
    if span.source.0 as usize >= sources.len() {
        return Err(format!("a span in unknown source {:?}", span.source));
    }
    let text = &sources.get(span.source).text;
    if span.start > span.end || span.end > text.len() {
        return Err(format!(
            "span {}..{} is outside the {} bytes of {}",
            span.start,
            span.end,
            text.len(),
            sources.get(span.source).name
        ));
    }
    if !text.is_char_boundary(span.start) || !text.is_char_boundary(span.end) {
        return Err(format!(
            "span {}..{} of {} splits a character",
            span.start,
            span.end,
            sources.get(span.source).name
        ));
    }
    Ok(())
}

/// Runs `steward validate` on `dir`: it must exit 0 or 1, in time, without crashing.
fn run_binary(dir: &Path, format: &str) -> Result<(), String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    command
        .args(["validate", ".", "--format", format])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A long run outlives builds: the binary may be missing for a moment while cargo links it.
    let mut child = (0..10)
        .find_map(|_| {
            command
                .spawn()
                .inspect_err(|_| std::thread::sleep(Duration::from_secs(1)))
                .ok()
        })
        .unwrap_or_else(|| panic!("cannot start {}", env!("CARGO_BIN_EXE_steward")));
    // Both pipes drain on their own threads, so a long report cannot block the child.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let Some(status) = child.wait_timeout(Duration::from_secs(60)).unwrap() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "`steward validate --format {format}` ran over 60 s"
        ));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    let crashed = stderr.contains("steward crashed") || stderr.contains("panicked");
    if !matches!(status.code(), Some(0 | 1)) || crashed {
        return Err(format!(
            "`steward validate --format {format}` ended with {status}:\n{}",
            tail(&stderr, 2_000)
        ));
    }
    if format == "json" {
        serde_json::from_str::<serde_json::Value>(&stdout)
            .map_err(|err| format!("`steward validate --format json` printed no JSON: {err}"))?;
    } else if status.code() == Some(1) && stderr.trim().is_empty() {
        return Err("`steward validate` failed without a word".to_string());
    }
    Ok(())
}

fn tail(text: &str, n_bytes: usize) -> &str {
    let mut start = text.len().saturating_sub(n_bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(not a string)".to_string())
}

/// Writes `bytes` as the only document in `dir` and returns its path.
fn write_input(dir: &Path, syntax: Syntax, bytes: &[u8]) -> PathBuf {
    let other = match syntax {
        Syntax::Yaml => Syntax::Kdl,
        Syntax::Kdl => Syntax::Yaml,
    };
    let _ = std::fs::remove_file(dir.join(format!("a.{}", other.extension())));
    let path = dir.join(format!("a.{}", syntax.extension()));
    std::fs::write(&path, bytes).unwrap();
    // The quickstart's template, so documents that name it render it.
    let template = dir.join("templates/app.conf.j2");
    if !template.exists() {
        std::fs::create_dir_all(template.parent().unwrap()).unwrap();
        std::fs::copy(
            repo().join("examples/quickstart/templates/app.conf.j2"),
            template,
        )
        .unwrap();
    }
    path
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Syntax {
    Yaml,
    Kdl,
}

impl Syntax {
    fn extension(self) -> &'static str {
        match self {
            Syntax::Yaml => "yaml",
            Syntax::Kdl => "kdl",
        }
    }
}

/// A document the mutations start from.
struct Seed {
    name: String,
    syntax: Syntax,
    bytes: Vec<u8>,
    hostile: bool,
}

/// Every document under `examples/` and `stdlib/`, then the hostile shapes.
fn all_seeds(skip_kdl: bool) -> Vec<Seed> {
    let mut seeds = Vec::new();
    for dir in ["examples", "stdlib"] {
        let mut files = Vec::new();
        collect_documents(&repo().join(dir), &mut files);
        files.sort();
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let syntax = if name.ends_with(".kdl") {
                Syntax::Kdl
            } else {
                Syntax::Yaml
            };
            seeds.push(Seed {
                name: file.strip_prefix(repo()).unwrap().display().to_string(),
                syntax,
                bytes: std::fs::read(&file).unwrap(),
                hostile: false,
            });
        }
    }
    assert!(
        seeds.iter().any(|seed| seed.syntax == Syntax::Kdl) && seeds.len() >= 5,
        "the examples are missing: {:?}",
        seeds.iter().map(|seed| &seed.name).collect::<Vec<_>>()
    );
    seeds.extend(
        hostile_seeds()
            .into_iter()
            .filter(|seed| !OWN_TEST_ONLY.contains(&seed.name.as_str())),
    );
    if skip_kdl {
        seeds.retain(|seed| seed.syntax == Syntax::Yaml);
    }
    seeds
}

fn collect_documents(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_documents(&path, files);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "kdl")
        {
            files.push(path);
        }
    }
}

/// Hostile seeds that are not mutated, only run by their own test. The billion laughs stop at
/// the node limit after a few hundred milliseconds in a debug build: mutated by the hundred
/// they would be most of the run (a small one is mutated instead; repeating a slice of it
/// grows it).
const OWN_TEST_ONLY: &[&str] = &["yaml_billion_laughs"];

/// Shapes that have broken readers: deep nesting, long runs of one token, huge numbers,
/// bad bytes.
fn hostile_seeds() -> Vec<Seed> {
    let seed = |name: &str, syntax: Syntax, bytes: Vec<u8>| Seed {
        name: name.to_string(),
        syntax,
        bytes,
        hostile: true,
    };
    let kdl = |name: &str, text: String| seed(name, Syntax::Kdl, text.into_bytes());
    let yaml = |name: &str, text: String| seed(name, Syntax::Yaml, text.into_bytes());
    let long = "x".repeat(70_000);
    // Each level is nine aliases of the one before: 9^(levels + 1) values once expanded.
    let laughs = |n_levels: u8| {
        let mut text =
            String::from("steward: 1\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for level in 1..=n_levels {
            let refs = vec![format!("*l{}", level - 1); 9].join(", ");
            text.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
        }
        text.push_str(&format!(
            "resources:\n  file:/x: {{ content: *l{n_levels} }}\n"
        ));
        text
    };
    let nested_maps: String = (0..1_000)
        .map(|depth| format!("{}a:\n", " ".repeat(depth)))
        .collect();
    vec![
        kdl("kdl_closing_braces", "}".repeat(7_500)),
        kdl("kdl_type_annotations", format!("{}b", "(t)".repeat(15_000))),
        kdl(
            "kdl_nested_comments",
            format!("steward 1\n{}{}", "/*".repeat(3_700), "*/".repeat(3_700)),
        ),
        kdl("kdl_slashdash_chain", format!("a {}1", "/-".repeat(2_200))),
        kdl(
            "kdl_comment_of_stars",
            format!("steward 1\n/*{}*/\n", "*".repeat(20_000)),
        ),
        kdl(
            "kdl_opening_braces",
            format!("steward 1\n{}", "a {".repeat(10_000)),
        ),
        kdl(
            "kdl_long_string",
            format!(
                "steward 1\nfile \"/{long}\" no_such_attribute=1\nfile \"/x\" content=\"{long}\n"
            ),
        ),
        kdl(
            "kdl_huge_numbers",
            "steward 99999999999999999999999\nparameter \"p\" type=\"number\" \
             default=1e999\nfile \"/x\" mode=-0x8000000000000000\n"
                .to_string(),
        ),
        seed(
            "kdl_bad_bytes",
            Syntax::Kdl,
            b"steward 1\nfile \"/x\" content=\"\0\xff\xfe\xc3\" mode=\"\xed\xa0\x80\"\n".to_vec(),
        ),
        yaml("yaml_flow_sequences", "[".repeat(10_000)),
        yaml("yaml_flow_maps", format!("a: {}", "{a: ".repeat(10_000))),
        yaml(
            "yaml_block_sequences",
            format!("{}x\n", "- ".repeat(10_000)),
        ),
        yaml("yaml_nested_maps", nested_maps),
        yaml("yaml_billion_laughs", laughs(8)),
        yaml("yaml_few_laughs", laughs(3)),
        yaml(
            "yaml_anchors",
            format!("steward: 1\nx: {}x\n", "&a ".repeat(10_000)),
        ),
        yaml(
            "yaml_aliases",
            format!("steward: 1\na: &a x\nb: [{}]\n", "*a, ".repeat(50_000)),
        ),
        yaml("yaml_complex_keys", format!("{}x\n", "? ".repeat(10_000))),
        yaml("yaml_documents", "---\nsteward: 1\n".repeat(5_000)),
        yaml(
            "yaml_binary_tags",
            format!("steward: 1\nx: {}x\n", "!!binary ".repeat(5_000)),
        ),
        yaml(
            "yaml_long_line",
            format!(
                "steward: 1\nresources:\n  file:/x: {{ content: \"{long}\" }}\n  file:/{long}: {{}}\n"
            ),
        ),
        yaml(
            "yaml_huge_numbers",
            "steward: 99999999999999999999999\nresources:\n  file:/x: { mode: 1e999, owner: \
             -0x8000000000000000 }\n"
                .to_string(),
        ),
        seed(
            "yaml_bad_bytes",
            Syntax::Yaml,
            b"steward: 1\0\nresources:\n  file:/x: { content: \"\xff\xfe\xc3\" }\n".to_vec(),
        ),
        // minijinja counts columns in a u16 that saturates; an error past column 65,535 then
        // adds 1 to the span, a panic where overflow checks are on (found by this fuzzer;
        // Cargo.toml turns them off for minijinja in debug builds, as release builds do).
        yaml(
            "yaml_template_error_past_column_65535",
            format!(
                "steward: 1\nresources:\n  file:/x:\n    content: \"{}{{{{ $ }}}}\"\n",
                "x".repeat(65_540)
            ),
        ),
        // U+0085 (NEL) is two bytes, and minijinja finds it an unexpected character (its span
        // ended inside the character until `template` kept error ranges on boundaries).
        yaml(
            "yaml_template_error_at_a_multibyte_character",
            "steward: 1\nresources:\n  file:/x:\n    content: \"{% if true \u{85}%}x{% endif %}\"\n"
                .to_string(),
        ),
        // minijinja parses and compiles `- - - 1` by recursion, one level a sign (this
        // overflowed the stack until templates were limited to 1,000 operators).
        yaml(
            "yaml_template_unary_minus",
            format!(
                "steward: 1\nresources:\n  file:/x:\n    content: \"{{{{ {}1 }}}}\"\n",
                "- ".repeat(40_000)
            ),
        ),
        // Each `~` copies the text so far, and fuel counts steps, not bytes copied (this took
        // seconds until templates were limited to 1,000 operators).
        yaml(
            "yaml_template_concatenation",
            format!(
                "steward: 1\nresources:\n  file:/x:\n    content: \"{{{{ x{} }}}}\"\n",
                " ~ x".repeat(20_000)
            ),
        ),
        yaml(
            "yaml_template_loop",
            "steward: 1\nresources:\n  file:/x:\n    content: \"{% for i in range(100000000) \
             %}{% for j in range(100000000) %}x{% endfor %}{% endfor %}\"\n  \"file:/y{{ item \
             }}\":\n    for_each: \"{{ range(100000000) | list }}\"\n    content: x\n"
                .to_string(),
        ),
    ]
}

/// One mutated input, and how it was made (for the slowest-inputs list and failures).
struct Input {
    syntax: Syntax,
    bytes: Vec<u8>,
    description: String,
}

/// Tokens that open, close or chain structure in either spelling.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "- ",
    "/*",
    "*/",
    "/-",
    "(t)",
    "&a ",
    "*a ",
    "---\n",
    "!!binary ",
    "? ",
    ": ",
    ", ",
    "\n",
    "  ",
    "\"",
    "'",
    "#",
    "\\",
    ";",
    "=",
    "#true",
    "#null",
    "r#\"",
    "\"#",
    "<<: *a\n",
    "{{ ",
    " }}",
    "{% ",
    " %}",
    "|\n",
    ">-\n",
    "\t",
    "\r",
    "\"\"\"\n",
    "#inf",
    "0x",
];

/// Numbers no reader can hold.
const NUMBERS: &[&str] = &[
    "99999999999999999999999",
    "1e999",
    "-1e999",
    "-0x8000000000000000",
    "-9223372036854775809",
    "18446744073709551616",
    "0x_",
    "0o77777777777777777777777",
    "0b11111111111111111111111111111111111111111111111111111111111111111",
    ".nan",
    "#-inf",
    "1.0e-99999",
];

/// NUL, invalid UTF-8 and odd whitespace.
const BAD_BYTES: &[&[u8]] = &[
    b"\0",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xef\xbb\xbf",
    "\u{2028}".as_bytes(),
    "\u{85}".as_bytes(),
    "\u{feff}".as_bytes(),
    b"\xe2\x80",
];

/// Input `iteration` of `seed`: the same pair always makes the same input.
fn make_input(seed: u64, iteration: u64, seeds: &[Seed]) -> Input {
    let mut rng = Rng(seed ^ iteration.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.next();
    // Most inputs grow from the examples, which are small and quick; the hostile shapes are
    // large, and a few hundred of them already cover their neighborhoods.
    let n_examples = seeds.iter().take_while(|seed| !seed.hostile).count();
    let base = if rng.chance(60) && n_examples > 0 {
        &seeds[rng.below(n_examples)]
    } else {
        rng.pick(seeds)
    };
    let mut syntax = base.syntax;
    let mut bytes = base.bytes.clone();
    let mut steps = vec![base.name.clone()];
    // Now and then one spelling is read as the other.
    if rng.chance(3) && seeds.iter().any(|seed| seed.syntax != syntax) {
        syntax = match syntax {
            Syntax::Yaml => Syntax::Kdl,
            Syntax::Kdl => Syntax::Yaml,
        };
        steps.push(format!("read as {syntax:?}"));
    }
    let n_mutations = 1 + rng.below(4);
    for _ in 0..n_mutations {
        steps.push(mutate(&mut rng, &mut bytes, seeds));
        if bytes.len() > MAX_INPUT_BYTES {
            bytes.truncate(MAX_INPUT_BYTES);
            steps.push(format!("cut to {MAX_INPUT_BYTES}"));
        }
    }
    Input {
        syntax,
        bytes,
        description: steps.join(", "),
    }
}

/// Applies one random mutation to `bytes` and says which.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, seeds: &[Seed]) -> String {
    let at = rng.below(bytes.len() + 1);
    match rng.below(12) {
        0 if !bytes.is_empty() => {
            let idx = at.min(bytes.len() - 1);
            bytes[idx] ^= 1 << rng.below(8);
            format!("flip @{idx}")
        }
        1 => {
            let byte = if rng.chance(50) {
                *rng.pick(b"{}[]()-:,#*&!?|>\"'/\\=;\n \t0")
            } else {
                rng.next() as u8
            };
            bytes.insert(at, byte);
            format!("insert {byte:#04x} @{at}")
        }
        2 => {
            let max = if rng.chance(20) { bytes.len() } else { 16 };
            let len = rng.count(max);
            let end = (at + len).min(bytes.len());
            bytes.drain(at..end);
            format!("delete {at}..{end}")
        }
        3 => {
            let other = rng.pick(seeds);
            let from = rng.below(other.bytes.len() + 1);
            bytes.truncate(at);
            bytes.extend_from_slice(&other.bytes[from..]);
            format!("splice {}[{from}..] @{at}", other.name)
        }
        4 if !bytes.is_empty() => {
            let start = at.min(bytes.len() - 1);
            let len = rng.count(64).min(bytes.len() - start);
            let times = rng.count(MAX_INPUT_BYTES / 2 / len);
            let slice = bytes[start..start + len].to_vec();
            let repeated = slice.repeat(times);
            bytes.splice(start..start, repeated);
            format!("repeat {start}..{} x{times}", start + len)
        }
        5 => {
            let len = 70_000 + rng.below(30_000);
            let quoted = rng.chance(50);
            let mut line = Vec::with_capacity(len + 2);
            if quoted {
                line.push(b'"');
            }
            line.extend(std::iter::repeat_n(*rng.pick(b"xa9 /{"), len));
            if quoted {
                line.push(b'"');
            }
            bytes.splice(at..at, line);
            format!("long line of {len} @{at}")
        }
        6 => {
            let number = rng.pick(NUMBERS);
            bytes.splice(at..at, number.bytes());
            format!("number {number} @{at}")
        }
        7 => {
            let bad = rng.pick(BAD_BYTES);
            bytes.splice(at..at, bad.iter().copied());
            format!("bytes {bad:?} @{at}")
        }
        8 | 9 => {
            let token = rng.pick(TOKENS);
            let times = rng.count(20_000);
            bytes.splice(at..at, token.repeat(times).into_bytes());
            format!("{token:?} x{times} @{at}")
        }
        _ => {
            let token = rng.pick(TOKENS);
            bytes.splice(at..at, token.bytes());
            format!("{token:?} @{at}")
        }
    }
}

/// splitmix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// A count in `1..=max`, spread evenly over orders of magnitude.
    fn count(&mut self, max: usize) -> usize {
        let max = max.max(1);
        let bits = usize::BITS - max.leading_zeros();
        let ceiling = (1usize << self.below(bits as usize + 1)).min(max);
        1 + self.below(ceiling)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
