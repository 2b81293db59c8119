//! The architecture, checked: data flows forward only. Each module of the library is a stage, and
//! a stage's code (tests aside) names only itself and the stages before it (`crate::x` paths), so
//! the file tree reads in the order the data goes through it (ARCHITECTURE.md).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The stages in data-flow order; a stage may use the ones before it. `time` and `anomaly` are
/// shared vocabulary (formatters, the anomaly counter) that every stage may use.
const STAGES: &[&str] = &[
    "time", "capture", "anomaly", "decode", "tcp", "http", "pair", "diagnose", "incident", "pipeline",
    "report",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The stage a file of `src/` belongs to (None for lib.rs and main.rs, which see everything).
fn stage_of(path: &Path) -> Option<&'static str> {
    let first = path.strip_prefix(src()).unwrap().components().next()?;
    let name = first.as_os_str().to_str()?.trim_end_matches(".rs");
    STAGES.iter().copied().find(|s| *s == name)
}

/// The lines of a file that are code of the library: comments and test modules left out.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        // `#[cfg(test)] mod tests { ... }`: skip to its closing brace (counting braces is enough
        // for test modules, which hold no unbalanced brace in a string).
        if t.starts_with("#[cfg(test)]") {
            let Some((_, next)) = lines.peek() else { break };
            if next.trim_start().starts_with("mod ") && next.trim_end().ends_with('{') {
                let mut depth = 0i64;
                for (_, l) in lines.by_ref() {
                    depth += l.matches('{').count() as i64 - l.matches('}').count() as i64;
                    if depth <= 0 {
                        break;
                    }
                }
            } else {
                lines.next();
            }
            continue;
        }
        out.push((i + 1, line));
    }
    out
}

/// Every module in lib.rs is placed in the order, so a new one has to be given its place.
#[test]
fn every_module_is_a_stage() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let modules: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';'))
        .collect();
    let stages: BTreeSet<&str> = STAGES.iter().copied().collect();
    assert_eq!(modules, stages, "lib.rs modules vs the stage order in this test");
}

#[test]
fn stages_use_only_earlier_stages() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for path in &files {
        let Some(stage) = stage_of(path) else { continue };
        // Unit-test files of a stage may use later stages to build their inputs.
        if path.file_name().is_some_and(|n| n == "tests.rs")
            || path.components().any(|c| c.as_os_str() == "tests")
        {
            continue;
        }
        let rank = STAGES.iter().position(|s| *s == stage).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let is_stage_root = path.parent() == Some(&src()) || path.ends_with(format!("{stage}/mod.rs"));
        for (n, line) in code_lines(&text) {
            let at = || {
                format!(
                    "{}:{n}: {}",
                    path.strip_prefix(src()).unwrap().display(),
                    line.trim()
                )
            };
            if line.contains("crate::{") {
                wrong.push(format!(
                    "{} (a grouped `crate::{{...}}` import: name one stage a line)",
                    at()
                ));
            }
            if is_stage_root && line.contains("super::") {
                wrong.push(format!(
                    "{} (`super::` from a stage's root is the crate root)",
                    at()
                ));
            }
            for (i, _) in line.match_indices("crate::") {
                let used: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                match STAGES.iter().position(|s| *s == used) {
                    Some(r) if r > rank => {
                        wrong.push(format!("{} ({stage} uses the later stage {used})", at()))
                    }
                    Some(_) => {}
                    None => wrong.push(format!("{} (`crate::{used}` is not a stage)", at())),
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "uses against the data flow:\n{}",
        wrong.join("\n")
    );
}

/// The check itself: a use of a later stage is found, one in a comment or a test module is not.
#[test]
fn the_check_sees_what_it_should() {
    let text = "use crate::tcp::Connection;\n// see crate::report\n#[cfg(test)]\nmod tests {\n    use crate::report::x;\n}\nfn f() { crate::pair::g() }\n";
    let lines: Vec<usize> = code_lines(text)
        .into_iter()
        .filter(|(_, l)| l.contains("crate::"))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(lines, vec![1, 7]);
}
