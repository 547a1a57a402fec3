//! steward's KDL parser (`src/document/kdl/parser.rs`) against the official KDL 2.0 test
//! suite and against the `kdl` crate, the reference implementation.
//!
//! The suite is vendored in `tests/fixtures/kdl-spec/` (kdl-org/kdl's test cases as the `kdl`
//! crate 6.7 ships them, Apache-2.0): a case with an `expected_kdl` twin must parse, one
//! without must fail. What parses must read the same as with the `kdl` crate.

mod support {
    use steward::document::kdl::parser::{KdlNode, Scalar, SyntaxError, parse};

    /// One line per node, children indented: what a parser read, spelled the same for this
    /// parser and for the `kdl` crate.
    pub fn ours(nodes: &[KdlNode], depth: usize, out: &mut String) {
        for node in nodes {
            out.push_str(&"  ".repeat(depth));
            if let Some(ty) = &node.ty {
                out.push_str(&format!("({:?})", ty.value));
            }
            out.push_str(&format!("{:?}", node.name.value));
            for entry in &node.entries {
                out.push(' ');
                if let Some(name) = &entry.name {
                    out.push_str(&format!("{:?}=", name.value));
                }
                if let Some(ty) = &entry.ty {
                    out.push_str(&format!("({:?})", ty.value));
                }
                out.push_str(&match &entry.value {
                    Scalar::String(text) => format!("{text:?}"),
                    Scalar::Integer(number) => number.to_string(),
                    Scalar::Float(number) => format!("{number:?}"),
                    Scalar::Bool(value) => value.to_string(),
                    Scalar::Null => "null".to_string(),
                });
            }
            out.push('\n');
            if let Some(children) = &node.children {
                out.push_str(&"  ".repeat(depth));
                out.push_str("{\n");
                ours(children, depth + 1, out);
                out.push_str(&"  ".repeat(depth));
                out.push_str("}\n");
            }
        }
    }

    pub fn reference(nodes: &[::kdl::KdlNode], depth: usize, out: &mut String) {
        for node in nodes {
            out.push_str(&"  ".repeat(depth));
            if let Some(ty) = node.ty() {
                out.push_str(&format!("({:?})", ty.value()));
            }
            out.push_str(&format!("{:?}", node.name().value()));
            for entry in node.entries() {
                out.push(' ');
                if let Some(name) = entry.name() {
                    out.push_str(&format!("{:?}=", name.value()));
                }
                if let Some(ty) = entry.ty() {
                    out.push_str(&format!("({:?})", ty.value()));
                }
                out.push_str(&match entry.value() {
                    ::kdl::KdlValue::String(text) => format!("{text:?}"),
                    ::kdl::KdlValue::Integer(number) => number.to_string(),
                    ::kdl::KdlValue::Float(number) => format!("{number:?}"),
                    ::kdl::KdlValue::Bool(value) => value.to_string(),
                    ::kdl::KdlValue::Null => "null".to_string(),
                });
            }
            out.push('\n');
            if let Some(children) = node.children() {
                out.push_str(&"  ".repeat(depth));
                out.push_str("{\n");
                reference(children.nodes(), depth + 1, out);
                out.push_str(&"  ".repeat(depth));
                out.push_str("}\n");
            }
        }
    }

    pub fn read(text: &str) -> std::result::Result<String, Vec<SyntaxError>> {
        let parsed = parse(text, 100);
        if !parsed.errors.is_empty() {
            return Err(parsed.errors);
        }
        let mut out = String::new();
        ours(&parsed.nodes, 0, &mut out);
        Ok(out)
    }
}

mod suite {
    use super::support::*;

