//! `plan` and `apply` in local mode.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::output::{APPLY_JSON_NEEDS_YES, json_answer, table_width};
use crate::cli::{
    ApplyArgs, Context, DriftArgs, Exit, FindingsAction, FindingsArgs, LocalArgs, OutputFormat,
    PlanArgs, ProjectArgs, ReportArgs, ReportFormat, RunsArgs, StoreArgs, confirm_apply, overrides,
    print_stdout, report_human, usage_error,
};
use crate::engine::{self, record};
use crate::exec;
use crate::local::{self, Planned, SavedPlan};
use crate::report::plan::{Origin, PlanParameter, Style, parameter_hash};
use crate::resource::Registry;
use crate::store::Store;
use crate::store::sqlite::SqliteStore;
use crate::validate::{Validated, validate};

/// `.steward/` inside the project (beside a single-document project).
fn default_state_dir(project: &Path) -> PathBuf {
    if project.is_file() {
        project.parent().unwrap_or(Path::new(".")).join(".steward")
    } else {
        project.join(".steward")
    }
}

fn local_config(
    root: PathBuf,
    project: &Path,
    args: &LocalArgs,
    overrides: BTreeMap<String, String>,
) -> Result<local::Config, String> {
    let target = engine::Selector::parse(&args.target).map_err(|err| err.to_string())?;
    let filter = engine::ResourceFilter::new(&args.resource, &args.exclude)
        .map_err(|err| err.to_string())?;
    Ok(local::Config {
        root,
        state_dir: args
            .state_dir
            .clone()
            .unwrap_or_else(|| default_state_dir(project)),
        target,
        filter,
        overrides,
    })
}

fn load(
    ctx: &Context,
    project: &Path,
    overrides: BTreeMap<String, String>,
    registry: &Registry,
) -> Validated {
    validate(project, registry, crate::facts::local(&ctx.root), overrides)
}

fn check_root(root: &Path) -> Result<(), String> {
    if root.is_dir() {
        Ok(())
    } else {
        Err(format!("--root `{}` is not a directory", root.display()))
    }
}

