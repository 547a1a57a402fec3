//! `steward validate`: good projects pass; every class of bad input exits 1 with its location.

use crate::common::{TestEnv, repo, run_in};

/// Writes `file` with `text`, validates the project, and checks exit 1 plus every expected
/// fragment (locations as `file:line:column`, messages) in the output.
fn check_bad(file: &str, text: impl AsRef<[u8]>, expected: &[&str]) {
    let env = TestEnv::new();
    env.write(file, text);
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 1, "{}", out.all());
    for fragment in expected {
        assert!(
            out.stderr.contains(fragment),
            "missing {fragment:?} in\n{}",
            out.all()
        );
    }
    assert!(!out.stderr.contains("panicked"), "{}", out.all());
}

#[test]
fn examples_are_valid() {
    for example in [
        "examples/quickstart",
        "examples/quickstart-kdl",
        "examples/fleet",
    ] {
        let out = run_in(repo(), &["validate", example]);
        assert_eq!(out.code, 0, "{example}: {}", out.all());
        assert!(out.stdout.starts_with("valid: "), "{}", out.all());
    }
}

#[test]
fn a_single_document_can_be_validated() {
    let out = run_in(repo(), &["validate", "examples/quickstart-kdl/site.kdl"]);
    assert_eq!(out.code, 0, "{}", out.all());
}

#[test]
fn malformed_yaml() {
    check_bad(
        "site.yaml",
        "steward: 1\nresources:\n  file:/a: {content: \"x\"\n  file:/b: {}\n",
        &["./site.yaml:4:", "invalid YAML"],
    );
}

#[test]
fn malformed_kdl() {
    check_bad(
        "site.kdl",
        "steward 1\nfile \"/a\" {\n    content \"x\n}\n",
        &["./site.kdl:3:", "invalid KDL"],
    );
}

