//! Front-door hardening (issue 11): no input crashes steward.
//!
//! Each hostile input ends in one located diagnostic in the user's words, with exit 1; a
//! line too long for miette's width formatting is clipped, not a panic; and a panic, should
//! one happen, exits 70 with a bug-report note (driven by the `STEWARD_TEST_PANIC` hook).

use crate::common::{Output, TestEnv, run_in_with_env};

/// Words of serde-saphyr's or Rust's vocabulary that must never reach a user.
const LIBRARY_WORDS: &[&str] = &[
    "Options",
    "Option<",
    "Spanned",
    "Nodes {",
    "DuplicateKeyPolicy",
    "budget breached",
    "Budget",
    "ignore_binary_tag",
    "configured policy",
    "saphyr",
    "serde",
];

/// One diagnostic of `validate --format json`.
struct Diag {
    code: String,
    line: u64,
    column: u64,
    message: String,
    help: String,
}

/// Validates a project holding `file` with `text`; checks exit 1 and exactly one
/// diagnostic, with no library words in its message or help, and returns it.
fn check(file: &str, text: impl AsRef<[u8]>) -> Diag {
    let env = TestEnv::new();
    env.write(file, text);
    let out = env.run(&["validate", ".", "--format", "json"]);
    assert_eq!(out.code, 1, "{}", short(&out));
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let diagnostics = json["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 1, "{}", short(&out));
    let diag = &diagnostics[0];
    let res = Diag {
        code: diag["code"].as_str().unwrap().to_string(),
        line: diag["line"].as_u64().unwrap(),
        column: diag["column"].as_u64().unwrap(),
        message: diag["message"].as_str().unwrap().to_string(),
        help: diag["help"].as_str().unwrap_or_default().to_string(),
    };
    assert_eq!(diag["file"].as_str(), Some(format!("./{file}").as_str()));
    for word in LIBRARY_WORDS {
        assert!(!res.message.contains(word), "{word:?} in {:?}", res.message);
        assert!(!res.help.contains(word), "{word:?} in {:?}", res.help);
    }
    // The human rendering of the same input: one report, no panic, no library words.
    let human = env.run(&["validate", "."]);
    assert_eq!(human.code, 1, "{}", short(&human));
    assert!(!human.stderr.contains("panicked"), "{}", short(&human));
    for word in LIBRARY_WORDS {
        assert!(
            !human.stderr.contains(word),
            "{word:?} in {}",
            short(&human)
        );
    }
    let location = format!("./{file}:{}:{}", res.line, res.column);
    assert!(
        human.stderr.contains(&location),
        "{location} in {}",
        short(&human)
    );
    res
}

/// At most 3,000 characters of a run's output, for assertion messages.
fn short(out: &Output) -> String {
    out.all().chars().take(3_000).collect()
}

fn assert_diag(diag: &Diag, code: &str, line: u64, column: u64, message: &str) {
    assert_eq!(
        (diag.code.as_str(), diag.line, diag.column),
        (code, line, column),
        "{}",
        diag.message
    );
    assert!(
        diag.message.contains(message),
        "{message:?} not in {:?}",
        diag.message
    );
}

#[test]
fn a_mistake_past_column_65535_is_located_and_clipped() {
    let text = format!(
        "{{\"steward\": 1, \"resources\": {{\"file:/x\": {{\"content\": \"{}\", \"mdoe\": \"0644\"}}}}}}\n",
        "a".repeat(70_000)
    );
    let column = text.find("\"mdoe\"").unwrap() as u64 + 1;
    assert!(column > 70_000);
    let diag = check("site.yaml", &text);
    assert_diag(
        &diag,
        "schema::unknown_attribute",
        1,
        column,
        "unknown attribute `mdoe`",
    );
    let env = TestEnv::new();
    env.write("site.yaml", &text);
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 1, "{}", short(&out));
    assert!(
        out.stderr.contains(&format!("[./site.yaml:1:{column}]")),
        "{}",
        short(&out)
    );
    // The snippet shows the mistake with a little of the line around it, clipped.
    let snippet = out
        .stderr
        .lines()
        .find(|line| line.contains("\"mdoe\": \"0644\""))
        .unwrap_or_else(|| panic!("no snippet in {}", short(&out)));
    assert!(snippet.contains('…'), "{snippet}");
    assert!(snippet.contains("aaaa"), "{snippet}");
    for line in out.stderr.lines() {
        assert!(line.chars().count() <= 200, "{line}");
    }
}

