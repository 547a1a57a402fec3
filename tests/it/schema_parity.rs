//! The JSON Schema agrees with `validate` (issue 11).
//!
//! A corpus of documents goes through both `validate` and the `jsonschema` crate: every YAML
//! example, every standard-library module, and one-field variants of small valid documents.
//! They must agree, except for the cases listed as [`Expect::ValidateOnly`]: rules JSON Schema
//! cannot state (docs/reference/schema.md lists them).
//!
//! YAML becomes JSON through steward's own reader, so the schema sees what validation sees:
//! `mode: 0644` is the string "0644" (leading-zero numbers stay strings) and `yes` is a string
//! (strict booleans).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value as Json;
use steward::diag::SourceId;
use steward::document::{self, Node, Syntax};
use steward::resource::Registry;

use crate::common::{TestEnv, repo, run_in};

/// What both sides should say about a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Both accept.
    Valid,
    /// Both reject.
    Invalid,
    /// `validate` rejects and the schema accepts, because JSON Schema cannot state the rule.
    ValidateOnly(&'static str),
}

struct Case {
    name: &'static str,
    /// `site.yaml` and any other files of the project.
    files: Vec<(&'static str, String)>,
    expect: Expect,
}

fn case(name: &'static str, site: &str, expect: Expect) -> Case {
    Case {
        name,
        files: vec![("site.yaml", site.to_string())],
        expect,
    }
}

/// A document with `text` under `resources:`.
fn resources(text: &str) -> String {
    let indented: String = text.lines().map(|line| format!("  {line}\n")).collect();
    format!("steward: 1\nresources:\n{indented}")
}

/// A document with `text` added at the top level of a valid one.
fn top(text: &str) -> String {
    format!("steward: 1\n{text}\nresources:\n  package:nginx: {{}}\n")
}

/// A document with one association whose body adds `text` to valid targets.
fn association(text: &str) -> String {
    format!(
        "steward: 1\nnodes:\n  web-1: {{ tags: {{ role: web }} }}\nassociations:\n  web:\n    targets: {{ all: true }}\n{}resources:\n  package:nginx: {{}}\n",
        text.lines()
            .map(|line| format!("    {line}\n"))
            .collect::<String>()
    )
}

use Expect::{Invalid, Valid, ValidateOnly};

const REFERENCE: &str = "references to resources that must exist";
const RENDERING: &str = "template rendering (the schema sees the template text)";
const FILES: &str = "files that must exist in the project";
const CROSS: &str = "rules across sections or documents";
const NUMBERS: &str = "JSON Schema does not tell 1.0 from 1";
const CRON: &str = "cron field values (the schema checks the shape only)";
const REGEX: &str = "regular expressions compile with Rust's regex crate";
const GRAPH: &str = "dependency cycles";
const MODULE: &str = "module documents declare no nodes or associations (the schema cannot tell a module from a project document)";
const OVERFLOW: &str = "numbers beyond 64 bits in strings";
const REFUSED: &str = "a type's own refusals (`directory:/` with `ensure: absent`)";

#[rustfmt::skip]
fn corpus() -> Vec<Case> {
    let mut cases = vec![
        // Resource types: a valid base each, then required attributes, enums, name rules.
        case("file", &resources("file:/srv/x: { content: hi }"), Valid),
        case("file null body", &resources("file:/srv/x:"), Valid),
        case("file mode unquoted", &resources("file:/srv/x: { content: hi, mode: 0644 }"), Valid),
        case("file mode three digits", &resources("file:/srv/x: { content: hi, mode: \"644\" }"), Valid),
        case("file mode decimal", &resources("file:/srv/x: { content: hi, mode: 644 }"), Invalid),
        case("file mode not octal", &resources("file:/srv/x: { content: hi, mode: \"0844\" }"), Invalid),
        case("file mode template", &resources("file:/srv/x: { content: hi, mode: \"{{ '0644' }}\" }"), Valid),
        case("file relative name", &resources("file:srv/x: { content: hi }"), Invalid),
        case("file dotdot name", &resources("file:/srv/../x: { content: hi }"), Invalid),
        case("file double slash name", &resources("file:/srv//x: { content: hi }"), Invalid),
        case("file trailing slash name", &resources("file:/srv/x/: { content: hi }"), Valid),
        case("file templated name", &resources("\"file:/srv/{{ item }}\":\n  for_each: [a, b]\n  content: hi"), Valid),
        case("file templated name list", &resources("\"file:{{ item }}\":\n  for_each: [/srv/a, /srv/b]\n  content: hi"), Valid),
        case("file content and template", &resources("file:/srv/x: { content: hi, template: t.j2 }"), Invalid),
        case("file content and source", &resources("file:/srv/x: { content: hi, source: s.txt }"), Invalid),
        case("file absent with mode", &resources("file:/srv/x: { ensure: absent, mode: \"0644\" }"), Invalid),
        case("file absent with content", &resources("file:/srv/x: { ensure: absent, content: hi }"), Invalid),
        case("file absent", &resources("file:/srv/x: { ensure: absent }"), Valid),
        case("file ensure unknown", &resources("file:/srv/x: { ensure: gone }"), Invalid),
        case("file backup yes", &resources("file:/srv/x: { content: hi, backup: yes }"), Invalid),
        case("file backup true", &resources("file:/srv/x: { content: hi, backup: true }"), Valid),
        case("file owner number", &resources("file:/srv/x: { content: hi, owner: 1000 }"), Invalid),
        case("file unknown attribute", &resources("file:/srv/x: { content: hi, colour: red }"), Invalid),
        case("file content number", &resources("file:/srv/x: { content: 5 }"), Invalid),
        case("file template absolute", &resources("file:/srv/x: { template: /etc/t.j2 }"), Invalid),
        case("file template empty", &resources("file:/srv/x: { template: \"\" }"), Invalid),
        case("directory", &resources("directory:/srv: {}"), Valid),
        case("directory root", &resources("directory:/: {}"), Valid),
        case("directory purge", &resources("directory:/srv: { purge: true, mode: \"0755\" }"), Valid),
        case("directory absent with purge", &resources("directory:/srv: { ensure: absent, purge: true }"), Invalid),
        case("directory relative", &resources("directory:srv: {}"), Invalid),
        case("symlink", &resources("symlink:/srv/l: { target: /srv/x }"), Valid),
        case("symlink without target", &resources("symlink:/srv/l: {}"), Invalid),
        case("symlink null body", &resources("symlink:/srv/l:"), Invalid),
        case("symlink empty target", &resources("symlink:/srv/l: { target: \"\" }"), Invalid),
        case("symlink absent", &resources("symlink:/srv/l: { ensure: absent }"), Valid),
        case("symlink absent with target", &resources("symlink:/srv/l: { ensure: absent, target: /x }"), Invalid),
        case("symlink templated ensure", &resources("symlink:/srv/l: { ensure: \"{{ 'absent' }}\" }"), Valid),
        case("line", &resources("line:/srv/x: { line: \"a = 1\" }"), Valid),
        case("line without line", &resources("line:/srv/x: {}"), Invalid),
        case("line absent without line", &resources("line:/srv/x: { ensure: absent }"), Valid),
        case("line label with path", &resources("line:setting: { path: /srv/x, line: \"a = 1\" }"), Valid),
        case("line label without path", &resources("line:setting: { line: \"a = 1\" }"), Invalid),
        case("line templated label", &resources("\"line:{{ item }}\":\n  for_each: [/srv/a]\n  line: \"a = 1\""), Valid),
        case("line newline", &resources("line:/srv/x: { line: \"a\\nb\" }"), Invalid),
        case("line relative path", &resources("line:setting: { path: srv/x, line: a }"), Invalid),
        case("line match", &resources("line:/srv/x: { line: \"a = 1\", match: \"^a =\" }"), Valid),
        case("package", &resources("package:nginx: {}"), Valid),
        case("package null body", &resources("package:nginx:"), Valid),
        case("package with arch", &resources("package:libc6:amd64: {}"), Valid),
        case("package uppercase", &resources("package:Nginx: {}"), Invalid),
        case("package one letter", &resources("package:a: {}"), Invalid),
        case("package latest", &resources("package:nginx: { ensure: latest }"), Valid),
        case("package version", &resources("package:nginx: { ensure: \"1.22.1-9\" }"), Valid),
        case("package epoch version", &resources("package:nginx: { ensure: \"1:1.22~rc1\" }"), Valid),
        case("package version number", &resources("package:nginx: { ensure: 1.22 }"), Invalid),
        case("package ensure typo", &resources("package:nginx: { ensure: lastest }"), Invalid),
        case("service", &resources("service:nginx: { ensure: running, enable: true }"), Valid),
        case("service unit", &resources("service:getty@tty1.service: {}"), Valid),
        case("service space", &resources("service:my service: {}"), Invalid),
        case("service ensure", &resources("service:nginx: { ensure: started }"), Invalid),
        case("service enable string", &resources("service:nginx: { enable: \"true\" }"), Invalid),
        case("user", &resources("user:alice: { uid: 1000, groups: [ops], shell: /bin/bash }"), Valid),
        case("user groups string", &resources("user:alice: { groups: ops }"), Valid),
        case("user uppercase", &resources("user:Alice: {}"), Invalid),
        case("user machine account", &resources("user:host$: {}"), Valid),
        case("user too long", &resources(&format!("user:{}: {{}}", "a".repeat(33))), Invalid),
        case("user uid negative", &resources("user:alice: { uid: -1 }"), Invalid),
        case("user uid string", &resources("user:alice: { uid: \"1000\" }"), Invalid),
        case("user uid template", &resources("user:alice: { uid: \"{{ 1000 }}\" }"), Valid),
        case("user shell relative", &resources("user:alice: { shell: bash }"), Invalid),
        case("user absent with uid", &resources("user:alice: { ensure: absent, uid: 1000 }"), Invalid),
        case("user templated name", &resources("\"user:{{ item }}\":\n  for_each: [alice, bob]"), Valid),
        case("group", &resources("group:ops: { gid: 1000, system: true }"), Valid),
        case("group absent with gid", &resources("group:ops: { ensure: absent, gid: 1 }"), Invalid),
        case("exec", &resources("exec:reload: { command: [/bin/true] }"), Valid),
        case("exec command string", &resources("exec:reload: { command: \"sysctl --system 'a b'\" }"), Valid),
        case("exec command number item", &resources("exec:sleep: { command: [/bin/sleep, 1] }"), Valid),
        case("exec command bool item", &resources("exec:x: { command: [/bin/echo, true] }"), Invalid),
        case("exec command empty list", &resources("exec:x: { command: [] }"), Invalid),
        case("exec command empty string", &resources("exec:x: { command: \"\" }"), Invalid),
        case("exec command empty program", &resources("exec:x: { command: [\"\", a] }"), Invalid),
        case("exec command blank", &resources("exec:x: { command: \"   \" }"), Invalid),
        case("exec command unclosed quote", &resources("exec:x: { command: \"echo 'x\" }"), Invalid),
        case("exec command template", &resources("exec:x: { command: \"{{ 'ls' }}\" }"), Valid),
        case("exec without command", &resources("exec:x: {}"), Invalid),
        case("exec null body", &resources("exec:x:"), Invalid),
        case("exec timeout", &resources("exec:x: { command: [ls], timeout: 30 }"), Valid),
        case("exec timeout string", &resources("exec:x: { command: [ls], timeout: 5m }"), Valid),
        case("exec timeout zero", &resources("exec:x: { command: [ls], timeout: 0 }"), Invalid),
        case("exec timeout zero string", &resources("exec:x: { command: [ls], timeout: 0s }"), Invalid),
        case("exec timeout negative", &resources("exec:x: { command: [ls], timeout: -5 }"), Invalid),
        case("exec timeout unit", &resources("exec:x: { command: [ls], timeout: 5mo }"), Invalid),
        case("exec timeout days", &resources("exec:x: { command: [ls], timeout: 5d }"), Valid),
        case("exec timeout compound", &resources("exec:x: { command: [ls], timeout: 1h 30m }"), Valid),
        case("exec timeout fraction", &resources("exec:x: { command: [ls], timeout: 1.5h }"), Invalid),
        case("exec timeout milliseconds", &resources("exec:x: { command: [ls], timeout: 500ms }"), Invalid),
        case("exec timeout zero parts", &resources("exec:x: { command: [ls], timeout: 0h 0m }"), Invalid),
        case("exec env", &resources("exec:x: { command: [ls], env: { A: b, N: 1, F: true } }"), Valid),
        case("exec env null value", &resources("exec:x: { command: [ls], env: { A: ~ } }"), Invalid),
        case("exec env list", &resources("exec:x: { command: [ls], env: [a] }"), Invalid),
        case("exec cwd relative", &resources("exec:x: { command: [ls], cwd: tmp }"), Invalid),
        case("exec unless", &resources("exec:x: { command: [ls], unless: \"test -e /x\" }"), Valid),
        case("exec label control", &resources("\"exec:a\\tb\": { command: [ls] }"), Invalid),
        // Resource keys, relationships and meta-attributes.
        case("unknown type", &resources("packages:nginx: {}"), Invalid),
        case("key without name", &resources("\"package:\": {}"), Invalid),
        case("key without colon", &resources("nginx: {}"), Invalid),
        case("resources null", "steward: 1\nresources:\n", Valid),
        case("require", &resources("package:nginx: {}\nservice:nginx: { require: package:nginx }"), Valid),
        case("require list", &resources("package:nginx: {}\nservice:nginx: { require: [package:nginx] }"), Valid),
        case("require unknown type", &resources("service:nginx: { require: [pkg:nginx] }"), Invalid),
        case("require not a reference", &resources("service:nginx: { require: [nginx] }"), Invalid),
        case("require number", &resources("service:nginx: { require: 5 }"), Invalid),
        case("when", &resources("package:nginx: { when: \"node.os.family == 'debian'\" }"), Valid),
        case("for_each string", &resources("\"package:{{ item }}\": { for_each: nginx }"), Invalid),
        case("for_each null", &resources("\"package:{{ item }}\": { for_each: ~ }"), Invalid),
        case("file name with space", &resources("file:/srv/my file: { content: hi }"), Valid),
        case("package plus", &resources("package:g++: {}"), Valid),
        case("service stopped", &resources("service:nginx: { ensure: stopped }"), Valid),
        case("user underscore", &resources("user:_apt: { system: true }"), Valid),
        case("line templated path", &resources("line:setting: { path: \"{{ '/srv/x' }}\", line: a }"), Valid),
        case("notify template", &resources("service:nginx: {}\nfile:/srv/x: { content: hi, notify: \"{{ 'service:nginx' }}\" }"), Valid),
        case("when true", &resources("package:nginx: { when: true }"), Valid),
        case("exec timeout hour", &resources("exec:x: { command: [ls], timeout: 1h }"), Valid),
        case("exec command comment", &resources("exec:x: { command: \"# nothing\" }"), Invalid),
        case("exec command quoted program", &resources("exec:x: { command: \"'/bin/my tool' --flag\" }"), Valid),
        case("for_each map", &resources("\"user:{{ item.key }}\":\n  for_each: { alice: 1, bob: 2 }"), Valid),
        // The top level and parameters.
        case("no version", "resources:\n  package:nginx: {}\n", Invalid),
        case("version 2", "steward: 2\n", Invalid),
        case("version string", "steward: \"1\"\n", Invalid),
        case("unknown section", &top("extra: 1"), Invalid),
        case("parameters", &top("parameters:\n  port: { type: number, default: 8080 }\n  name: { type: string, default: x, sensitive: true, description: d }"), Valid),
        case("parameters null", &top("parameters:"), Valid),
        case("parameter list default string", &top("parameters:\n  admins: { type: list, default: alice }"), Valid),
        case("parameter default float", &top("parameters:\n  ratio: { type: number, default: 0.5 }"), Valid),
        case("parameter default wrong type", &top("parameters:\n  port: { type: number, default: eighty }"), Invalid),
        case("parameter bool default string", &top("parameters:\n  debug: { type: bool, default: \"no\" }"), Invalid),
        case("parameter map default list", &top("parameters:\n  m: { type: map, default: [a] }"), Invalid),
        case("parameter default template", &top("parameters:\n  p: { type: string, default: \"{{ x }}\" }"), Invalid),
        case("parameter without type", &top("parameters:\n  p: { default: 1 }"), Invalid),
        case("parameter unknown type", &top("parameters:\n  p: { type: int, default: 1 }"), Invalid),
        case("parameter bad name", &top("parameters:\n  1p: { type: string, default: x }"), Invalid),
        case("parameter sensitive string", &top("parameters:\n  p: { type: string, default: x, sensitive: \"yes\" }"), Invalid),
        case("parameter null body", &top("parameters:\n  p:"), Invalid),
        // Nodes.
        case("nodes null", &top("nodes:"), Valid),
        case("node null body", &top("nodes:\n  web-1:"), Valid),
        case("node tags", &top("nodes:\n  web-1: { tags: { role: web, tier: 1 } }"), Valid),
        case("node bad name", &top("nodes:\n  web/1: {}"), Invalid),
        case("node tags list", &top("nodes:\n  web-1: { tags: [web] }"), Invalid),
        case("node unknown key", &top("nodes:\n  web-1: { role: web }"), Invalid),
        // Associations.
        case("association", &association("mode: detect\ncompliance_severity: high"), Valid),
        case("associations null", &top("associations:"), Valid),
        case("association documents string", &association("documents: site.yaml"), Valid),
        case("association documents list", &association("documents: [site.yaml]"), Valid),
        case("association targets tags", &association("schedule: \"0 */2 * * *\"") .replace("{ all: true }", "{ tags: { role: web } }"), Valid),
        case("association targets names", &association("").replace("{ all: true }", "{ names: [web-1] }"), Valid),
        case("association targets empty tags", &association("").replace("{ all: true }", "{ tags: {} }"), Invalid),
        case("association targets all false", &association("").replace("{ all: true }", "{ all: false }"), Invalid),
        case("association targets two", &association("").replace("{ all: true }", "{ all: true, names: [web-1] }"), Invalid),
        case("association targets null", &association("").replace("{ all: true }", "~"), Invalid),
        case("association without targets", "steward: 1\nassociations:\n  web: { mode: detect }\n", Invalid),
        case("association mode", &association("mode: audit"), Invalid),
        case("association severity", &association("compliance_severity: severe"), Invalid),
        case("association rate", &association("schedule: rate(30 minutes)"), Valid),
        case("association rate one day", &association("schedule: rate(1 day)"), Valid),
        case("association rate zero", &association("schedule: rate(0 minutes)"), Invalid),
        case("association rate weeks", &association("schedule: rate(2 weeks)"), Invalid),
        case("association rate no unit", &association("schedule: rate(5)"), Invalid),
        case("association cron", &association("schedule: \"*/15 * * * *\""), Valid),
        case("association cron nickname", &association("schedule: \"@daily\""), Valid),
        case("association cron words", &association("schedule: every day"), Invalid),
        case("association schedule number", &association("schedule: 5"), Invalid),
        case("max_concurrency count", &association("max_concurrency: 2"), Valid),
        case("max_concurrency count string", &association("max_concurrency: \"2\""), Valid),
        case("max_concurrency percent", &association("max_concurrency: \"50%\""), Valid),
        case("max_concurrency hundred percent", &association("max_concurrency: \"100%\""), Valid),
        case("max_concurrency zero percent", &association("max_concurrency: \"0%\""), Invalid),
        case("max_concurrency zero", &association("max_concurrency: 0"), Invalid),
        case("max_concurrency over", &association("max_concurrency: \"101%\""), Invalid),
        case("max_concurrency spaced percent", &association("max_concurrency: \" 50 %\""), Valid),
        case("max_concurrency plus percent", &association("max_concurrency: \"+5%\""), Valid),
        case("max_concurrency largest", &association("max_concurrency: 4294967295"), Valid),
        case("max_concurrency too large", &association("max_concurrency: \"4294967296\""), Invalid),
        case("max_concurrency spaced count", &association("max_concurrency: \" 5\""), Invalid),
        case("association rate plus", &association("schedule: rate(+5 minutes)"), Valid),
        case("association rate extra", &association("schedule: rate(5 minutes now)"), Invalid),
        case("max_errors zero", &association("max_errors: 0"), Valid),
        case("max_errors zero percent", &association("max_errors: \"0%\""), Valid),
        case("max_errors hundred percent", &association("max_errors: \"100%\""), Valid),
        case("max_errors over", &association("max_errors: \"101%\""), Invalid),
        case("max_errors negative", &association("max_errors: -1"), Invalid),
        case("max_errors word", &association("max_errors: some"), Invalid),
        case("association unknown key", &association("retries: 2"), Invalid),
        // Modules.
        case("use", &top("use:\n  - module: std/motd\n    with: { message: hi }"), Valid),
        case("use without module", &top("use:\n  - with: { message: hi }"), Invalid),
        case("use null", &top("use:"), Invalid),
        case("use map", &top("use: { module: std/motd }"), Invalid),
        // What only validate can check.
        case("require missing resource", &resources("service:nginx: { require: [package:nginx] }"), ValidateOnly(REFERENCE)),
        case("cycle", &resources( "package:a1: { require: [package:b1] }\npackage:b1: { require: [package:a1] }"),
            ValidateOnly(GRAPH),
        ),
        case("template undefined", &resources("file:/srv/x: { content: \"{{ nope.nope }}\" }"), ValidateOnly(RENDERING)),
        case("template renders wrong type", &resources("file:/srv/x: { content: hi, mode: \"{{ 'rw' }}\" }"), ValidateOnly(RENDERING)),
        case("template renders absent", &resources("file:/srv/x: { ensure: \"{{ 'absent' }}\", mode: \"0644\" }"), ValidateOnly(RENDERING)),
        case("for_each without item", &resources("package:nginx: { for_each: [a, b] }"), ValidateOnly(RENDERING)),
        case("template missing", &resources("file:/srv/x: { template: missing.j2 }"), ValidateOnly(FILES)),
        case("use missing module", &top("use:\n  - module: std/nope"), ValidateOnly(FILES)),
        case("association missing document", &association("documents: [nope.yaml]"), ValidateOnly(FILES)),
        case("association undeclared parameter", &association("parameters: { nope: 1 }"), ValidateOnly(CROSS)),
        case("association parameter wrong type", &association("parameters: { port: x }").replace( "resources:", "parameters:\n  port: { type: number, default: 1 }\nresources:"),
            ValidateOnly(CROSS),
        ),
        case("module unknown parameter", &top("use:\n  - module: std/motd\n    with: { message: hi, colour: red }"), ValidateOnly(CROSS)),
        case("parameter without value", &top("parameters:\n  p: { type: string }"), ValidateOnly(CROSS)),
        case("version float", "steward: 1.0\n", ValidateOnly(NUMBERS)),
        case("uid float", &resources("user:alice: { uid: 1000.0 }"), ValidateOnly(NUMBERS)),
        case("cron minute range", &association("schedule: \"61 * * * *\""), ValidateOnly(CRON)),
        case("directory remove root", &resources("directory:/: { ensure: absent }"), ValidateOnly(REFUSED)),
        case("timeout overflow", &resources("exec:x: { command: [ls], timeout: \"99999999999999999999s\" }"), ValidateOnly(OVERFLOW)),
        case("regex invalid", &resources("line:/srv/x: { line: a, match: \"(\" }"), ValidateOnly(REGEX)),
    ];
    cases.push(Case {
        name: "duplicate across documents",
        files: vec![
            ("site.yaml", resources("package:nginx: {}")),
            ("more.yaml", resources("package:nginx: {}")),
        ],
        expect: ValidateOnly(CROSS),
    });
    cases.push(Case {
        name: "module with nodes",
        files: vec![
            ("site.yaml", top("use:\n  - module: ./mod")),
            ("mod/main.yaml", "steward: 1\nnodes:\n  web-1: {}\n".into()),
        ],
        expect: ValidateOnly(MODULE),
    });
    cases.push(Case {
        name: "local module",
        files: vec![
            ("site.yaml", top("use:\n  - module: ./mod\n    with: { name: x }")),
            ("mod/main.yaml", "steward: 1\nparameters:\n  name: { type: string }\nresources:\n  \"file:/srv/{{ params.name }}\": { content: hi }\n".into()),
        ],
        expect: Valid,
    });
    cases.push(Case {
        name: "source file",
        files: vec![
            ("site.yaml", resources("file:/srv/x: { source: files/x.txt }")),
            ("files/x.txt", "x\n".into()),
        ],
        expect: Valid,
    });
    cases.push(Case {
        name: "template file",
        files: vec![
            ("site.yaml", resources("file:/srv/x: { template: t.j2 }")),
            ("t.j2", "hello {{ node.hostname }}\n".into()),
        ],
        expect: Valid,
    });
    cases
}

/// A rendered document node as JSON (floats that JSON cannot hold become null).
fn node_json(node: &Node) -> Json {
    match &node.value {
        document::Value::Null => Json::Null,
        document::Value::Bool(flag) => Json::Bool(*flag),
        document::Value::Int(number) => Json::from(*number),
        document::Value::Float(number) => serde_json::Number::from_f64(*number)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        document::Value::String(text) => Json::String(text.clone()),
        document::Value::List(items) => Json::Array(items.iter().map(node_json).collect()),
        document::Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(key, value)| (key.name.clone(), node_json(value)))
                .collect(),
        ),
    }
}