#[test]
fn yaml_alias_bomb() {
    let mut text = String::from(
        "steward: 1\na: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n",
    );
    for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
        .iter()
        .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
    {
        let refs = vec![format!("*{prev}"); 9].join(", ");
        text.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    check_bad("bomb.yaml", text, &["./bomb.yaml:", "invalid YAML"]);
}

#[test]
fn deep_nesting_yaml_flow() {
    let text = format!(
        "steward: 1\nx: {}{}\n",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    check_bad("deep.yaml", text, &["./deep.yaml:2:", "invalid YAML"]);
}

#[test]
fn deep_nesting_yaml_block() {
    // Compact nested block sequences: `- - - ... a` is 20,000 levels on one line.
    let text = format!("steward: 1\nx:\n  {}a\n", "- ".repeat(20_000));
    check_bad("deep.yaml", text, &["./deep.yaml:3:", "invalid YAML"]);
}

#[test]
fn deep_nesting_kdl() {
    let text = format!(
        "steward 1\nfile \"/a\" {}{}\n",
        "{ x ".repeat(20_000),
        "}".repeat(20_000)
    );
    check_bad(
        "deep.kdl",
        text,
        &["./deep.kdl:2:", "nesting deeper than 64"],
    );
}

#[test]
fn binary_junk() {
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    check_bad("junk.yaml", &junk, &["./junk.yaml:1:", "not UTF-8"]);
    check_bad("junk.kdl", &junk, &["./junk.kdl:1:", "not UTF-8"]);
}

#[test]
fn invalid_utf8_is_located() {
    let mut text = b"steward: 1\nresources:\n  file:/a:\n    content: \"".to_vec();
    text.extend_from_slice(&[0xff, 0xfe]);
    text.extend_from_slice(b"\"\n");
    check_bad("bad.yaml", text, &["./bad.yaml:4:15", "not UTF-8"]);
}

#[test]
fn control_characters() {
    check_bad(
        "nul.yaml",
        "steward: 1\nresources:\n  file:/a: { content: \"a\0b\" }\u{0}\n",
        &["./nul.yaml:", "invalid YAML"],
    );
    check_bad(
        "nul.kdl",
        "steward 1\nfile \"/a\"\u{0}\n",
        &["./nul.kdl:2:", "invalid KDL"],
    );
}

#[test]
fn huge_file() {
    let env = TestEnv::new();
    let file = std::fs::File::create(env.path().join("huge.yaml")).unwrap();
    file.set_len(50 * 1024 * 1024).unwrap();
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("./huge.yaml:1:1"), "{}", out.all());
    assert!(out.stderr.contains("the limit is 8 MB"), "{}", out.all());
}

#[test]
fn relative_and_dotdot_paths() {
    let yaml = "steward: 1\nresources:\n  file:etc/motd: {}\n  file:/etc/../shadow: {}\n";
    check_bad(
        "site.yaml",
        yaml,
        &[
            "./site.yaml:3:3",
            "is not an absolute path",
            "./site.yaml:4:3",
            "has a `..` component",
        ],
    );
    let kdl = "steward 1\nfile \"etc/motd\"\nfile \"/etc/../shadow\"\n";
    check_bad(
        "site.kdl",
        kdl,
        &[
            "./site.kdl:2:1",
            "is not an absolute path",
            "./site.kdl:3:1",
            "has a `..` component",
        ],
    );
}

#[test]
fn relative_template_path_leaving_the_project() {
    let yaml = "steward: 1\nresources:\n  file:/a:\n    template: ../../etc/shadow\n";
    check_bad(
        "site.yaml",
        yaml,
        &["./site.yaml:4:15", "resolves outside the project"],
    );
    let kdl = "steward 1\nfile \"/a\" template=\"/etc/passwd\"\n";
    check_bad("site.kdl", kdl, &["./site.kdl:2:20", "is absolute"]);
}

#[test]
fn template_reached_through_a_symlink_out_of_the_project() {
    let env = TestEnv::new();
    env.write(
        "site.yaml",
        "steward: 1\nresources:\n  file:/a:\n    source: templates/x\n",
    );
    std::fs::create_dir_all(env.path().join("templates")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", env.path().join("templates/x")).unwrap();
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("./site.yaml:4:13"), "{}", out.all());
    assert!(
        out.stderr.contains("resolves outside the project"),
        "{}",
        out.all()
    );
}

#[test]
fn templates_may_be_reached_with_dotdot_inside_the_project() {
    let env = TestEnv::new();
    env.write(
        "web/site.yaml",
        "steward: 1\nresources:\n  file:/a:\n    template: ../templates/a.j2\n",
    );
    env.write("templates/a.j2", "hello {{ node.name }}\n");
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 0, "{}", out.all());
}

#[test]
fn missing_template_file() {
    check_bad(
        "site.yaml",
        "steward: 1\nresources:\n  file:/a: { template: nope.j2 }\n",
        &["./site.yaml:3:24", "cannot read"],
    );
}

#[test]
fn undefined_variable_inside_a_template_file() {
    let env = TestEnv::new();
    env.write(
        "site.yaml",
        "steward: 1\nresources:\n  file:/a: { template: a.j2 }\n",
    );
    env.write("a.j2", "one\n{{ params.nope }}\n");
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("./site.yaml:3:24"), "{}", out.all());
    assert!(
        out.stderr
            .contains("in template `a.j2`: line 2: undefined variable `params.nope`"),
        "{}",
        out.all()
    );
}

#[test]
fn one_identity_in_two_documents_on_different_nodes() {
    let env = TestEnv::new();
    env.write(
        "site.yaml",
        "steward: 1\nnodes:\n  web-1: { tags: { role: web } }\n  db-1: { tags: { role: db } }\nassociations:\n  web: { targets: { tags: { role: web } }, documents: [web.yaml] }\n  db: { targets: { tags: { role: db } }, documents: [db.yaml] }\n",
    );
    env.write("web.yaml", "steward: 1\nresources:\n  package:curl: {}\n");
    env.write("db.yaml", "steward: 1\nresources:\n  package:curl: {}\n");
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("`package:curl` is declared twice"),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("./web.yaml:3:3"), "{}", out.all());
    assert!(out.stderr.contains("./db.yaml:3:3"), "{}", out.all());
}