/// A progress bar on stderr, only on a terminal and for human output.
fn progress(enabled: bool, len: usize, message: &'static str) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

fn warn_unreachable(planned: &Planned<'_>) {
    let unreachable = &planned.run.unreachable;
    if !unreachable.is_empty() {
        eprintln!(
            "note: {} {} resources, but local mode acts only on `local`; the controller (`steward serve`) reaches the others",
            unreachable.join(", "),
            if unreachable.len() == 1 {
                "has"
            } else {
                "have"
            },
        );
    }
}

/// Checks the root, reads and validates the project and builds the local-mode settings;
/// `Err` holds the exit code once the problem has been reported.
fn prepare(
    ctx: &Context,
    project: &ProjectArgs,
    local_args: &LocalArgs,
    registry: &Registry,
) -> std::io::Result<Result<(Validated, local::Config), Exit>> {
    if let Err(message) = check_root(&ctx.root) {
        return usage_error(&message).map(Err);
    }
    let overrides = match overrides(project) {
        Ok(overrides) => overrides,
        Err(message) => return usage_error(&message).map(Err),
    };
    let mut validated = load(ctx, &project.path, overrides.clone(), registry);
    if validated.has_errors() {
        report_human(ctx, &validated)?;
        return Ok(Err(Exit::Error));
    }
    let config = match local_config(ctx.root.clone(), &project.path, local_args, overrides) {
        Ok(config) => config,
        Err(message) => return usage_error(&message).map(Err),
    };
    if let Err(err) = engine::select::narrow(
        &mut validated,
        registry,
        config.target.as_ref(),
        &config.filter,
    ) {
        return usage_error(&err.to_string()).map(Err);
    }
    Ok(Ok((validated, config)))
}

pub(super) fn plan(ctx: &Context, args: &PlanArgs) -> std::io::Result<Exit> {
    let registry: &Registry = &ctx.registry;
    let (validated, config) = match prepare(ctx, &args.project, &args.local, registry)? {
        Ok(prepared) => prepared,
        Err(exit) => return Ok(exit),
    };
    let spinner = progress(args.format == OutputFormat::Human, 0, "probing");
    let planned = local::plan(&validated, registry, &config);
    spinner.finish_and_clear();
    let planned = match planned {
        Ok(planned) => planned,
        Err(err) => return usage_error(&err.to_string()),
    };
    warn_unreachable(&planned);
    // Relative to here, so the tree can move: `apply FILE` finds it from the same place.
    let project = relative_to_cwd(&args.project.path);
    let root = config.root.display().to_string();
    let parameters = plan_parameters(&config.overrides, &validated.model.secrets);
    let target = config.target.as_ref().map(ToString::to_string);
    let origin = Origin {
        project: &project,
        root: &root,
        documents_digest: &planned.run.digest,
        documents: &planned.documents,
        target: target.as_deref(),
        resources: &config.filter.resources,
        excludes: &config.filter.excludes,
        parameters: &parameters,
    };
    match args.format {
        OutputFormat::Human => print_plan(&planned, &config.filter, Style::new(ctx.stdout_color))?,
        OutputFormat::Json => print_stdout(&crate::report::plan::json(
            &planned.run.plan,
            &planned.run.nodes,
            &origin,
        ))?,
    };
    if let Some(out) = &args.out {
        let text = crate::report::plan::json(&planned.run.plan, &planned.run.nodes, &origin);
        if let Err(err) = write_private(out, text.as_bytes()) {
            return usage_error(&format!(
                "cannot write the plan to {}: {err}",
                out.display()
            ));
        }
        if args.format == OutputFormat::Human {
            let sensitive: Vec<&str> = parameters
                .iter()
                .filter(|(_, value)| matches!(value, PlanParameter::Hash(_)))
                .map(|(name, _)| name.as_str())
                .collect();
            let params = if sensitive.is_empty() {
                String::new()
            } else {
                format!(
                    " and the sensitive parameters again ({})",
                    sensitive.join(", ")
                )
            };
            eprintln!(
                "Saved the plan to {}; apply it with `steward apply {}`{params}.",
                out.display(),
                out.display()
            );
        }
    }
    report_refusals(ctx, &validated, &planned)?;
    let summary = planned.run.plan.summary();
    let exit = if summary.errors > 0 {
        Exit::Error
    } else if args.detailed_exitcode && planned.run.plan.has_changes() {
        Exit::Changes
    } else {
        Exit::Ok
    };
    leak_at_exit(planned);
    leak_at_exit(validated);
    Ok(exit)
}

/// `path` relative to the current directory (`..` where it is outside), as a saved plan
/// names its project; as given when either cannot be resolved.
pub(super) fn relative_to_cwd(path: &Path) -> String {
    let resolved = std::fs::canonicalize(path)
        .and_then(|path| Ok((path, std::fs::canonicalize(std::env::current_dir()?)?)));
    let Ok((path, cwd)) = resolved else {
        return path.display().to_string();
    };
    let ours: Vec<_> = path.components().collect();
    let base: Vec<_> = cwd.components().collect();
    let common = ours.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut relative = PathBuf::new();
    for _ in common..base.len() {
        relative.push("..");
    }
    relative.extend(&ours[common..]);
    if relative.as_os_str().is_empty() {
        relative.push(".");
    }
    relative.display().to_string()
}

/// The parameter values a saved plan keeps: a sensitive one (its text is one of the model's
/// secrets) only as a hash.
fn plan_parameters(
    overrides: &BTreeMap<String, String>,
    secrets: &[String],
) -> BTreeMap<String, PlanParameter> {
    overrides
        .iter()
        .map(|(name, text)| {
            let kept = if secrets.contains(text) {
                PlanParameter::Hash(parameter_hash(text))
            } else {
                PlanParameter::Value(text.clone())
            };
            (name.clone(), kept)
        })
        .collect()
}

/// Leaves `value` to the end of the process instead of freeing it: a command that ends
/// right after would spend tens of milliseconds freeing the resources, observed states and
/// changes of thousands of files one by one, and the system takes the memory back at once.
/// Only for values that hold nothing but memory.
fn leak_at_exit<T>(value: T) {
    std::mem::forget(value);
}

/// Writes a file only its owner can read, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|err| err.error)?;
    Ok(())
}

