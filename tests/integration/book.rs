//! The book quotes real code and real output through mdBook includes. mdBook renders an
//! include whose anchor is missing as nothing at all, without an error, so these tests
//! check every `{{#include PATH}}`, `{{#include PATH:ANCHOR}}`, `{{#include PATH:A:B}}`
//! (line ranges) and `{{#rustdoc_include …}}` in book/src, and every chapter of SUMMARY.md.
//!
//! Anchors follow mdBook's rules: a line containing `ANCHOR: name` starts the region, the
//! next line containing `ANCHOR_END: name` ends it, and lines naming other anchors inside
//! it are dropped from the output.

use crate::support::workspace;
use std::path::{Path, PathBuf};

fn book_src() -> PathBuf {
    workspace().join("book/src")
}

/// Every `.md` file under `dir`, sorted.
fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// One `{{#include …}}` (or `{{#rustdoc_include …}}`) found in a chapter.
#[derive(Debug, PartialEq)]
struct Include {
    line: usize,
    path: String,
    /// What follows the first ':' — an anchor name or a line range — if anything.
    selector: Option<String>,
}

/// Find the include directives of a chapter. `\{{#include …}}` is mdBook's escape and
/// is not an include.
fn includes(text: &str) -> Vec<Include> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        let mut consumed = 0;
        while let Some(start) = rest.find("{{#") {
            let escaped = start > 0 && rest.as_bytes()[start - 1] == b'\\';
            let after = &rest[start + 3..];
            let Some(end) = after.find("}}") else { break };
            let body = after[..end].trim();
            let (directive, arg) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
            if !escaped && (directive == "include" || directive == "rustdoc_include") {
                let arg = arg.trim();
                let (path, selector) = match arg.split_once(':') {
                    Some((p, s)) => (p.trim().to_string(), Some(s.trim().to_string())),
                    None => (arg.to_string(), None),
                };
                out.push(Include { line: n + 1, path, selector });
            }
            consumed += start + 3 + end + 2;
            rest = &line[consumed..];
        }
    }
    out
}

/// The anchor name on a line holding `marker` (`ANCHOR:` or `ANCHOR_END:`), as mdBook reads it.
fn anchor_on<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let i = line.find(marker)?;
    let rest = line[i + marker.len()..].trim_start();
    let name_len = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-')).unwrap_or(rest.len());
    (name_len > 0).then(|| &rest[..name_len])
}

/// Check one anchor in a file's text: present once, closed after it opens, and not empty.
fn check_anchor(text: &str, name: &str) -> Result<(), String> {
    let lines: Vec<&str> = text.lines().collect();
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| !lines[i].contains("ANCHOR_END:") && anchor_on(lines[i], "ANCHOR:") == Some(name))
        .collect();
    let ends: Vec<usize> = (0..lines.len()).filter(|&i| anchor_on(lines[i], "ANCHOR_END:") == Some(name)).collect();
    match (starts.as_slice(), ends.as_slice()) {
        ([], []) => return Err(format!("no `ANCHOR: {name}` / `ANCHOR_END: {name}` in the file")),
        ([], _) => return Err(format!("`ANCHOR_END: {name}` without `ANCHOR: {name}`")),
        (_, []) => return Err(format!("`ANCHOR: {name}` without `ANCHOR_END: {name}`")),
        ([s], [e]) if e < s => return Err(format!("`ANCHOR_END: {name}` (line {}) comes before `ANCHOR: {name}` (line {})", e + 1, s + 1)),
        ([s], [e]) => {
            let body = lines[s + 1..*e].iter().filter(|l| !l.contains("ANCHOR:") && !l.contains("ANCHOR_END:"));
            if body.clone().all(|l| l.trim().is_empty()) {
                return Err(format!("anchor `{name}` (lines {}-{}) is empty", s + 1, e + 1));
            }
        }
        _ => {
            return Err(format!(
                "anchor `{name}` is defined {} times (starts) and closed {} times: mdBook uses only the first",
                starts.len(),
                ends.len()
            ))
        }
    }
    Ok(())
}

/// Check a line range selector (`10`, `10:20`, `10:`, `:20`) against a file's length.
fn check_range(text: &str, sel: &str) -> Result<(), String> {
    let n = text.lines().count();
    let (a, b) = sel.split_once(':').map_or((sel, None), |(a, b)| (a, Some(b)));
    let parse = |s: &str| -> Result<Option<usize>, String> {
        if s.is_empty() { Ok(None) } else { s.parse().map(Some).map_err(|_| format!("bad line range {sel:?}")) }
    };
    let (start, end) = (parse(a)?, match b { Some(b) => parse(b)?, None => parse(a)? });
    if let Some(s) = start {
        if s == 0 || s > n {
            return Err(format!("line range {sel:?} starts past the end of the file ({n} lines)"));
        }
    }
    if let Some(e) = end {
        if e > n {
            return Err(format!("line range {sel:?} ends past the end of the file ({n} lines)"));
        }
    }
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            return Err(format!("line range {sel:?} ends before it starts"));
        }
    }
    Ok(())
}

/// A line range into a lesson's expected output must start at one of its section headers
/// (`== N. title ==`): when the lesson changes and the lines move, the range fails here
/// instead of quoting the wrong lines.
fn check_lesson_range(text: &str, sel: &str) -> Result<(), String> {
    let start: usize = sel.split(':').next().unwrap_or("").parse().unwrap_or(1);
    match text.lines().nth(start.saturating_sub(1)) {
        Some(l) if l.starts_with("== ") => Ok(()),
        other => Err(format!(
            "line range {sel:?} of a lesson's expected output should start at a `== …` section header, but line {start} is {:?}",
            other.unwrap_or("")
        )),
    }
}