#[test]
fn one_document_through_two_associations() {
    let yaml = "steward: 1\nnodes:\n  web-1: { tags: { role: web } }\nassociations:\n  a: { targets: { names: [web-1] } }\n  b: { targets: { all: true } }\nresources:\n  package:curl: {}\n";
    check_bad(
        "site.yaml",
        yaml,
        &[
            "./site.yaml:6:3",
            "association `b` applies `./site.yaml` to node `web-1`, which association `a` already does",
        ],
    );
}

#[test]
fn command_line_parameters_win_over_associations() {
    let env = TestEnv::new();
    env.write(
        "site.yaml",
        "steward: 1\nparameters:\n  port: { type: number, default: 1 }\nassociations:\n  a: { targets: { names: [local] }, parameters: { port: 2 } }\nresources:\n  file:/a: { content: \"{{ params.port }}\" }\n",
    );
    let out = env.run(&["graph", ".", "--format", "json", "--param", "port=3"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let validated = steward::validate::validate(
        env.path(),
        &steward::resource::Registry::builtin(),
        steward::facts::local(std::path::Path::new("/")),
        [("port".to_string(), "3".to_string())].into(),
    );
    let content = validated.model.nodes[0].resources[0]
        .attr_str("content")
        .map(String::from);
    assert_eq!(content.as_deref(), Some("3"));
}

#[test]
fn duplicate_identities_point_at_both() {
    let env = TestEnv::new();
    env.write(
        "a.yaml",
        "steward: 1\nresources:\n  file:/etc/motd: { content: a }\n",
    );
    env.write("b.kdl", "steward 1\nfile \"/etc/motd\" content=\"b\"\n");
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("`file:/etc/motd` is declared twice"),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("./b.kdl:2:1"), "{}", out.all());
    assert!(out.stderr.contains("./a.yaml:3:3"), "{}", out.all());
    assert!(out.stderr.contains("first declared here"), "{}", out.all());
}

#[test]
fn duplicate_keys_in_one_document() {
    check_bad(
        "site.yaml",
        "steward: 1\nresources:\n  file:/a: {}\n  file:/a: {}\n",
        &["./site.yaml:4:", "duplicate"],
    );
    check_bad(
        "site.kdl",
        "steward 1\nfile \"/a\" mode=\"0644\" mode=\"0600\"\n",
        &["./site.kdl:2:", "given twice"],
    );
}

#[test]
fn unknown_types_and_attributes() {
    let yaml = "steward: 1\nresources:\n  fiel:/a: {}\n  file:/b:\n    mdoe: \"0644\"\n";
    check_bad(
        "site.yaml",
        yaml,
        &[
            "./site.yaml:3:3",
            "unknown resource type `fiel`",
            "did you mean `file`?",
            "./site.yaml:5:5",
            "unknown attribute `mdoe`",
            "did you mean `mode`?",
        ],
    );
    let kdl = "steward 1\nfiel \"/a\"\nfile \"/b\" mdoe=\"0644\"\n";
    check_bad(
        "site.kdl",
        kdl,
        &[
            "./site.kdl:2:1",
            "unknown resource type `fiel`",
            "./site.kdl:3:11",
            "did you mean `mode`?",
        ],
    );
}

#[test]
fn unknown_top_level_key() {
    check_bad(
        "site.yaml",
        "steward: 1\nresorces: {}\n",
        &[
            "./site.yaml:2:1",
            "unknown key `resorces`",
            "did you mean `resources`?",
        ],
    );
}

#[test]
fn missing_and_unsupported_version() {
    check_bad(
        "site.yaml",
        "resources: {}\n",
        &["./site.yaml:1:1", "steward: 1"],
    );
    check_bad(
        "site.kdl",
        "steward 2\n",
        &["./site.kdl:1:9", "newer than this steward reads"],
    );
}

#[test]
fn wrong_value_types() {
    let yaml = "steward: 1\nresources:\n  file:/a:\n    mode: 644\n  service:nginx:\n    enable: \"yes\"\n";
    check_bad(
        "site.yaml",
        yaml,
        &[
            "./site.yaml:4:11",
            "expected an octal mode string",
            "./site.yaml:6:13",
            "expected true or false",
        ],
    );
    let kdl = "steward 1\nfile \"/a\" mode=644\nservice \"nginx\" enable=\"yes\"\n";
    check_bad(
        "site.kdl",
        kdl,
        &[
            "./site.kdl:2:16",
            "expected an octal mode string",
            "./site.kdl:3:24",
            "expected true or false",
        ],
    );
}

#[test]
fn bad_enum_suggests() {
    let yaml = "steward: 1\nresources:\n  package:nginx: { ensure: lastest }\n";
    check_bad(
        "site.yaml",
        yaml,
        &["./site.yaml:3:28", "did you mean `latest`?"],
    );
}

#[test]
fn undefined_template_variables() {
    let yaml = "steward: 1\nparameters:\n  motd: { type: string, default: hi }\nresources:\n  file:/a:\n    content: \"say {{ params.mtod }}\"\n";
    check_bad(
        "site.yaml",
        yaml,
        &[
            "./site.yaml:6:22",
            "undefined variable `params.mtod`",
            "did you mean `motd`?",
        ],
    );
    let kdl = "steward 1\nparameter \"motd\" type=\"string\" default=\"hi\"\nfile \"/a\" {\n    content \"say {{ params.mtod }}\"\n}\n";
    check_bad(
        "site.kdl",
        kdl,
        &["./site.kdl:4:21", "undefined variable `params.mtod`"],
    );
}

#[test]
fn undefined_in_when_and_names() {
    let yaml = "steward: 1\nresources:\n  file:/a:\n    when: node.os.familly == \"debian\"\n  \"file:/b/{{ itme }}\":\n    for_each: [x]\n";
    check_bad(
        "site.yaml",
        yaml,
        &[
            "./site.yaml:4:11",
            "undefined variable `node.os.familly`",
            "did you mean `family`?",
            "undefined variable `itme`",
        ],
    );
}

#[test]
fn missing_references() {
    let yaml = "steward: 1\nresources:\n  package:nginx: {}\n  service:nginx:\n    require: [package:ngnix]\n";
    check_bad(
        "site.yaml",
        yaml,
        &[
            "./site.yaml:5:15",
            "names `package:ngnix`",
            "did you mean `package:nginx`?",
        ],
    );
    let kdl =
        "steward 1\npackage \"nginx\"\nservice \"nginx\" {\n    require \"package:ngnix\"\n}\n";
    check_bad(
        "site.kdl",
        kdl,
        &["./site.kdl:4:13", "names `package:ngnix`"],
    );
}

#[test]
fn cycles_print_the_cycle() {
    let yaml = "steward: 1\nresources:\n  exec:a:\n    command: /bin/true\n    require: [exec:b]\n  exec:b:\n    command: /bin/true\n    require: [exec:a]\n";
    check_bad(
        "site.yaml",
        yaml,
        &[
            "dependency cycle",
            "exec:a → exec:b → exec:a",
            "./site.yaml:8:15",
            " 5 │     require: [exec:b]",
        ],
    );
    let kdl = "steward 1\nexec \"a\" command=\"/bin/true\" {\n    require \"exec:b\"\n}\nexec \"b\" command=\"/bin/true\" {\n    require \"exec:a\"\n}\n";
    check_bad(
        "site.kdl",
        kdl,
        &[
            "exec:a → exec:b → exec:a",
            "./site.kdl:6:13",
            " 3 │     require \"exec:b\"",
        ],
    );
}

#[test]
fn cycles_through_implicit_edges() {
    // The directory contains the file (implicit), and the directory requires the file.
    let yaml = "steward: 1\nresources:\n  directory:/srv:\n    require: [file:/srv/a]\n  file:/srv/a: {}\n";
    check_bad(
        "site.yaml",
        yaml,
        &[
            "dependency cycle",
            "implicitly (inside directory)",
            "./site.yaml:4:15",
        ],
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let yaml = "steward: 1\nresources:\n  fiel:/a: {}\n  file:b: {}\n  file:/c: { mdoe: x }\n";
    let env = TestEnv::new();
    env.write("site.yaml", yaml);
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("error: 3 errors in 1 file"),
        "{}",
        out.all()
    );
}

#[test]
fn json_diagnostics() {
    let env = TestEnv::new();
    env.write(
        "site.yaml",
        "steward: 1\nresources:\n  file:/a:\n    mdoe: \"0644\"\n",
    );
    let out = env.run(&["validate", ".", "--format", "json"]);
    assert_eq!(out.code, 1, "{}", out.all());
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["format_version"], "1");
    assert_eq!(json["valid"], false);
    let diag = &json["diagnostics"][0];
    assert_eq!(diag["file"], "./site.yaml");
    assert_eq!(diag["line"], 4);
    assert_eq!(diag["column"], 5);
    assert_eq!(diag["code"], "schema::unknown_attribute");
    assert_eq!(diag["message"], "unknown attribute `mdoe` for `file`");
}

