//! The shipped files agree with each other: every path that
//! `/etc/default/omdiscd` (dist/default/omdiscd) and the manual page
//! (dist/omdiscd.8) tell a user to give the daemon for writing is writable
//! under the shipped systemd unit (dist/omdiscd.service), whose
//! `ProtectSystem=strict` makes everything else read-only.

use std::path::{Path, PathBuf};

fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The unit's `ReadWritePaths=` directories (a leading `-` only says that a
/// missing one is ignored).
fn writable_under_unit() -> Vec<PathBuf> {
    let unit = read("dist/omdiscd.service");
    assert!(
        unit.lines().any(|l| l.trim() == "ProtectSystem=strict"),
        "the unit is no longer strict: revisit this test"
    );
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix("ReadWritePaths="))
        .flat_map(|v| v.split_whitespace())
        .map(|p| PathBuf::from(p.trim_start_matches('-')))
        .collect()
}

/// The paths given to the options that make the daemon write a file, in
/// `text` (roff escapes for '-' undone).
fn written_paths(text: &str) -> Vec<(String, PathBuf)> {
    let text = text.replace("\\-", "-").replace("\\e\n", " ");
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '"')
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = Vec::new();
    for pair in words.windows(2) {
        let opt = pair[0];
        if [
            "--metrics-file",
            "--map-file",
            "--pid-file",
            "--control-socket",
        ]
        .contains(&opt)
            && pair[1].starts_with('/')
        {
            out.push((opt.to_owned(), PathBuf::from(pair[1])));
        }
    }
    out
}

#[test]
fn every_file_the_examples_have_the_daemon_write_is_writable_under_the_unit() {
    let writable = writable_under_unit();
    assert!(
        writable.contains(&PathBuf::from("/run/omdiscd")),
        "{writable:?}"
    );
    let mut seen = 0;
    for source in ["dist/default/omdiscd", "dist/omdiscd.8"] {
        for (opt, path) in written_paths(&read(source)) {
            seen += 1;
            let dir = path.parent().unwrap();
            assert!(
                writable.iter().any(|w| dir.starts_with(w)),
                "{source}: {opt} {} is read-only under dist/omdiscd.service (ReadWritePaths: {writable:?})",
                path.display()
            );
        }
    }
    // The examples name at least the metrics file in both places.
    assert!(
        seen >= 2,
        "no example path found: the parser is out of date"
    );
}

#[test]
fn the_path_parser_finds_options_in_shell_lines_and_roff() {
    let found = written_paths(
        "# OMDISCD_OPTS=\"-i eth0 --metrics-file /var/x/o.prom\"\n\
         omdiscd \\-i eth0 \\e\n    \\-\\-map\\-file /srv/m.map\n--pid-file relative\n",
    );
    assert_eq!(
        found,
        vec![
            ("--metrics-file".to_owned(), PathBuf::from("/var/x/o.prom")),
            ("--map-file".to_owned(), PathBuf::from("/srv/m.map")),
        ]
    );
}