#[test]
fn a_long_kdl_line_is_located_and_clipped() {
    let text = format!(
        "steward 1\nfile \"/x\" content=\"{}\" mdoe=\"0644\"\n",
        "a".repeat(70_000)
    );
    let column = text.lines().nth(1).unwrap().find("mdoe").unwrap() as u64 + 1;
    let diag = check("site.kdl", &text);
    assert_diag(
        &diag,
        "schema::unknown_attribute",
        2,
        column,
        "unknown attribute `mdoe`",
    );
}

#[test]
fn yaml_node_budget() {
    // The root map, `1` and the list are values 1 to 3, so item 249,998 is value 250,001.
    let text = format!("steward: 1\nx: [{}]\n", vec!["1"; 250_001].join(","));
    let column = "x: [".len() as u64 + 2 * 249_997 + 1;
    let diag = check("site.yaml", text);
    assert_diag(
        &diag,
        "document::yaml",
        2,
        column,
        "more than 250,000 values in one file",
    );
    assert!(diag.help.contains("split the documents over several files"));
}

#[test]
fn yaml_node_budget_does_not_count_keys() {
    // 200,000 keys with 200,000 values: over the limit if keys counted, within it as they
    // do not (the error is the unknown top-level key, not a limit).
    let mut text = String::from("steward: 1\nx:\n");
    for idx in 0..200_000 {
        text.push_str(&format!("  k{idx}: 1\n"));
    }
    let diag = check("site.yaml", text);
    assert_eq!(diag.code, "schema::unknown_key", "{}", diag.message);
}

#[test]
fn yaml_document_budget() {
    let diag = check("site.yaml", "---\nsteward: 1\n".repeat(1_025));
    assert_diag(
        &diag,
        "document::yaml",
        2 * 1_024 + 1,
        1,
        "more than 1,024 documents in one file",
    );
}

#[test]
fn yaml_null_key() {
    let diag = check("site.yaml", "steward: 1\n~: 1\n");
    assert_diag(&diag, "document::yaml", 2, 1, "a map key is null or empty");
    let diag = check("site.yaml", "steward: 1\n? : 1\n");
    assert_diag(
        &diag,
        "document::yaml",
        2,
        3,
        "a map key must be text, not null, a list or a map",
    );
    let diag = check("site.yaml", "steward: 1\n[a]: 1\n");
    assert_diag(
        &diag,
        "document::yaml",
        2,
        1,
        "a map key must be text, not null, a list or a map",
    );
}

#[test]
fn yaml_binary_value() {
    let diag = check("site.yaml", "steward: 1\nx: !!binary //79\n");
    assert_diag(
        &diag,
        "document::yaml",
        2,
        13,
        "a `!!binary` value is not UTF-8 text",
    );
    let diag = check("site.yaml", "steward: 1\nx: !!binary \"!!!\"\n");
    assert_diag(
        &diag,
        "document::yaml",
        2,
        13,
        "a `!!binary` value is not valid base64",
    );
}

#[test]
fn yaml_non_finite_numbers() {
    // serde-saphyr's "rejected by the configured policy": NaN and infinity.
    for (value, column) in [(".nan", 4), ("-.inf", 4), ("1e999", 4)] {
        let diag = check("site.yaml", format!("steward: 1\nx: {value}\n"));
        assert_diag(
            &diag,
            "document::yaml",
            2,
            column,
            &format!("`{value}` is not a finite number"),
        );
    }
}

