//! Scoped API tokens: made, listed and revoked with the CLI (`steward token create --api`,
//! `token list`, `token revoke`), and the role census of the HTTP API.

use crate::common::TestEnv;

/// `steward token ...` on the data directory `data`, besides `--data-dir`.
fn token_cli(env: &TestEnv, data: &std::path::Path, args: &[&str]) -> crate::common::Output {
    let (command, rest) = args.split_first().unwrap();
    let mut all = vec!["token", command, "--data-dir", data.to_str().unwrap()];
    all.extend_from_slice(rest);
    env.run(&all)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("{err}: {text}"))
}

#[test]
fn api_tokens_are_made_listed_and_revoked_without_showing_a_secret_twice() {
    let env = TestEnv::new();
    let data = env.path().join("controller");
    let made = token_cli(
        &env,
        &data,
        &[
            "create", "--api", "--role", "plan", "--name", "ci", "--target", "role=web", "--ttl",
            "30d", "--format", "json",
        ],
    );
    assert_eq!(made.code, 0, "{}", made.all());
    let made = json(&made.stdout);
    assert_eq!(made["kind"], "steward-api-token");
    assert_eq!(made["role"], "plan");
    assert_eq!(made["name"], "ci");
    assert_eq!(made["target"], "role=web");
    assert!(made["expires_at"].is_string(), "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    let token = made["token"].as_str().unwrap().to_string();
    let secret = token
        .strip_prefix(&format!("stw_{id}_"))
        .unwrap_or_else(|| panic!("{token}"))
        .to_string();
    assert_eq!(secret.len(), 64);

    let plain = token_cli(&env, &data, &["create", "--api", "--role", "read"]);
    assert_eq!(plain.code, 0, "{}", plain.all());
    assert!(plain.stdout.trim().starts_with("stw_"), "{}", plain.all());

    let listed = token_cli(&env, &data, &["list", "--format", "json"]);
    assert_eq!(listed.code, 0, "{}", listed.all());
    assert!(!listed.stdout.contains(&secret), "{}", listed.stdout);
    let listed = json(&listed.stdout);
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{listed}");
    let ci = tokens.iter().find(|t| t["id"] == id.as_str()).unwrap();
    assert_eq!(ci["role"], "plan");
    assert_eq!(ci["target"], "role=web");
    assert_eq!(ci["status"], "active");
    assert!(ci.get("secret_sha256").is_none(), "{ci}");
    let table = token_cli(&env, &data, &["list"]);
    assert!(
        table.stdout.contains(&id) && table.stdout.contains("role=web"),
        "{}",
        table.all()
    );
    assert!(!table.stdout.contains(&secret), "{}", table.stdout);
    // The secret is nowhere in the data directory: only its hash is stored.
    assert_eq!(crate::fleet_harness::any_file_holds(&data, &secret), None);

    let revoked = token_cli(&env, &data, &["revoke", &id]);
    assert_eq!(revoked.code, 0, "{}", revoked.all());
    assert!(revoked.stdout.contains(&id), "{}", revoked.all());
    let again = token_cli(&env, &data, &["revoke", &id]);
    assert_eq!(again.code, 1, "{}", again.all());
    assert!(
        again
            .stderr
            .contains(&format!("API token `{id}` was revoked already")),
        "{}",
        again.all()
    );
    let listed = json(&token_cli(&env, &data, &["list", "--format", "json"]).stdout);
    let ci = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(ci["status"], "revoked");
    assert!(ci["revoked_at"].is_string(), "{ci}");
    let unknown = token_cli(&env, &data, &["revoke", "0000000000000000"]);
    assert_eq!(unknown.code, 1, "{}", unknown.all());
    assert!(
        unknown.stderr.contains("no API token `0000000000000000`"),
        "{}",
        unknown.all()
    );
}

#[test]
fn a_bad_role_or_target_is_refused_naming_its_flag() {
    let env = TestEnv::new();
    let data = env.path().join("controller");
    let bad_role = token_cli(&env, &data, &["create", "--api", "--role", "root"]);
    assert_eq!(bad_role.code, 1, "{}", bad_role.all());
    assert!(
        bad_role
            .stderr
            .contains("--role: unknown role `root`: use read, plan, operate or admin"),
        "{}",
        bad_role.all()
    );
    let no_role = token_cli(&env, &data, &["create", "--api"]);
    assert_eq!(no_role.code, 1, "{}", no_role.all());
    assert!(
        no_role.stderr.contains("--role: an API token needs a role"),
        "{}",
        no_role.all()
    );
    let bad_ttl = token_cli(
        &env,
        &data,
        &["create", "--api", "--role", "read", "--ttl", "0s"],
    );
    assert_eq!(bad_ttl.code, 1, "{}", bad_ttl.all());
    assert!(bad_ttl.stderr.contains("--ttl"), "{}", bad_ttl.all());
    let listed = json(&token_cli(&env, &data, &["list", "--format", "json"]).stdout);
    assert_eq!(listed["tokens"], serde_json::json!([]), "nothing was made");
}