#[test]
fn sensitive_values_are_not_echoed_in_errors() {
    let yaml = "steward: 1\nparameters:\n  secret: { type: string, default: \"hunter2\", sensitive: true }\nresources:\n  file:/a:\n    mode: \"{{ params.secret }}\"\n";
    check_bad(
        "site.yaml",
        yaml,
        &["./site.yaml:6:11", "(sensitive value not shown)"],
    );
    let env = TestEnv::new();
    env.write("site.yaml", yaml);
    let out = env.run(&["validate", "."]);
    assert!(!out.stderr.contains("hunter2"), "{}", out.all());
}

#[test]
fn parameters_without_values() {
    let yaml = "steward: 1\nparameters:\n  db_password: { type: string, sensitive: true }\nresources:\n  file:/a: { content: \"{{ params.db_password }}\" }\n";
    check_bad(
        "site.yaml",
        yaml,
        &["./site.yaml:3:3", "parameter `db_password` has no value"],
    );
    let env = TestEnv::new();
    env.write("site.yaml", yaml);
    let out = env.run(&["validate", ".", "--param", "db_password=s3cret"]);
    assert_eq!(out.code, 0, "{}", out.all());
}

#[test]
fn associations_are_checked() {
    let yaml = "steward: 1\nassociations:\n  web:\n    targets: { tag: { role: web } }\n    schedule: \"rate(30 minuts)\"\n    mode: enforced\n    max_concurrency: \"200%\"\n    documents: [nope.yaml]\n";
    check_bad(
        "site.yaml",
        yaml,
        &[
            "./site.yaml:4:16",
            "unknown key `tag`",
            "./site.yaml:5:15",
            "is not a rate",
            "did you mean `enforce`?",
            "./site.yaml:7:22",
            "./site.yaml:8:17",
            "no document `nope.yaml`",
        ],
    );
}