/// The documents of a YAML file as steward reads them, as JSON.
fn yaml_documents(text: &str) -> Vec<Json> {
    let parsed = document::parse(SourceId(0), text, Syntax::Yaml);
    assert!(
        parsed.diagnostics.is_empty(),
        "the corpus must be readable YAML: {:?}",
        parsed.diagnostics
    );
    parsed
        .documents
        .iter()
        .map(|doc| node_json(&doc.root))
        .collect()
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&steward::schema::json::schema(&Registry::builtin())).unwrap()
}

/// Whether the schema accepts every document of every YAML file in `files`, and the errors.
fn schema_verdict(validator: &jsonschema::Validator, files: &[(String, String)]) -> (bool, String) {
    let mut errors = String::new();
    for (name, text) in files.iter().filter(|(name, _)| name.ends_with(".yaml")) {
        for doc in yaml_documents(text) {
            for error in validator.iter_errors(&doc) {
                errors.push_str(&format!("{name}: {error} at {}\n", error.instance_path()));
            }
        }
    }
    (errors.is_empty(), errors)
}

/// Whether `validate` accepts the project in `dir`, and its diagnostics.
fn validate_verdict(dir: &Path) -> (bool, String) {
    let validated = steward::validate::validate(
        dir,
        &Registry::builtin(),
        steward::facts::local(Path::new("/")),
        BTreeMap::new(),
    );
    let messages: Vec<String> = validated
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{}: {}", d.code, d.message))
        .collect();
    (!validated.has_errors(), messages.join("\n"))
}