/// Every problem with the includes of one chapter, as `chapter:line: problem` lines.
fn include_problems(chapter: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(chapter).unwrap();
    let shown = chapter.strip_prefix(workspace()).unwrap_or(chapter).display().to_string();
    let mut problems = Vec::new();
    for inc in includes(&text) {
        let at = format!("{shown}:{}: {{{{#include {}{}}}}}", inc.line, inc.path, inc.selector.as_deref().map(|s| format!(":{s}")).unwrap_or_default());
        let target = chapter.parent().unwrap().join(&inc.path);
        let Ok(content) = std::fs::read_to_string(&target) else {
            problems.push(format!("{at}: {} does not exist", target.display()));
            continue;
        };
        let result = match inc.selector.as_deref() {
            None => if content.trim().is_empty() { Err("the file is empty".to_string()) } else { Ok(()) },
            Some(s) if s.starts_with(|c: char| c.is_ascii_digit() || c == ':') => {
                let is_lesson_output = inc.path.contains("lessons/") && inc.path.ends_with("expected.txt");
                check_range(&content, s).and_then(|()| if is_lesson_output { check_lesson_range(&content, s) } else { Ok(()) })
            }
            Some(s) => check_anchor(&content, s),
        };
        if let Err(why) = result {
            problems.push(format!("{at}: {why}"));
        }
    }
    problems
}

#[test]
fn book_includes_resolve() {
    let chapters = markdown_files(&book_src());
    assert!(!chapters.is_empty(), "no chapters in {}", book_src().display());
    let mut problems = Vec::new();
    let mut count = 0;
    for c in &chapters {
        count += includes(&std::fs::read_to_string(c).unwrap()).len();
        problems.extend(include_problems(c));
    }
    assert!(count > 0, "the book includes nothing: its code and output should come from the sources");
    assert!(problems.is_empty(), "{} broken include(s) in the book:\n{}", problems.len(), problems.join("\n"));
}

/// The chapter links of SUMMARY.md: `[Title](path.md)`; draft chapters `[Title]()` have none.
fn summary_links(summary: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in summary.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].trim();
            let target = target.split('#').next().unwrap_or("");
            if !target.is_empty() {
                out.push((n + 1, target.to_string()));
            }
            rest = &after[end + 1..];
        }
    }
    out
}

#[test]
fn book_summary_chapters_exist() {
    let src = book_src();
    let summary_path = src.join("SUMMARY.md");
    let summary = std::fs::read_to_string(&summary_path).unwrap_or_else(|e| panic!("read {}: {e}", summary_path.display()));
    let links = summary_links(&summary);
    assert!(!links.is_empty(), "SUMMARY.md lists no chapters");
    let mut problems = Vec::new();
    for (line, target) in &links {
        if !src.join(target).is_file() {
            problems.push(format!("book/src/SUMMARY.md:{line}: chapter {target} does not exist"));
        }
    }
    // A chapter file that SUMMARY.md does not list is never rendered.
    for md in markdown_files(&src) {
        let rel = md.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if rel != "SUMMARY.md" && !links.iter().any(|(_, t)| t.trim_start_matches("./") == rel) {
            problems.push(format!("book/src/{rel} is not listed in SUMMARY.md, so mdBook never renders it"));
        }
    }
    let toml = std::fs::read_to_string(workspace().join("book/book.toml")).unwrap_or_default();
    if !toml.contains("src = \"src\"") {
        problems.push("book/book.toml does not set src = \"src\"".to_string());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn book_include_checker_catches_mistakes() {
    let found = includes("a {{#include ../x.rs:name}} b {{#rustdoc_include y.rs}}\n\\{{#include not/this.rs}}\n{{#include z.txt:3:9}}");
    assert_eq!(
        found,
        vec![
            Include { line: 1, path: "../x.rs".into(), selector: Some("name".into()) },
            Include { line: 1, path: "y.rs".into(), selector: None },
            Include { line: 3, path: "z.txt".into(), selector: Some("3:9".into()) },
        ]
    );
    let file = "// ANCHOR: good\nfn f() {}\n// ANCHOR_END: good\n// ANCHOR: empty\n\n// ANCHOR_END: empty\n// ANCHOR: open\n";
    assert!(check_anchor(file, "good").is_ok());
    assert!(check_anchor(file, "empty").unwrap_err().contains("empty"));
    assert!(check_anchor(file, "open").unwrap_err().contains("without `ANCHOR_END"));
    assert!(check_anchor(file, "missing").unwrap_err().contains("no `ANCHOR: missing`"));
    assert!(check_anchor(file, "goo").is_err(), "a prefix of an anchor name is not that anchor");
    assert!(check_range("1\n2\n3\n", "2:3").is_ok());
    assert!(check_range("1\n2\n3\n", "5:").is_err());
    assert!(check_range("1\n2\n3\n", "2:4").is_err());
    assert!(check_lesson_range("x\n== 2. two ==\ny\n", "2:3").is_ok());
    assert!(check_lesson_range("x\n== 2. two ==\ny\n", "3:").is_err());
    assert_eq!(summary_links("- [A](a.md)\n- [Draft]()\n  - [B](sub/b.md#x)"), vec![(1, "a.md".into()), (3, "sub/b.md".into())]);
}