#[test]
fn bad_cron() {
    let yaml = "steward: 1\nassociations:\n  web:\n    targets: { all: true }\n    schedule: \"61 * * * *\"\n";
    check_bad(
        "site.yaml",
        yaml,
        &["./site.yaml:5:15", "is not a cron expression"],
    );
}

#[test]
fn a_rate_too_long_is_refused_not_overflowed() {
    // 999999999999999999 days overflowed a multiplication (a panic in debug builds, a
    // wrapped number in release ones).
    for rate in ["rate(999999999999999999 days)", "rate(3651 days)"] {
        let yaml = format!(
            "steward: 1\nassociations:\n  web:\n    targets: {{ all: true }}\n    schedule: \"{rate}\"\n"
        );
        check_bad(
            "site.yaml",
            yaml,
            &["./site.yaml:5:15", "is not a rate", "at most ten years"],
        );
    }
}

#[test]
fn long_operator_chains_are_refused_not_a_stack_overflow() {
    // minijinja nests one level per operator of a chain and walks the tree recursively: 40,000
    // terms overflowed the stack (exit 134, no diagnostic).
    for (attr, value) in [
        ("content", format!("{{{{ 1{} }}}}", " + 1".repeat(40_000))),
        (
            "content",
            format!("{{{{ 'a'{} }}}}", "|upper".repeat(40_000)),
        ),
        ("when", format!("1{}", " == 1".repeat(40_000))),
    ] {
        let yaml = format!("steward: 1\nresources:\n  file:/x:\n    {attr}: \"{value}\"\n");
        check_bad(
            "site.yaml",
            yaml,
            &[
                "./site.yaml:4:",
                "an expression with more than 1,000 operators",
            ],
        );
    }
    // A thousand is fine, and strings are not operators.
    let env = TestEnv::new();
    env.write(
        "site.yaml",
        format!(
            "steward: 1\nresources:\n  file:/x:\n    content: \"{{{{ 1{} }}}}{{{{ '{}' }}}}\"\n",
            " + 1".repeat(999),
            "+".repeat(5_000)
        ),
    );
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 0, "{}", out.all());
}

