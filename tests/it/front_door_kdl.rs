//! Hostile KDL through the real binary: each ends in located diagnostics and exit 1, never a
//! crash. The inputs are those of issue 11, which overflowed the stack of the `kdl` crate's
//! parser (exit 134, no diagnostic) before steward read KDL with its own parser.

use crate::common::TestEnv;

/// One diagnostic as `validate --format json` gives it.
struct Found {
    code: String,
    line: u64,
    column: u64,
    message: String,
}

/// Validates a project of one file and returns every diagnostic; asserts exit 1.
fn diagnose(name: &str, text: &str) -> Vec<Found> {
    let env = TestEnv::new();
    env.write(name, text);
    let out = env.run(&["validate", ".", "--format", "json"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(!out.stderr.contains("panicked"), "{}", out.all());
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|diag| Found {
            code: diag["code"].as_str().unwrap_or("").to_string(),
            line: diag["line"].as_u64().unwrap_or(0),
            column: diag["column"].as_u64().unwrap_or(0),
            message: diag["message"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}

/// Asserts exactly one diagnostic, with this code, line, column and message start.
fn expect_one(name: &str, text: &str, code: &str, line: u64, column: u64, message: &str) {
    let found = diagnose(name, text);
    let listed: Vec<String> = found
        .iter()
        .map(|f| format!("{}:{}:{} {}", f.code, f.line, f.column, f.message))
        .collect();
    assert_eq!(found.len(), 1, "{listed:#?}");
    let diag = &found[0];
    assert_eq!(
        (diag.code.as_str(), diag.line, diag.column),
        (code, line, column),
        "{listed:#?}"
    );
    assert!(diag.message.starts_with(message), "{listed:#?}");
}

#[test]
fn thousands_of_closing_braces() {
    expect_one(
        "a.kdl",
        &"}".repeat(7_500),
        "document::kdl",
        1,
        1,
        "invalid KDL: unexpected `}`",
    );
}

#[test]
fn thousands_of_type_annotations() {
    let text = format!("{}b", "(t)".repeat(15_000));
    expect_one(
        "a.kdl",
        &text,
        "document::kdl",
        1,
        4,
        "invalid KDL: expected a node name, found `(`",
    );
}

#[test]
fn deeply_nested_comments_are_valid_kdl() {
    // `/*` x 3,700 then `*/` x 3,700 is one nested comment: valid, and ignored.
    let text = format!(
        "steward 1\n{}{}\nfile \"/srv/x\" {{\n    conten \"x\"\n}}\n",
        "/*".repeat(3_700),
        "*/".repeat(3_700)
    );
    expect_one(
        "a.kdl",
        &text,
        "schema::unknown_attribute",
        4,
        5,
        "unknown attribute `conten`",
    );
}

#[test]
fn an_unclosed_nested_comment() {
    let text = format!("steward 1\n{}{}\n", "/*".repeat(3_700), "*/".repeat(3_699));
    expect_one(
        "a.kdl",
        &text,
        "document::kdl",
        2,
        1,
        "invalid KDL: comment is never closed",
    );
}

#[test]
fn a_chain_of_slashdashes() {
    let text = format!("a {}1", "/-".repeat(2_200));
    expect_one(
        "a.kdl",
        &text,
        "document::kdl",
        1,
        3,
        "invalid KDL: `/-` twice in a row",
    );
}

#[test]
fn comments_full_of_stars_and_slashes() {
    // The `kdl` crate recursed once per `*` or `/` inside a comment.
    let text = format!(
        "steward 1\n/* {} {} */\nfile \"/srv/x\" mdoe=\"0644\"\n",
        "*".repeat(20_000),
        "a/".repeat(20_000)
    );
    expect_one(
        "a.kdl",
        &text,
        "schema::unknown_attribute",
        3,
        15,
        "unknown attribute `mdoe`",
    );
}

#[test]
fn blocks_nested_past_the_limit() {
    let text = format!("steward 1\na {}{}\n", "{ b ".repeat(100), "}".repeat(100));
    // The 65th `{` is refused; the text after it is skipped, not read.
    expect_one(
        "a.kdl",
        &text,
        "document::too_deep",
        2,
        3 + 4 * 64,
        "KDL nesting deeper than 64 levels",
    );
}

#[test]
fn a_file_with_thousands_of_errors_reports_the_first_hundred() {
    // Each line is a broken node: one diagnostic each, then one that counts the rest.
    let text = "steward 1\n".to_string() + &"node 1abc\n".repeat(5_000);
    let found = diagnose("a.kdl", &text);
    assert_eq!(found.len(), 101);
    assert!(found[..100].iter().all(|f| f.code == "document::kdl"));
    assert_eq!((found[0].line, found[0].column), (2, 6));
    assert_eq!((found[99].line, found[99].column), (101, 6));
    assert_eq!(found[100].code, "document::more_problems");
    assert_eq!(
        found[100].message,
        "4900 more problems in this file not shown"
    );
}

#[test]
fn too_many_values() {
    // Values are counted as in YAML, keys not counted: the document's map, `steward`'s 1 and
    // the resources' map, then each resource's map, `mode` and `content`: 83,333 resources
    // make 250,002 values.
    let resource = "file \"/srv/x{}\" mode=\"0644\" {\n    content \"x\"\n}\n";
    let text: String = std::iter::once("steward 1\n".to_string())
        .chain((0..83_333).map(|i| resource.replace("{}", &i.to_string())))
        .collect();
    let found = diagnose("a.kdl", &text);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].code, "document::kdl");
    assert_eq!(
        found[0].message,
        "invalid KDL: more than 250,000 values in one file"
    );
    // One resource fewer is within the limit.
    let text: String = std::iter::once("steward 1\n".to_string())
        .chain((0..83_332).map(|i| resource.replace("{}", &i.to_string())))
        .collect();
    let env = TestEnv::new();
    env.write("a.kdl", text);
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 0, "{}", out.all());
}

#[test]
fn too_many_nodes_and_entries() {
    // Half a million one-word nodes: refused by the parser before any tree is built.
    let text = format!("steward 1\n{}", "a\n".repeat(510_000));
    expect_one(
        "a.kdl",
        &text,
        "document::kdl",
        500_000,
        1,
        "invalid KDL: more than 500,000 nodes and entries in one file",
    );
}

#[test]
fn bare_keywords_say_how_to_write_them() {
    expect_one(
        "a.kdl",
        "steward 1\nservice \"nginx\" enable=true\n",
        "document::kdl",
        2,
        24,
        "invalid KDL: `true` must be written `#true`",
    );
}

#[test]
fn a_file_of_comments_alone_is_an_error() {
    expect_one(
        "a.kdl",
        "// nothing yet\n/* still nothing */\n",
        "document::empty",
        1,
        1,
        "the file holds no document",
    );
    expect_one(
        "a.yaml",
        "# nothing yet\n\n",
        "document::empty",
        1,
        1,
        "the file holds no document",
    );
}

#[test]
fn a_project_without_documents_is_an_error() {
    let env = TestEnv::new();
    env.write("README.md", "not a document\n");
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("no documents in `.`"), "{}", out.all());
}