pub(super) fn apply(ctx: &Context, args: &ApplyArgs) -> std::io::Result<Exit> {
    let registry: &Registry = &ctx.registry;
    let given = &args.project.path;
    // A saved plan names its project and root; anything else is a project.
    let saved = if given.is_file() {
        match SavedPlan::read(given) {
            Ok(saved) => saved,
            Err(err) => return usage_error(&err.to_string()),
        }
    } else {
        None
    };
    let json = args.format == OutputFormat::Json;
    if json && saved.is_none() && !args.yes {
        return usage_error(APPLY_JSON_NEEDS_YES);
    }
    if let Some(saved) = &saved
        && saved.root == crate::fleet::run::FLEET_ROOT
    {
        return usage_error(&format!(
            "{} was planned against a controller; set STEWARD_CONTROLLER (and STEWARD_TOKEN_FILE) to apply it",
            given.display()
        ));
    }
    let (project, root) = match &saved {
        Some(saved) => {
            let root = if ctx.root_given {
                ctx.root.clone()
            } else {
                PathBuf::from(&saved.root)
            };
            if let Err(err) = saved.check_root(&root) {
                return usage_error(&err.to_string());
            }
            let cwd = std::env::current_dir().unwrap_or_default();
            match saved.project_path(&cwd) {
                Ok(project) => (project, root),
                Err(err) => return usage_error(&err.to_string()),
            }
        }
        None => (given.clone(), ctx.root.clone()),
    };
    if let Err(message) = check_root(&root) {
        return usage_error(&message);
    }
    let ctx_root = Context {
        color: ctx.color,
        stdout_color: ctx.stdout_color,
        root: root.clone(),
        root_given: true,
        registry: ctx.registry.clone(),
    };
    let given = match overrides(&args.project) {
        Ok(given) => given,
        Err(message) => return usage_error(&message),
    };
    // A saved plan applies with the parameters it was made with.
    let overrides = match saved.as_ref().map(|saved| saved.parameters(&given)) {
        None => given,
        Some(Ok(overrides)) => overrides,
        Some(Err(err)) => return usage_error(&err.to_string()),
    };
    let mut validated = load(&ctx_root, &project, overrides.clone(), registry);
    if validated.has_errors() {
        report_human(ctx, &validated)?;
        return Ok(Exit::Error);
    }
    let config = match local_config(root, &project, &args.local, overrides) {
        Ok(config) => config,
        Err(message) => return usage_error(&message),
    };
    if let Some(saved) = &saved
        && let Err(err) = saved.check_selection(config.target.as_ref(), &config.filter)
    {
        return usage_error(&err.to_string());
    }
    if let Err(err) = engine::select::narrow(
        &mut validated,
        registry,
        config.target.as_ref(),
        &config.filter,
    ) {
        return usage_error(&err.to_string());
    }
    let planned = match local::plan(&validated, registry, &config) {
        Ok(planned) => planned,
        Err(err) => return usage_error(&err.to_string()),
    };
    warn_unreachable(&planned);
    if let Some(saved) = &saved
        && let Err(err) = saved.check(&planned)
    {
        return usage_error(&err.to_string());
    }
    // What apply would refuse stops the whole apply before anything changes.
    if report_refusals(ctx, &validated, &planned)? {
        if !json {
            print_plan(&planned, &config.filter, Style::new(ctx.stdout_color))?;
        }
        return Ok(Exit::Error);
    }
    // The store is opened (and a foreign or newer one refused) before anything changes.
    let mut store = match open_store(&config.state_dir) {
        Ok(store) => store,
        Err(message) => return usage_error(&message),
    };
    let started_at = record::timestamp();
    let style = Style::new(ctx.stdout_color);
    if !planned.run.plan.has_changes() && planned.run.plan.summary().errors == 0 {
        if !json {
            print_plan(&planned, &config.filter, style)?;
        }
        // Nothing to do is still a compliant run: it resolves findings.
        let record = record::observed_record(
            crate::store::RunKind::Apply,
            &validated,
            &planned.run,
            &planned.run.run_id,
            &started_at,
            &project_name(&project),
        );
        if let Err(message) = record_run(&mut store, &config.state_dir, &record, args.keep_runs) {
            return usage_error(&message);
        }
        if json {
            return print_recorded(&store, &record);
        }
        return Ok(Exit::Ok);
    }
    let ask = saved.is_none() && !args.yes;
    // Nobody reads a plan that goes to a file or a pipe while it is written, and nobody is
    // asked about it: it is streamed out while the apply runs, ahead of the apply's report.
    // On a terminal it is shown whole first.
    let stream_plan = !json && !ask && !std::io::stdout().is_terminal();
    if !json && !stream_plan {
        print_plan(&planned, &config.filter, style)?;
    }
    if ask {
        if !std::io::stdin().is_terminal() {
            return usage_error("refusing to apply without --yes: no terminal to ask on");
        }
        if !confirm_apply()? {
            return Ok(Exit::Error);
        }
    }
    let n_resources: usize = planned.run.nodes.iter().map(|n| n.resources.len()).sum();
    let bar = progress(true, n_resources, "applying");
    let on_done = |_: &exec::ResourceOutcome| bar.inc(1);
    let parallel = usize::from(args.parallel);
    let (reports, printed) = std::thread::scope(|scope| {
        let printer =
            stream_plan.then(|| scope.spawn(|| print_plan(&planned, &config.filter, style)));
        let reports = local::apply(
            &planned,
            registry,
            &config,
            exec::Config { parallel },
            &on_done,
        );
        let printed = match printer.map(|printer| printer.join()) {
            None | Some(Ok(Ok(_))) => Ok(()),
            Some(Ok(Err(err))) => Err(err),
            Some(Err(_)) => Err(std::io::Error::other("printing the plan panicked")),
        };
        (reports, printed)
    });
    bar.finish_and_clear();
    let reports = match reports {
        Ok(reports) => reports,
        Err(err) => return usage_error(&err.to_string()),
    };
    // What was done is recorded even when stdout has gone away.
    let printed = if json {
        printed.map(|()| Exit::Ok)
    } else {
        printed.and_then(|()| {
            print_stdout(&format!(
                "\n{}",
                crate::report::plan::human_apply(&reports, registry, style)
            ))
        })
    };
    let record = record::apply_record(
        &validated,
        &planned.run,
        &reports,
        &planned.run.run_id,
        &started_at,
        &project_name(&project),
    );
    if let Err(message) = record_run(&mut store, &config.state_dir, &record, args.keep_runs) {
        return usage_error(&message);
    }
    // As JSON, the answer is the recorded run, so it is printed once the run is stored.
    let printed = if json {
        printed.and_then(|_| print_recorded(&store, &record))
    } else {
        printed
    };
    let failed = reports.iter().any(|r| r.n_failed() > 0);
    // The store is closed as usual when it goes out of scope.
    leak_at_exit(record);
    leak_at_exit(reports);
    leak_at_exit(planned);
    leak_at_exit(validated);
    if failed {
        return Ok(Exit::Error);
    }
    printed
}