#[test]
fn paths_linux_refuses_are_refused() {
    // 40,000 components: the ancestors of such a path, one id each, took 1.6 GB (a fuzz find).
    let deep = format!("/{}v", "v/".repeat(40_000));
    let wide = format!("/srv/{}", "x".repeat(256));
    for (key, message) in [
        (
            format!("symlink:{deep}"),
            "is longer than 4,095 bytes, the longest path Linux accepts",
        ),
        (
            format!("file:{wide}"),
            "has a component longer than 255 bytes, the longest file name Linux accepts",
        ),
    ] {
        // A YAML key longer than 1,024 characters must be an explicit one (`? `).
        let env = TestEnv::new();
        env.write(
            "site.yaml",
            format!("steward: 1\nresources:\n  ? \"{key}\"\n  : {{ target: /x }}\n"),
        );
        let out = env.run(&["validate", ".", "--format", "json"]);
        assert_eq!(out.code, 1, "{}", out.all());
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let diag = &json["diagnostics"][0];
        assert_eq!(
            (diag["line"].as_u64(), diag["column"].as_u64()),
            (Some(3), Some(5))
        );
        let text = diag["message"].as_str().unwrap();
        assert!(text.contains(message) && text.len() < 300, "{text}");
    }
}

#[test]
fn deep_paths_find_their_nearest_declared_directory() {
    // 2,000 files 1,000 directories deep, under one declared directory at the top: each
    // finds it without an id per ancestor.
    let dir = format!("/d{}", "/v".repeat(1_000));
    let mut yaml = "steward: 1\nresources:\n  directory:/d: {}\n".to_string();
    for i in 0..2_000 {
        yaml.push_str(&format!("  ? file:{dir}/f{i}\n  : {{ content: x }}\n"));
    }
    let env = TestEnv::new();
    env.write("site.yaml", yaml);
    let out = env.run(&["graph", ".", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let inside = out.stdout.matches("inside directory").count();
    assert_eq!(
        inside,
        2_000,
        "{}",
        &out.stdout[..out.stdout.len().min(2_000)]
    );
}

#[test]
fn modules_are_checked() {
    let yaml = "steward: 1\nuse:\n  - module: std/sshdd\n  - module: std/sshd\n    with: { permit_rot_login: true }\n";
    check_bad(
        "site.yaml",
        yaml,
        &[
            "./site.yaml:3:13",
            "no module `std/sshdd`",
            "did you mean `std/sshd`?",
            "./site.yaml:5:13",
            "did you mean `permit_root_login`?",
        ],
    );
}

#[test]
fn local_modules_and_their_parameters() {
    let env = TestEnv::new();
    env.write(
        "site.yaml",
        "steward: 1\nuse:\n  - module: modules/web\n    with: { port: 81 }\n",
    );
    env.write("modules/web/main.yaml", "steward: 1\nparameters:\n  port: { type: number }\nresources:\n  file:/etc/web.conf: { content: \"port={{ params.port }}\\n\" }\n");
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 0, "{}", out.all());
    // The module's file is part of the module, not a second top-level document.
    assert!(out.stdout.contains("1 resource"), "{}", out.all());
    let out = env.run(&["graph", ".", "--format", "json"]);
    assert!(out.stdout.contains("file:/etc/web.conf"), "{}", out.all());
}

#[test]
fn a_project_that_does_not_exist() {
    let env = TestEnv::new();
    let out = env.run(&["validate", "no/such/dir"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("cannot read project `no/such/dir`"),
        "{}",
        out.all()
    );
}

#[test]
fn usage_errors_exit_1() {
    let env = TestEnv::new();
    for args in [
        &["validate", "--format", "xml"][..],
        &["frobnicate"][..],
        &["validate", "--param", "novalue"][..],
    ] {
        let out = env.run(args);
        assert_eq!(out.code, 1, "{args:?}: {}", out.all());
    }
    assert_eq!(env.run(&["--help"]).code, 0);
    assert_eq!(env.run(&["validate", "--help"]).code, 0);
}

#[test]
fn help_explains_each_command_with_an_example() {
    let env = TestEnv::new();
    for command in ["validate", "graph", "schema", "completions"] {
        let out = env.run(&[command, "--help"]);
        assert!(out.stdout.contains("Example"), "{command}: {}", out.all());
    }
}

#[test]
fn completions() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.run(&["completions", shell]);
        assert_eq!(out.code, 0, "{}", out.all());
        assert!(out.stdout.contains("validate"), "{shell}");
    }
}