#[test]
fn schema_agrees_with_validate() {
    let validator = validator();
    let mut disagreements = Vec::new();
    let corpus = corpus();
    for case in &corpus {
        let env = TestEnv::new();
        for (name, text) in &case.files {
            env.write(name, text);
        }
        let files: Vec<(String, String)> = case
            .files
            .iter()
            .map(|(name, text)| (name.to_string(), text.clone()))
            .collect();
        let (validate_ok, diagnostics) = validate_verdict(env.path());
        let (schema_ok, schema_errors) = schema_verdict(&validator, &files);
        let expected = match case.expect {
            Valid => (true, true),
            Invalid => (false, false),
            ValidateOnly(_) => (false, true),
        };
        if (validate_ok, schema_ok) != expected {
            disagreements.push(format!(
                "{}: expected {:?}; validate {}, schema {}\n{}\n--- validate\n{diagnostics}\n--- schema\n{schema_errors}",
                case.name,
                case.expect,
                verdict(validate_ok),
                verdict(schema_ok),
                files[0].1,
            ));
        }
    }
    let n_validate_only = corpus
        .iter()
        .filter(|case| matches!(case.expect, ValidateOnly(_)))
        .count();
    println!(
        "{} cases, {n_validate_only} of them rules only validate checks",
        corpus.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} of {} cases disagree:\n\n{}",
        disagreements.len(),
        corpus.len(),
        disagreements.join("\n\n")
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "accepts" } else { "rejects" }
}