/// Prints a recorded run as `steward report --format json` does, with the open findings.
fn print_recorded(store: &SqliteStore, record: &crate::store::RunRecord) -> std::io::Result<Exit> {
    match store.findings(false) {
        Ok(findings) => print_stdout(&crate::report::run::json(record, &findings)),
        Err(err) => usage_error(&err.to_string()),
    }
}

/// Prints what applying the plan would refuse as located errors on standard error; true
/// when there is any.
fn report_refusals(
    ctx: &Context,
    validated: &Validated,
    planned: &local::Planned<'_>,
) -> std::io::Result<bool> {
    let refusals = planned.run.plan.refusals(&planned.run.nodes);
    if refusals.is_empty() {
        return Ok(false);
    }
    let mut stderr = std::io::stderr().lock();
    super::render::human(
        &mut stderr,
        &refusals,
        &validated.project.sources,
        ctx.color,
    )?;
    Ok(true)
}

/// Streams the human plan to stdout.
fn print_plan(
    planned: &local::Planned<'_>,
    filter: &engine::ResourceFilter,
    style: Style,
) -> std::io::Result<Exit> {
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let header = crate::report::plan::targeting_header(&filter.resources, &filter.excludes);
    stdout.write_all(header.as_bytes())?;
    crate::report::plan::write_human(&mut stdout, &planned.run.plan, &planned.run.nodes, style)?;
    stdout.flush()?;
    Ok(Exit::Ok)
}