#[test]
fn color_is_off_without_a_terminal_and_on_when_asked() {
    let env = TestEnv::new();
    env.write("site.yaml", "steward: 1\nresorces: {}\n");
    let plain = env.run(&["validate", "."]);
    assert!(!plain.stderr.contains('\u{1b}'), "{}", plain.all());
    let colored = env.run(&["--color", "always", "validate", "."]);
    assert!(colored.stderr.contains('\u{1b}'), "{}", colored.all());
}

#[test]
fn a_large_for_each_of_template_files_renders_each_item_and_reports_a_failing_one() {
    // Past 64 items the contents render in parallel: the same text, and the same error.
    let env = TestEnv::new();
    env.write(
        "site.yaml",
        "steward: 1\nparameters:\n  secret: { type: string, default: hush, sensitive: true }\nresources:\n  directory:/d: {}\n  \"file:/d/f{{ item }}\":\n    for_each: \"{{ range(100) | list }}\"\n    template: a.j2\n  \"file:/d/s{{ item }}\":\n    for_each: \"{{ range(70) | list }}\"\n    template: s.j2\n",
    );
    env.write(
        "a.j2",
        "item {{ item }}\n{% if item == 57 %}{{ params.nope }}{% endif %}\n",
    );
    env.write("s.j2", "{{ params.secret }} {{ item }}\n");
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("in template `a.j2`: line 2: undefined variable `params.nope`"),
        "{}",
        out.all()
    );
    assert_eq!(
        out.stderr.matches("undefined variable").count(),
        1,
        "{}",
        out.all()
    );

    env.write("a.j2", "item {{ item }}\n");
    let root = env.mkdir("root");
    let root = root.to_str().unwrap();
    let out = env.run(&["--root", root, "apply", ".", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.all());
    for idx in [0, 57, 99] {
        assert_eq!(env.read(&format!("root/d/f{idx}")), format!("item {idx}\n"));
    }
    assert_eq!(env.read("root/d/s69"), "hush 69\n");
    // Content read from a sensitive parameter stays hidden in the plan.
    assert!(!out.stdout.contains("hush"), "{}", out.all());
}
