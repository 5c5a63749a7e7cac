//! The lessons run as written: `bash lessons/NN-slug/run.sh` with the built tools first on
//! PATH, a fresh BOXKIT_ROOT and LESSON_TMP, prints exactly `expected.txt` and exits 0.
//!
//! The book includes those expected.txt files as the output a reader will see, so this is
//! also what keeps the book's listings true. When a tool's output changes on purpose, the
//! failure message names a file holding the new output: review it, then copy it over
//! expected.txt.

use crate::support::{path_env, workspace, Scratch};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn run_lesson(slug: &str) {
    let dir = workspace().join("lessons").join(slug);
    let script = dir.join("run.sh");
    let expected_path = dir.join("expected.txt");
    assert!(script.is_file(), "{} is missing", script.display());
    let expected = std::fs::read_to_string(&expected_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", expected_path.display()));

    let root = Scratch::new();
    let tmp = Scratch::new();
    let out = Command::new("bash")
        .arg(&script)
        .current_dir(tmp.path())
        .env("PATH", path_env())
        .env("BOXKIT_ROOT", root.path())
        .env("LESSON_TMP", tmp.path())
        .env("BOXKIT_SRC", workspace())
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run bash {}: {e}", script.display()));
    let actual = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);

    assert!(
        out.status.success(),
        "lessons/{slug}/run.sh failed with {:?}\n--- stdout ---\n{actual}\n--- stderr ---\n{stderr}",
        out.status
    );
    if actual != expected {
        let saved = save_actual(slug, &actual);
        panic!(
            "lessons/{slug}/run.sh printed something other than expected.txt\n\
             (- expected.txt, + actual stdout; the full output is in {})\n\n{}\n--- stderr ---\n{stderr}",
            saved.display(),
            line_diff(&expected, &actual)
        );
    }
}

/// Keep the actual output where a person can diff it or copy it over expected.txt.
fn save_actual(slug: &str, actual: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lessons");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{slug}.actual.txt"));
    let _ = std::fs::write(&path, actual);
    path
}

/// A line diff (longest common subsequence) showing the changed lines with two lines of
/// context, numbered as in expected.txt (left) and in the actual output (right).
fn line_diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.split_inclusive('\n').collect();
    let b: Vec<&str> = actual.split_inclusive('\n').collect();
    // lcs[i][j] = length of the longest common subsequence of a[i..] and b[j..]
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    // Walk the table into a script of (tag, expected line, actual line, text).
    let mut script: Vec<(char, Option<usize>, Option<usize>, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            script.push((' ', Some(i + 1), Some(j + 1), a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            script.push(('-', Some(i + 1), None, a[i]));
            i += 1;
        } else {
            script.push(('+', None, Some(j + 1), b[j]));
            j += 1;
        }
    }
    const CONTEXT: usize = 2;
    let changed: Vec<usize> = script.iter().enumerate().filter(|(_, s)| s.0 != ' ').map(|(k, _)| k).collect();
    let num = |n: Option<usize>| n.map(|n| format!("{n:4}")).unwrap_or_else(|| "    ".to_string());
    let mut out = String::new();
    let mut last_shown: Option<usize> = None;
    for (k, (tag, left, right, text)) in script.iter().enumerate() {
        if !changed.iter().any(|&c| c.abs_diff(k) <= CONTEXT) {
            continue;
        }
        if last_shown.map_or(k > 0, |l| k > l + 1) {
            out.push_str("           ...\n");
        }
        let text = match text.strip_suffix('\n') {
            Some(t) => t.to_string(),
            None => format!("{text}\\ (no newline at end)"),
        };
        out.push_str(&format!("{tag}{} {} | {text}\n", num(*left), num(*right)));
        last_shown = Some(k);
    }
    out
}

/// One test per lesson, and the list `every_lesson_is_complete_and_tested` checks against:
/// both come from this table, so a lesson cannot be listed without being run.
macro_rules! lessons {
    ($($test:ident => $dir:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                run_lesson($dir);
            }
        )*
        const TESTED: &[&str] = &[$($dir),*];
    };
}

lessons! {
    lesson_01_images_are_tarballs => "01-images-are-tarballs",
    lesson_02_layers_and_whiteouts => "02-layers-and-whiteouts",
    lesson_03_namespaces => "03-namespaces",
    lesson_04_registries => "04-registries",
    lesson_05_copy_on_write => "05-copy-on-write",
    lesson_06_commit => "06-commit",
    lesson_07_save_and_load => "07-save-and-load",
    lesson_08_cgroups => "08-cgroups",
    lesson_09_capabilities => "09-capabilities",
    lesson_10_rootless => "10-rootless",
}

/// Every lesson directory has its test (the table above) and the three files a lesson is made of.
#[test]
fn every_lesson_is_complete_and_tested() {
    let mut problems = Vec::new();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(workspace().join("lessons")).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_type().unwrap().is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        for f in ["README.md", "run.sh", "expected.txt"] {
            if !entry.path().join(f).is_file() {
                problems.push(format!("lessons/{name}/{f} is missing"));
            }
        }
        if !TESTED.contains(&name.as_str()) {
            problems.push(format!("lessons/{name} has no test in tests/integration/lessons.rs"));
        }
        found.push(name);
    }
    for t in TESTED {
        if !found.iter().any(|f| f == t) {
            problems.push(format!("lessons/{t} is tested but does not exist"));
        }
    }
    let index = std::fs::read_to_string(workspace().join("lessons/README.md")).unwrap_or_default();
    for name in &found {
        if !index.contains(name.as_str()) {
            problems.push(format!("lessons/README.md does not mention {name}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn lessons_line_diff_marks_changes() {
    let d = line_diff("a\nb\nc\n", "a\nB\nc\nd\n");
    assert!(d.contains("-   2      | b\n"), "{d}");
    assert!(d.contains("+        2 | B\n"), "{d}");
    assert!(d.contains("    3    3 | c\n"), "{d}");
    assert!(d.contains("+        4 | d\n"), "{d}");
    assert_eq!(line_diff("same\n", "same\n"), "");
}