#[test]
fn yaml_alias_bomb() {
    let mut text =
        String::from("steward: 1\na: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n");
    for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
        .iter()
        .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
    {
        let refs = vec![format!("*{prev}"); 9].join(", ");
        text.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    // Line 7 is `f: &f [*e, ...]`: its aliases cross the limit, at the first `*e`.
    let diag = check("bomb.yaml", text);
    assert_diag(
        &diag,
        "document::yaml",
        7,
        8,
        "aliases repeat more than 100,000 values in one file",
    );
    assert!(diag.help.contains("aliases"), "{}", diag.help);
}

#[test]
fn yaml_too_many_aliases() {
    let text = format!(
        "steward: 1\na: &a 1\nx: [{}]\n",
        vec!["*a"; 1_001].join(", ")
    );
    let diag = check("site.yaml", text);
    assert_eq!((diag.code.as_str(), diag.line), ("document::yaml", 3));
    assert!(
        diag.message
            .contains("more than 1,000 aliases (`*name`) in one file"),
        "{}",
        diag.message
    );
}

#[test]
fn yaml_nesting_65_deep() {
    // The root map is level 1, so 64 brackets make 65 levels; the 64th bracket is too deep.
    let text = format!("steward: 1\nx: {}{}\n", "[".repeat(64), "]".repeat(64));
    let diag = check("site.yaml", text);
    assert_diag(
        &diag,
        "document::yaml",
        2,
        3 + 64,
        "nesting deeper than 64 levels of maps and lists",
    );
    // 64 levels are fine: the error is then the unknown top-level key.
    let text = format!("steward: 1\nx: {}{}\n", "[".repeat(63), "]".repeat(63));
    assert_eq!(check("site.yaml", text).code, "schema::unknown_key");
}

#[test]
fn yaml_duplicate_key() {
    let diag = check("site.yaml", "steward: 1\nsteward: 1\n");
    assert_diag(&diag, "document::yaml", 2, 1, "duplicate key `steward`");
}

/// Runs `steward validate .` in an empty project with `STEWARD_TEST_PANIC` set.
fn run_with_test_panic(value: &str) -> Output {
    let env = TestEnv::new();
    env.write("site.yaml", "steward: 1\n");
    run_in_with_env(
        env.path(),
        &["validate", "."],
        &[("STEWARD_TEST_PANIC", value)],
    )
}

#[test]
fn an_internal_error_exits_70_with_a_bug_report_note() {
    for (value, reason) in [
        ("1", "a deliberate panic to test the internal-error path"),
        ("rayon", "a deliberate panic in a rayon worker"),
    ] {
        let out = run_with_test_panic(value);
        assert_eq!(out.code, 70, "{}", out.all());
        assert!(out.stdout.is_empty(), "{}", out.all());
        assert!(
            out.stderr
                .starts_with("error: internal error: steward panicked at src/cli/mod.rs:"),
            "{}",
            out.all()
        );
        for fragment in [
            reason,
            "This is a bug in steward, not a problem with your documents.",
            &format!("the steward version: {}", env!("CARGO_PKG_VERSION")),
            "the command line you ran",
            "the documents, or a minimal set of documents that reproduces it",
            "RUST_BACKTRACE=1",
        ] {
            assert!(
                out.stderr.contains(fragment),
                "{fragment:?} in {}",
                out.all()
            );
        }
        assert_eq!(
            out.stderr.matches("Please report it").count(),
            1,
            "{}",
            out.all()
        );
        // Rust's own message is replaced, not repeated.
        assert!(!out.stderr.contains("thread '"), "{}", out.all());
    }
}

#[test]
fn the_test_hook_does_nothing_unless_asked() {
    for value in ["", "0", "yes"] {
        let out = run_with_test_panic(value);
        assert_eq!(out.code, 0, "{}", out.all());
    }
}
