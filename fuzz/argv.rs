//! The command-line fuzz invariant, shared by `fuzz_targets/cli.rs` and the seed
//! replay in tests/fuzz_corpus.rs (both include this file with `#[path]`).
//!
//! Input format: the argument list after `argv[0]`, arguments separated by NUL
//! bytes (which no real argument can contain); an empty input is no arguments.
//! Arguments may be any other bytes, UTF-8 or not. This goes to `cli::parse`.
//!
//! An input that starts with [`KERNEL_MARKER`] (`K` and a NUL) carries a
//! kernel command line (`/proc/cmdline`) first: the bytes after the marker up
//! to the next NUL or the end (`/proc/cmdline` holds no NUL), then, after that
//! NUL, the argument list as above. This goes to `cli::parse_with_kernel`.
//! Without the marker an input means what it meant before the marker existed;
//! the marker only takes away argument lists whose first argument is `K`,
//! which are all the same usage error (an unexpected argument).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use omdiscd::cli::{self, Command, UsageError};
use omdiscd::wire;

/// Starts an input that carries a kernel command line (see the module docs).
pub const KERNEL_MARKER: &[u8] = b"K\0";

/// Splits fuzz input into the kernel command line, if it has one, and the
/// rest, the argument list (see the module docs).
pub fn split_kernel(data: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let Some(rest) = data.strip_prefix(KERNEL_MARKER) else {
        return (None, data);
    };
    match rest.iter().position(|&b| b == 0) {
        Some(end) => (Some(&rest[..end]), &rest[end + 1..]),
        None => (Some(rest), &[]),
    }
}

/// Splits an argument list into arguments (see the module docs).
pub fn split(data: &[u8]) -> Vec<OsString> {
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|&b| b == 0)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect()
}

/// Parses `data` as an argument list, after a kernel command line if it has
/// one, and checks what the parser promises: it never panics, gives the same
/// answer twice, reports a usage error as one non-empty line, and a
/// configuration it accepts is within the protocol's and the daemon's limits.
/// With a kernel command line: one without `omdiscd.` words changes nothing,
/// and it cannot take away `-h` or `-V`. Panics when a promise is broken.
pub fn check(data: &[u8]) -> Result<Command, UsageError> {
    let (kernel, data) = split_kernel(data);
    let args = split(data);
    let parse = || match kernel {
        None => cli::parse(args.iter().cloned()),
        Some(line) => cli::parse_with_kernel(line, args.iter().cloned()),
    };
    let parsed = parse();
    assert_eq!(parsed, parse(), "parsing is not deterministic");
    if let Some(line) = kernel {
        let alone = cli::parse(args.iter().cloned());
        let ours = line
            .split(u8::is_ascii_whitespace)
            .any(|w| w.starts_with(b"omdiscd."));
        if !ours || matches!(alone, Ok(Command::Help | Command::Version)) {
            assert_eq!(parsed, alone, "the kernel command line changed this");
        }
    }
    match &parsed {
        Err(e) => {
            assert!(!e.message.is_empty(), "empty usage error");
            assert!(
                !e.message.contains('\n'),
                "usage error of several lines: {e}"
            );
            assert_eq!(e.to_string(), e.message);
        }
        Ok(Command::Run(cfg)) => {
            let interval = cfg.interval_ms;
            assert!(
                (wire::MIN_INTERVAL_MS..=wire::MAX_INTERVAL_MS).contains(&interval),
                "interval {interval} ms accepted"
            );
            let hold = cfg.hold_ms();
            assert!(
                (interval..=wire::MAX_HOLD_MS).contains(&hold),
                "hold {hold} ms accepted with interval {interval} ms"
            );
            assert!(cfg.interfaces.len() <= omdiscd::node::MAX_INTERFACES);
            for (i, name) in cfg.interfaces.iter().enumerate() {
                assert!(
                    !name.is_empty() && name.len() <= omdiscd::config::MAX_IFNAME_LEN,
                    "{name:?}"
                );
                assert!(!cfg.interfaces[..i].contains(name), "{name:?} twice");
            }
            assert!(cfg.group.is_multicast(), "group {}", cfg.group);
            assert_ne!(cfg.port, 0);
            assert_ne!(cfg.multicast_ttl, Some(0));
            // Printable ASCII without spaces, NUL padded (all NUL: no label).
            let label = wire::Label(cfg.label);
            let text = label.trimmed();
            assert!(
                text.iter().all(u8::is_ascii_graphic)
                    && cfg.label[text.len()..].iter().all(|&b| b == 0),
                "label {label:?}"
            );
            let optional = [&cfg.control_socket, &cfg.metrics_file, &cfg.on_change];
            for p in [&cfg.map_file, &cfg.proc_root, &cfg.setpe]
                .into_iter()
                .chain(optional.into_iter().flatten())
            {
                assert!(!p.as_os_str().is_empty(), "empty path accepted");
            }
        }
        Ok(Command::Dump {
            map_file, control, ..
        }) => {
            assert!(!map_file.as_os_str().is_empty(), "empty path accepted");
            assert!(!control.as_os_str().is_empty(), "empty path accepted");
        }
        Ok(Command::Stats { control, .. } | Command::Watch { control, .. }) => {
            assert!(!control.as_os_str().is_empty(), "empty path accepted");
        }
        Ok(Command::Help | Command::Version) => {}
    }
    parsed
}