    /// The official KDL 2.0 test suite (kdl-org/kdl, as shipped with the `kdl` crate 6.7):
    /// a case with an `expected_kdl` twin must parse, one without must fail; what parses
    /// must read the same as with the `kdl` crate.
    #[test]
    fn kdl_spec_suite() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kdl-spec");
        let mut cases: Vec<_> = std::fs::read_dir(dir.join("input"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        cases.sort();
        assert!(cases.len() > 300, "the suite is missing: {}", cases.len());
        let mut failures = Vec::new();
        for case in &cases {
            let name = case.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(case).unwrap().replace("\r\n", "\n");
            let valid = dir.join("expected_kdl").join(&name).exists();
            // The kdl crate ships `hex.kdl` without its expected output; KDL sets no integer
            // size (the spec expects 12379813812177893520). steward refuses it later, as
            // larger than 64 bits.
            let valid = valid || name == "hex.kdl";
            match (read(&text), valid) {
                (Ok(_), true) if name == "hex.kdl" => {}
                (Ok(tree), true) => {
                    let reference_doc = ::kdl::KdlDocument::parse_v2(&text).unwrap();
                    let mut expected = String::new();
                    reference(reference_doc.nodes(), 0, &mut expected);
                    if tree != expected {
                        failures.push(format!(
                            "{name}: read\n{tree}but the kdl crate reads\n{expected}"
                        ));
                    }
                }
                (Ok(tree), false) => failures.push(format!("{name}: must fail, read\n{tree}")),
                (Err(errors), true) => failures.push(format!("{name}: must parse, got {errors:?}")),
                (Err(errors), false) => {
                    for err in &errors {
                        assert!(
                            err.span.start <= err.span.end && err.span.end <= text.len(),
                            "{name}: {err:?}"
                        );
                        assert!(!err.message.is_empty());
                    }
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }
}

mod differential {
    use super::support::*;

    /// Where the `kdl` crate departs from the KDL 2.0 spec, which this parser follows: it
    /// accepts U+007F, a bare `-inf` and one-line raw strings starting with `""` (the spec
    /// forbids all three), and refuses a slashdashed node ended by `;`.
    fn known_crate_difference(text: &str) -> bool {
        text.contains('\u{7f}')
            || text.contains("#\"\"")
            || text.contains("-inf")
            || (text.contains("/-") && text.contains(';'))
    }

    /// Small mutations of the suite read the same with this parser and with the `kdl` crate,
    /// but where the crate departs from the spec. 5,000 mutations by default;
    /// `STEWARD_KDL_DIFF_ITERATIONS=1000000` for a long run (about 45 s in a debug build).
    #[test]
    fn mutated_suite_agrees_with_the_kdl_crate() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kdl-spec/input");
        let mut seeds: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                std::fs::read_to_string(e.unwrap().path())
                    .unwrap()
                    .replace("\r\n", "\n")
            })
            .collect();
        seeds.sort();
        let mut state: u64 = 0x9E3779B97F4A7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: Vec<&str> = vec![
            " ", "\n", "\"", "#", "/", "*", "-", "{", "}", "(", ")", "=", ";", "\\", "a", "1", ".",
            "_", "e", "0x", "\"\"\"", "/-", "#true", "\t", "'", "+", "\u{a0}", "\r",
        ];
        let mut disagreements = Vec::new();
        let iterations: usize = std::env::var("STEWARD_KDL_DIFF_ITERATIONS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(5_000);
        for _ in 0..iterations {
            let seed = &seeds[(next() as usize) % seeds.len()];
            let mut text: Vec<char> = seed.chars().collect();
            for _ in 0..(1 + next() % 3) {
                let pos = if text.is_empty() {
                    0
                } else {
                    (next() as usize) % (text.len() + 1)
                };
                match next() % 3 {
                    0 if pos < text.len() => {
                        text.remove(pos);
                    }
                    _ => {
                        let piece = alphabet[(next() as usize) % alphabet.len()];
                        for (i, c) in piece.chars().enumerate() {
                            text.insert(pos + i, c);
                        }
                    }
                }
            }
            let text: String = text.into_iter().collect();
            if known_crate_difference(&text) {
                continue;
            }
            let mine = read(&text);
            let theirs = ::kdl::KdlDocument::parse_v2(&text).map(|doc| {
                let mut out = String::new();
                reference(doc.nodes(), 0, &mut out);
                out
            });
            let agree = match (&mine, &theirs) {
                (Ok(a), Ok(b)) => a == b,
                (Err(_), Err(_)) => true,
                // The crate is lenient around `/-` where the spec is not (chains, text
                // right after a commented-out node's block, `/-` right after a keyword).
                (Err(_), Ok(_)) => text.contains("/-"),
                // The spec lets a commented-out child block follow a block with no space
                // (`{ a }/-{ b }`); the crate does not always.
                (Ok(_), Err(_)) => text.contains("}/-"),
            };
            if !agree && disagreements.len() < 40 {
                disagreements.push(format!(
                    "{text:?}\n  mine: {:?}\n  kdl: {:?}",
                    mine.as_ref().map_err(|e| &e[0].message),
                    theirs.as_ref().map_err(|_| "error")
                ));
            }
        }
        assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    }
}