/// Every YAML example is valid to the real `steward validate` and to the schema.
#[test]
fn examples_agree() {
    let validator = validator();
    let mut n_examples = 0;
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let dir = entry.unwrap().path();
        let files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
            .map(|path| {
                let text = std::fs::read_to_string(&path).unwrap();
                (path.display().to_string(), text)
            })
            .collect();
        if files.is_empty() {
            continue; // A KDL example: the schema is for the YAML spelling.
        }
        n_examples += 1;
        let out = run_in(&dir, &["validate", ".", "--format", "json"]);
        assert_eq!(out.code, 0, "{}: {}", dir.display(), out.all());
        let (schema_ok, errors) = schema_verdict(&validator, &files);
        assert!(
            schema_ok,
            "{}: the schema rejects it:\n{errors}",
            dir.display()
        );
    }
    assert!(n_examples >= 2);
}

/// The standard library's modules are valid documents to the schema.
#[test]
fn stdlib_modules_agree() {
    let validator = validator();
    let mut files = Vec::new();
    for module in std::fs::read_dir(repo().join("stdlib")).unwrap() {
        for entry in std::fs::read_dir(module.unwrap().path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "yaml") {
                files.push((
                    path.display().to_string(),
                    std::fs::read_to_string(&path).unwrap(),
                ));
            }
        }
    }
    assert!(!files.is_empty());
    let (schema_ok, errors) = schema_verdict(&validator, &files);
    assert!(schema_ok, "{errors}");
}
