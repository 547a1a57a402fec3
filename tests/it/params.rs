//! Parameter values from `--params-file`, `STEWARD_PARAM_*` and `--param`, through the binary.

use crate::common::{TestEnv, run_in_with_env};

const SITE: &str = "steward: 1
parameters:
  motd: { type: string, default: none }
  port: { type: number, default: 1 }
  admins: { type: list, default: [] }
resources:
  file:/motd:
    content: \"{{ params.motd }} {{ params.port }} {{ params.admins | join(',') }}\\n\"
";

fn project() -> TestEnv {
    let env = TestEnv::new();
    env.write("p/site.yaml", SITE);
    env.mkdir("root");
    env
}

fn applied(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> String {
    let root = env.path().join("root");
    let mut all = vec!["--root", root.to_str().unwrap(), "apply", "p", "--yes"];
    all.extend_from_slice(args);
    let out = run_in_with_env(env.path(), &all, vars);
    assert_eq!(out.code, 0, "{}", out.all());
    std::fs::read_to_string(root.join("motd")).unwrap()
}

#[test]
fn a_params_file_sets_values_in_yaml_or_json() {
    let env = project();
    env.write("a.yaml", "motd: hello\nport: 80\nadmins: [ann, bob]\n");
    env.write("b.json", "{\"port\": 8080}");
    assert_eq!(
        applied(&env, &["--params-file", "a.yaml"], &[]),
        "hello 80 ann,bob\n"
    );
    // Later files win.
    assert_eq!(
        applied(
            &env,
            &["--params-file", "a.yaml", "--params-file", "b.json"],
            &[]
        ),
        "hello 8080 ann,bob\n"
    );
}

#[test]
fn the_environment_wins_over_files_and_flags_win_over_both() {
    let env = project();
    env.write("a.yaml", "motd: file\nport: 80\n");
    let vars = [("STEWARD_PARAM_motd", "env"), ("STEWARD_PARAM_port", "81")];
    assert_eq!(
        applied(&env, &["--params-file", "a.yaml"], &vars),
        "env 81 \n"
    );
    assert_eq!(
        applied(
            &env,
            &["--params-file", "a.yaml", "--param", "port=82"],
            &vars
        ),
        "env 82 \n"
    );
}

#[test]
fn a_bad_params_file_is_a_located_error() {
    let env = project();
    for (text, expected) in [
        ("motd: [unclosed\n", "bad.yaml:"),
        (
            "motd: hi\nport:\n",
            "bad.yaml:2:1: parameter `port` has no value",
        ),
        (
            "- motd\n",
            "bad.yaml:1:1: a params file holds a map of parameter names to values, not a list",
        ),
        (
            "{\"motd\": \"hi\",}\n",
            "bad.json:1:15: not valid JSON: trailing comma",
        ),
    ] {
        let name = if text.starts_with('{') {
            "bad.json"
        } else {
            "bad.yaml"
        };
        env.write(name, text);
        let out = env.run(&["validate", "p", "--params-file", name]);
        assert_eq!(out.code, 1, "{text}: {}", out.all());
        assert!(
            out.stderr.starts_with(&format!("error: {expected}")),
            "{text}: {}",
            out.all()
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.all());
    }
    let missing = env.run(&["validate", "p", "--params-file", "nope.yaml"]);
    assert_eq!(missing.code, 1, "{}", missing.all());
    assert!(
        missing.stderr.contains("--params-file nope.yaml: "),
        "{}",
        missing.all()
    );
}

#[test]
fn a_wrong_value_in_a_params_file_is_reported_like_a_flag() {
    let env = project();
    env.write("a.yaml", "port: eighty\nnope: 1\n");
    let out = env.run(&["validate", "p", "--params-file", "a.yaml"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("the value given for parameter `port` is not a number"),
        "{}",
        out.all()
    );
    assert!(
        out.stderr.contains("no parameter `nope` to set"),
        "{}",
        out.all()
    );
}

#[test]
fn param_at_file_points_to_params_file() {
    let env = project();
    let out = env.run(&["validate", "p", "--param", "@a.json"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("use `--params-file a.json`"),
        "{}",
        out.all()
    );
}
