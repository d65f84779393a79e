//! The manual page `dist/omdiscd.8` against the program and the formatters.
//!
//! 1. Every option that `omdiscd --help` lists has its own entry (a `.TP`
//!    tag) under OPTIONS, and every option with an entry there is in
//!    `--help`.
//! 2. `mandoc -T lint -W warning` and `groff -t -ww -man -z` say nothing, the
//!    source is plain ASCII, and no line of the page rendered for an
//!    80-column terminal is wider than that.
//!
//! scripts/test installs mandoc; run elsewhere without it, the mandoc check
//! prints `SKIPPED: mandoc not installed` and passes (likewise groff).

use std::collections::BTreeSet;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::process::{Command, Output};

fn page_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dist/omdiscd.8")
}

fn page() -> String {
    std::fs::read_to_string(page_path()).expect("dist/omdiscd.8")
}

/// `SKIPPED: ...` on stderr, past the harness's capture, so it shows in
/// every run and scripts/test counts it.
fn skipped(line: &str) {
    let _ = std::io::stderr().write_all(format!("SKIPPED: {line}\n").as_bytes());
}

/// The option names of `omdiscd --help`: on each line indented by a few
/// spaces and starting with `-`, the words up to the first that is not an
/// option (`-i, --interface IF[,IF...]` gives `-i` and `--interface`).
/// Description lines are indented much further, so a continuation line that
/// happens to start with an option name is not mistaken for an entry.
fn help_options() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_omdiscd"))
        .arg("--help")
        .output()
        .expect("run omdiscd --help");
    assert!(out.status.success(), "omdiscd --help: {:?}", out.status);
    let help = String::from_utf8(out.stdout).expect("--help is UTF-8");
    let mut options = BTreeSet::new();
    for line in help.lines() {
        let text = line.trim_start();
        let indent = line.len() - text.len();
        if indent == 0 || indent > 8 || !text.starts_with('-') {
            continue;
        }
        for word in text.split_whitespace() {
            let word = word.trim_end_matches(',');
            let name = word.split(['=', '[']).next().unwrap_or("");
            if !is_option_name(name) {
                break;
            }
            options.insert(name.to_string());
        }
    }
    options
}

/// `-x` or `--some-name`.
fn is_option_name(s: &str) -> bool {
    if let Some(long) = s.strip_prefix("--") {
        let mut chars = long.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    } else if let Some(short) = s.strip_prefix('-') {
        short.len() == 1 && short.chars().all(|c| c.is_ascii_alphanumeric())
    } else {
        false
    }
}

/// Roff source as plain text: font changes, zero-width and hyphenation
/// escapes dropped, `\-` (and the named dashes) turned into `-`.
fn deroff(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('-') => out.push('-'),
            Some('f') => match chars.next() {
                Some('(') => {
                    chars.next();
                    chars.next();
                }
                Some('[') => {
                    for c in chars.by_ref() {
                        if c == ']' {
                            break;
                        }
                    }
                }
                _ => {}
            },
            Some('(') => {
                let name: String = chars.by_ref().take(2).collect();
                if matches!(name.as_str(), "hy" | "mi" | "en") {
                    out.push('-');
                }
            }
            Some('&' | '%' | 'c' | ':') => {}
            Some('e') => out.push('\\'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// The tag lines (the line after each `.TP`) of the OPTIONS section, deroffed.
fn option_tags(page: &str) -> Vec<String> {
    let mut in_options = false;
    let mut after_tp = false;
    let mut tags = Vec::new();
    for line in page.lines() {
        if line.starts_with(".SH") {
            in_options = line.trim() == ".SH OPTIONS";
            continue;
        }
        if !in_options {
            continue;
        }
        if after_tp {
            tags.push(deroff(line));
        }
        after_tp = line.trim() == ".TP";
    }
    assert!(
        !tags.is_empty(),
        "dist/omdiscd.8 has no .TP entries under .SH OPTIONS"
    );
    tags
}

/// The option names in `text`, each standing alone (not inside a longer
/// word: `-n` is not found in `--nodaemon`).
fn options_in(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'-' && (i == 0 || !word(bytes[i - 1])) {
            let end = (i..bytes.len())
                .find(|&j| !word(bytes[j]))
                .unwrap_or(bytes.len());
            let name = &text[i..end];
            if is_option_name(name) {
                found.insert(name.to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    found
}

#[test]
fn help_is_parsed() {
    let options = help_options();
    for sure in [
        "-n",
        "--nodaemon",
        "-i",
        "--interface",
        "--dump",
        "-h",
        "--help",
        "-V",
    ] {
        assert!(
            options.contains(sure),
            "{sure} not parsed from --help: {options:?}"
        );
    }
    assert!(!options.contains("-"), "{options:?}");
    assert_eq!(options_in("-n, --nodaemon"), set(&["-n", "--nodaemon"]));
    assert_eq!(
        options_in("--interface IF[,IF...] and x-y -- z"),
        set(&["--interface"])
    );
    assert_eq!(
        deroff(r#".BR \-i ", " \-\-interface " \fIIF\fP[,\fIIF\fP...]""#),
        r#".BR -i ", " --interface " IF[,IF...]""#
    );
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_option_in_help_has_an_entry_in_the_page() {
    let help = help_options();
    let documented: BTreeSet<String> = option_tags(&page())
        .iter()
        .flat_map(|t| options_in(t))
        .collect();
    let missing: Vec<_> = help.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "options in `omdiscd --help` without an entry (.TP) under OPTIONS in dist/omdiscd.8: {missing:?}"
    );
    let unknown: Vec<_> = documented.difference(&help).collect();
    assert!(
        unknown.is_empty(),
        "dist/omdiscd.8 documents options that `omdiscd --help` does not list: {unknown:?}"
    );
}

/// Runs a formatter; `None` (after saying SKIPPED) when it is not installed.
fn formatter(program: &str, args: &[&str]) -> Option<Output> {
    match Command::new(program).args(args).arg(page_path()).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            skipped(&format!("{program} not installed"));
            None
        }
        Err(e) => panic!("running {program}: {e}"),
    }
}

#[test]
fn mandoc_lint_is_silent() {
    let Some(out) = formatter("mandoc", &["-T", "lint", "-W", "warning"]) else {
        return;
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.is_empty(),
        "mandoc -T lint -W warning dist/omdiscd.8 ({}):\n{said}",
        out.status
    );
}

#[test]
fn groff_warns_of_nothing() {
    let Some(out) = formatter("groff", &["-t", "-ww", "-man", "-z"]) else {
        return;
    };
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.is_empty(),
        "groff -t -ww -man -z dist/omdiscd.8 ({}):\n{said}",
        out.status
    );
}

#[test]
fn source_is_ascii() {
    let page = page();
    for (n, line) in page.lines().enumerate() {
        assert!(
            line.is_ascii(),
            "dist/omdiscd.8:{}: not ASCII (use a roff escape such as \\(em): {line}",
            n + 1
        );
    }
}

/// Examples and tables do not wrap: rendered for an 80-column terminal
/// (groff's default line length there, 78 columns), no line is wider.
#[test]
fn rendered_page_fits_80_columns() {
    let Some(out) = formatter("groff", &["-t", "-man", "-Tascii", "-P-cbou"]) else {
        return;
    };
    assert!(out.status.success(), "groff -Tascii: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let wide: Vec<_> = text.lines().filter(|l| l.chars().count() > 80).collect();
    assert!(
        wide.is_empty(),
        "lines wider than 80 columns:\n{}",
        wide.join("\n")
    );
    assert!(text.contains("EXIT STATUS"), "{text}");
}