/// The project path as records keep it: absolute when it can be.
fn project_name(project: &Path) -> String {
    std::fs::canonicalize(project)
        .unwrap_or_else(|_| project.to_path_buf())
        .display()
        .to_string()
}

/// Opens the store in a state directory (created private when missing).
fn open_store(state_dir: &Path) -> Result<SqliteStore, String> {
    crate::state_dir::create_private_dir(state_dir).map_err(|err| err.to_string())?;
    SqliteStore::open(&crate::store::sqlite::path_in(state_dir)).map_err(|err| err.to_string())
}

/// Records a run and applies the retention.
fn record_run(
    store: &mut SqliteStore,
    state_dir: &Path,
    record: &crate::store::RunRecord,
    keep: u32,
) -> Result<(), String> {
    store
        .record_run(record)
        .map_err(|err| format!("cannot record the run: {err}"))?;
    store
        .prune(keep as usize)
        .map_err(|err| format!("cannot prune old runs: {err}"))?;
    prune_backups(store, state_dir);
    Ok(())
}

/// Deletes the backups of runs older than every run the store still keeps (run ids sort by
/// time), so backups follow the run retention.
fn prune_backups(store: &SqliteStore, state_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(state_dir.join("backups")) else {
        return;
    };
    let Ok(Some(oldest)) = store.oldest_run_id() else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().as_ref() < oldest.as_str() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The state directory a store command reads.
fn store_dir(args: &StoreArgs) -> PathBuf {
    args.state_dir
        .clone()
        .unwrap_or_else(|| default_state_dir(&args.project))
}

/// Opens an existing store for reading commands; a missing one is an error, not a new file.
pub(super) fn open_existing_store(args: &StoreArgs) -> Result<SqliteStore, String> {
    let dir = store_dir(args);
    let path = crate::store::sqlite::path_in(&dir);
    if !path.exists() {
        return Err(format!(
            "no runs recorded in {} yet; `steward apply` and `steward drift` record them",
            dir.display()
        ));
    }
    SqliteStore::open(&path).map_err(|err| err.to_string())
}

pub(super) fn drift(ctx: &Context, args: &DriftArgs) -> std::io::Result<Exit> {
    let registry: &Registry = &ctx.registry;
    let (validated, config) = match prepare(ctx, &args.project, &args.local, registry)? {
        Ok(prepared) => prepared,
        Err(exit) => return Ok(exit),
    };
    let started_at = record::timestamp();
    let planned = match local::plan(&validated, registry, &config) {
        Ok(planned) => planned,
        Err(err) => return usage_error(&err.to_string()),
    };
    warn_unreachable(&planned);
    let record = record::observed_record(
        crate::store::RunKind::Drift,
        &validated,
        &planned.run,
        &planned.run.run_id,
        &started_at,
        &project_name(&args.project.path),
    );
    let stored = open_store(&config.state_dir)
        .and_then(|mut store| record_run(&mut store, &config.state_dir, &record, args.keep_runs));
    if let Err(message) = stored {
        return usage_error(&message);
    }
    let n_drifted = record.count(crate::store::ResultOutcome::Drifted);
    let n_failed = record.count(crate::store::ResultOutcome::Failed);
    match args.format {
        OutputFormat::Human => {
            let style = Style::new(ctx.stdout_color);
            print_plan(&planned, &config.filter, style)?;
            print_stdout(&format!(
                "Drift: {n_drifted} drifted, {n_failed} failed, recorded as run {} (`steward report {}`).\n",
                record.id, record.id
            ))?;
        }
        OutputFormat::Json => {
            let findings = open_store(&config.state_dir)
                .and_then(|store| store.findings(false).map_err(|err| err.to_string()));
            match findings {
                Ok(findings) => print_stdout(&crate::report::run::json(&record, &findings))?,
                Err(message) => return usage_error(&message),
            };
        }
    }
    Ok(if n_failed > 0 {
        Exit::Error
    } else if args.detailed_exitcode && n_drifted > 0 {
        Exit::Changes
    } else {
        Exit::Ok
    })
}

pub(super) fn runs(args: &RunsArgs) -> std::io::Result<Exit> {
    let store = match open_existing_store(&args.store) {
        Ok(store) => store,
        Err(message) => return usage_error(&message),
    };
    let runs = match store.runs() {
        Ok(runs) => runs,
        Err(err) => return usage_error(&err.to_string()),
    };
    let text = match args.format {
        OutputFormat::Human => crate::report::run::runs_table(&runs, table_width()),
        OutputFormat::Json => {
            let runs: Vec<_> = runs.iter().map(crate::fleet::api::RunInfo::from).collect();
            json_answer("steward-runs", serde_json::json!({ "runs": runs }))
        }
    };
    print_stdout(&text)
}

pub(super) fn findings(args: &FindingsArgs) -> std::io::Result<Exit> {
    let mut store = match open_existing_store(&args.store) {
        Ok(store) => store,
        Err(message) => return usage_error(&message),
    };
    if let Some(FindingsAction::Resolve { id, note }) = &args.action {
        return match store.resolve_finding(*id, note.as_deref()) {
            Ok(finding) if args.format == OutputFormat::Json => print_stdout(&json_answer(
                "steward-finding",
                serde_json::json!({ "finding": crate::fleet::api::FindingInfo::from(&finding) }),
            )),
            Ok(finding) => print_stdout(&format!(
                "resolved finding {}: {} of {} on {}\n",
                finding.id,
                finding.kind.as_str(),
                finding.resource,
                finding.node
            )),
            Err(err) => usage_error(&err.to_string()),
        };
    }
    let findings = match store.findings(args.all) {
        Ok(findings) => findings,
        Err(err) => return usage_error(&err.to_string()),
    };
    let text = match args.format {
        OutputFormat::Human => {
            crate::report::run::findings_table(&findings, args.all, table_width())
        }
        OutputFormat::Json => {
            let findings: Vec<_> = findings
                .iter()
                .map(crate::fleet::api::FindingInfo::from)
                .collect();
            json_answer(
                "steward-findings",
                serde_json::json!({ "all": args.all, "findings": findings }),
            )
        }
    };
    print_stdout(&text)
}

pub(super) fn report(ctx: &Context, args: &ReportArgs) -> std::io::Result<Exit> {
    let store = match open_existing_store(&args.store) {
        Ok(store) => store,
        Err(message) => return usage_error(&message),
    };
    let run = match store.run(args.run.as_deref()) {
        Ok(run) => run,
        Err(crate::store::StoreError::NoRun(id)) => {
            eprintln!("error: no run `{id}`; the recorded runs are:");
            let runs = store.runs().unwrap_or_default();
            eprint!("{}", crate::report::run::runs_table(&runs, None));
            return Ok(Exit::Error);
        }
        Err(err) => return usage_error(&err.to_string()),
    };
    let findings = match store.findings(true) {
        Ok(findings) => findings,
        Err(err) => return usage_error(&err.to_string()),
    };
    let style = Style::new(ctx.stdout_color);
    let text = match args.format {
        ReportFormat::Human => crate::report::run::human(&run, &findings, style),
        ReportFormat::Json => crate::report::run::json(&run, &findings),
        ReportFormat::Junit => crate::report::run::junit(&run),
        ReportFormat::Sarif => crate::report::run::sarif(&run),
        ReportFormat::Markdown => crate::report::run::markdown(&run, &findings),
    };
    print_stdout(&text)?;
    Ok(Exit::Ok)
}
