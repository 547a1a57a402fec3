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

const SECRET_SITE: &str = "steward: 1
parameters:
  motd: { type: string }
  token: { type: string, sensitive: true }
resources:
  file:/motd: { content: \"{{ params.motd }}\\n\" }
  file:/token: { content: \"{{ params.token }}\\n\" }
";

#[test]
fn a_saved_plan_applies_with_its_parameters() {
    let env = project();
    env.write("a.yaml", "motd: saved\nadmins: [ann]\n");
    let root = env.path().join("root");
    let root = root.to_str().unwrap();
    let plan = env.run(&[
        "--root",
        root,
        "plan",
        "p",
        "--params-file",
        "a.yaml",
        "--param",
        "port=7",
        "-o",
        "plan.json",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    std::fs::remove_file(env.path().join("a.yaml")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&env.read("plan.json")).unwrap();
    assert_eq!(
        json["parameters"]["port"],
        serde_json::json!({"value": "7"})
    );
    // Given again with another value: refused, naming the parameter.
    let other = env.run(&["apply", "plan.json", "--param", "port=8"]);
    assert_eq!(other.code, 1, "{}", other.all());
    assert!(
        other
            .stderr
            .contains("parameter `port` is `8`, but this plan was made with `7`"),
        "{}",
        other.all()
    );
    // `show` prints it again, with the values it was made with.
    let show = env.run(&["show", "plan.json"]);
    assert_eq!(show.code, 0, "{}", show.all());
    assert!(
        show.stdout.contains("      +saved 7 ann\n"),
        "{}",
        show.all()
    );
    assert!(
        show.stdout
            .contains("Parameters: admins=[\"ann\"], motd=saved, port=7.\n"),
        "{}",
        show.all()
    );
    let apply = env.run(&["apply", "plan.json"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_eq!(env.read("root/motd"), "saved 7 ann\n");
}

#[test]
fn a_saved_plan_keeps_only_a_hash_of_a_sensitive_parameter() {
    let env = TestEnv::new();
    env.write("p/site.yaml", SECRET_SITE);
    let root = env.mkdir("root");
    let root = root.to_str().unwrap();
    let secret = "tok-77e1-secret";
    let token = format!("token={secret}");
    let plan = env.run(&[
        "--root",
        root,
        "plan",
        "p",
        "--param",
        "motd=hi",
        "--param",
        &token,
        "-o",
        "plan.json",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(
        plan.stderr
            .contains("and the sensitive parameters again (token)"),
        "{}",
        plan.all()
    );
    let text = env.read("plan.json");
    assert!(!text.contains(secret), "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        json["parameters"]["token"]["hash"]
            .as_str()
            .unwrap()
            .starts_with("blake3:"),
        "{text}"
    );

    let missing = env.run(&["apply", "plan.json"]);
    assert_eq!(missing.code, 1, "{}", missing.all());
    assert!(
        missing.stderr.contains(
            "parameter `token` is sensitive, so this plan keeps only its hash: give it again"
        ),
        "{}",
        missing.all()
    );
    let wrong = env.run(&["apply", "plan.json", "--param", "token=nope"]);
    assert_eq!(wrong.code, 1, "{}", wrong.all());
    assert!(
        wrong
            .stderr
            .contains("sensitive parameter `token` is not the value this plan was made with"),
        "{}",
        wrong.all()
    );
    assert!(!env.path().join("root/token").exists());

    let apply = run_in_with_env(
        env.path(),
        &["apply", "plan.json"],
        &[("STEWARD_PARAM_token", secret)],
    );
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_eq!(env.read("root/motd"), "hi\n");
    assert_eq!(env.read("root/token"), format!("{secret}\n"));
}

#[test]
fn a_saved_plan_refuses_a_parameter_it_was_not_made_with() {
    let env = project();
    let root = env.path().join("root");
    let plan = env.run(&[
        "--root",
        root.to_str().unwrap(),
        "plan",
        "p",
        "-o",
        "plan.json",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let out = env.run(&["apply", "plan.json", "--param", "motd=late"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("parameter `motd` is given, but was not set when this plan was made"),
        "{}",
        out.all()
    );
}
