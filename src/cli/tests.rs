//! The command line's tests.

use super::*;
use crate::config::{DEFAULT_BUDGET, DEFAULT_HOLD_INTERVALS, DEFAULT_MAP_FILE, RC_STATIC_MAPS};

fn run(args: &[&str]) -> Config {
    match parse(args.iter().copied()) {
        Ok(Command::Run(cfg)) => *cfg,
        other => panic!("{args:?}: expected Run, got {other:?}"),
    }
}

fn fail(args: &[&str]) -> String {
    match parse(args.iter().copied()) {
        Err(e) => {
            assert!(!e.message.contains('\n'), "not one line: {e}");
            assert_eq!(e.to_string(), e.message);
            e.message
        }
        other => panic!("{args:?}: expected an error, got {other:?}"),
    }
}

/// The error names the option as typed and quotes the value.
fn fails_naming(args: &[&str], option: &str, value: &str) {
    let msg = fail(args);
    assert!(msg.contains(option), "{args:?}: {msg:?} lacks {option}");
    let quoted = format!("'{value}'");
    assert!(msg.contains(&quoted), "{args:?}: {msg:?} lacks {quoted}");
}

#[test]
fn defaults() {
    let cfg = run(&[]);
    assert_eq!(cfg, Config::default());
    assert!(cfg.daemonize);
    assert!(cfg.interfaces.is_empty());
    assert_eq!(cfg.multicast_ttl, None);
    assert_eq!(cfg.group, Ipv4Addr::new(239, 255, 77, 42));
    assert_eq!(cfg.port, 7742);
    assert_eq!(cfg.interval_ms, 2000);
    assert_eq!(cfg.hold_ms, None);
    assert_eq!(cfg.hold_ms(), 10_000);
    assert_eq!(cfg.map_file, PathBuf::from("/run/omdiscd/openmosix.map"));
    assert_eq!(cfg.proc_root, PathBuf::from("/proc"));
    assert_eq!(cfg.setpe, PathBuf::from("/sbin/setpe"));
    assert_eq!(cfg.label, [0; 16]);
    assert!(!cfg.debug);
}

#[test]
fn flags_in_every_form() {
    for args in [&["-n"][..], &["--nodaemon"]] {
        assert!(!run(args).daemonize, "{args:?}");
    }
    for args in [&["-d"][..], &["--debug"]] {
        assert!(run(args).debug, "{args:?}");
    }
    let cfg = run(&["-nd"]);
    assert!(!cfg.daemonize && cfg.debug);
    let cfg = run(&["-ndieth0"]);
    assert!(!cfg.daemonize && cfg.debug);
    assert_eq!(cfg.interfaces, ["eth0"]);
    assert_eq!(run(&["-dn", "-i", "eth1"]).interfaces, ["eth1"]);
}

#[test]
fn flags_take_no_value() {
    fails_naming(&["--debug=1"], "--debug", "--debug");
    assert!(fail(&["--nodaemon=yes"]).contains("does not take a value"));
}

#[test]
fn interface_forms() {
    for args in [
        &["-i", "eth0"][..],
        &["-ieth0"],
        &["--interface", "eth0"],
        &["--interface=eth0"],
    ] {
        assert_eq!(run(args).interfaces, ["eth0"], "{args:?}");
    }
    assert_eq!(run(&["-i", "eth0,eth1"]).interfaces, ["eth0", "eth1"]);
    assert_eq!(
        run(&["-i", "a,b,c,d,e,f"]).interfaces,
        ["a", "b", "c", "d", "e", "f"]
    );
    let fifteen = "abcdefghijklmno";
    assert_eq!(run(&["-i", fifteen]).interfaces, [fifteen]);
}

#[test]
fn interface_errors() {
    fails_naming(&["-i", "a,b,c,d,e,f,g"], "-i", "a,b,c,d,e,f,g");
    fails_naming(
        &["--interface", "a,b,c,d,e,f,g"],
        "--interface",
        "a,b,c,d,e,f,g",
    );
    fails_naming(&["-i", "eth0,,eth1"], "-i", "eth0,,eth1");
    fails_naming(&["-i", ""], "-i", "");
    fails_naming(&["--interface="], "--interface", "");
    fails_naming(&["-i", "eth0,"], "-i", "eth0,");
    fails_naming(&["-i", "eth0,eth1,eth0"], "-i", "eth0,eth1,eth0");
    fails_naming(&["-i", "abcdefghijklmnop"], "-i", "abcdefghijklmnop");
    fails_naming(
        &["--interface", "abcdefghijklmnop"],
        "--interface",
        "abcdefghijklmnop",
    );
    for bad in ["a/b", "eth 0", "eth\t0", "eth0:1", ".", ".."] {
        let msg = fail(&["-i", bad]);
        assert!(msg.contains("-i"), "{bad:?}: {msg}");
    }
    // Control characters are escaped so the message stays on one line.
    assert!(fail(&["-i", "eth\n0"]).contains("'eth\\n0'"));
    // Given twice: an error rather than dropping the first list.
    fails_naming(
        &["-i", "eth0", "--interface", "eth1"],
        "--interface",
        "eth1",
    );
    assert!(fail(&["-i", "eth0", "-i", "eth1"]).contains("twice"));
}

#[test]
fn multicast_ttl() {
    for args in [
        &["-m", "5"][..],
        &["-m5"],
        &["--multicast-ttl", "5"],
        &["--multicast-ttl=5"],
    ] {
        assert_eq!(run(args).multicast_ttl, Some(5), "{args:?}");
    }
    assert_eq!(run(&["-m", "1"]).multicast_ttl, Some(1));
    assert_eq!(run(&["-m", "255"]).multicast_ttl, Some(255));
    for bad in [
        "0",
        "256",
        "abc",
        "",
        "-1",
        "+5",
        " 5",
        "99999999999999999999999",
    ] {
        fails_naming(&["-m", bad], "-m", bad);
        fails_naming(&["--multicast-ttl", bad], "--multicast-ttl", bad);
    }
}

#[test]
fn group() {
    let g = Ipv4Addr::new(239, 1, 2, 3);
    assert_eq!(run(&["--group", "239.1.2.3"]).group, g);
    assert_eq!(run(&["--group=239.1.2.3"]).group, g);
    assert_eq!(
        run(&["--group=224.0.1.1"]).group,
        Ipv4Addr::new(224, 0, 1, 1)
    );
    for bad in [
        "10.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "abc",
        "",
        "239.1.2",
        "::1",
    ] {
        fails_naming(&["--group", bad], "--group", bad);
    }
    assert!(fail(&["--group", "10.0.0.1"]).contains("multicast"));
}

#[test]
fn port() {
    assert_eq!(run(&["--port", "1"]).port, 1);
    assert_eq!(run(&["--port=65535"]).port, 65535);
    assert_eq!(run(&["--port", "07742"]).port, 7742);
    for bad in ["0", "65536", "abc", "", "-1", "+80", "80 "] {
        fails_naming(&["--port", bad], "--port", bad);
    }
    assert_eq!(
        fail(&["--port", "abc"]),
        "invalid value 'abc' for --port: not a number from 1 to 65535"
    );
}

#[test]
fn interval() {
    assert_eq!(run(&["--interval", "0.25"]).interval_ms, 250);
    assert_eq!(run(&["--interval=0.5"]).interval_ms, 500);
    assert_eq!(run(&["--interval", "0.1"]).interval_ms, 100);
    assert_eq!(run(&["--interval", "1.005"]).interval_ms, 1005);
    assert_eq!(run(&["--interval", "3600"]).interval_ms, 3_600_000);
    assert_eq!(run(&["--interval", "3600.000"]).interval_ms, 3_600_000);
    assert_eq!(run(&["--interval", "5"]).hold_ms(), 25_000);
    for bad in [
        "0.05",
        "0",
        "0.099",
        "abc",
        "3601",
        "3600.001",
        "",
        "1e3",
        "-1",
        "nan",
        "inf",
        "1.",
        ".5",
        "0.2500",
        "+1",
        "1,5",
        "1 ",
        "99999999999999999999999",
    ] {
        fails_naming(&["--interval", bad], "--interval", bad);
    }
}

#[test]
fn hold() {
    let cfg = run(&["--hold", "10"]);
    assert_eq!((cfg.hold_ms, cfg.hold_ms()), (Some(10_000), 10_000));
    assert_eq!(run(&["--hold=4"]).hold_ms(), 4000); // twice the interval is fine
    assert_eq!(run(&["--hold", "86400"]).hold_ms(), 86_400_000);
    assert_eq!(run(&["--hold", "0.3", "--interval", "0.1"]).hold_ms(), 300);
    fails_naming(&["--hold", "3.999"], "--hold", "3.999");
    fails_naming(&["--hold", "2"], "--hold", "2");
    fails_naming(&["--hold", "0"], "--hold", "0");
    // Named even when --interval comes after it.
    let msg = fail(&["--hold", "9", "--interval", "5"]);
    assert!(
        msg.contains("--hold") && msg.contains("'9'") && msg.contains("10s"),
        "{msg}"
    );
    for bad in ["86400.001", "100000", "abc", "", "-1", "1e3"] {
        fails_naming(&["--hold", bad], "--hold", bad);
    }
}

#[test]
fn budget() {
    assert_eq!(run(&[]).budget, DEFAULT_BUDGET);
    assert_eq!(run(&["--budget", "250"]).budget, 250);
    assert_eq!(run(&["--budget=1000000"]).budget, MAX_BUDGET);
    for bad in ["0", "1000001", "-5", "1.5", "many", ""] {
        fails_naming(&["--budget", bad], "--budget", bad);
    }
}

#[test]
fn hold_default_is_capped() {
    let cfg = Config {
        interval_ms: u32::MAX,
        ..Config::default()
    };
    assert_eq!(cfg.hold_ms(), 86_400_000);
    assert_eq!(run(&["--interval", "3600"]).hold_ms(), 18_000_000);
}

#[test]
fn paths() {
    let cfg = run(&[
        "--map-file",
        "/tmp/m",
        "--proc-root=/tmp/p",
        "--setpe",
        "/x/setpe",
    ]);
    assert_eq!(cfg.map_file, PathBuf::from("/tmp/m"));
    assert_eq!(cfg.proc_root, PathBuf::from("/tmp/p"));
    assert_eq!(cfg.setpe, PathBuf::from("/x/setpe"));
    for opt in ["--map-file", "--proc-root", "--setpe"] {
        fails_naming(&[opt, ""], opt, "");
    }
}

#[test]
fn static_maps() {
    assert!(run(&[]).static_maps.is_empty());
    let cfg = run(&["--static-map", RC_STATIC_MAPS]);
    let want: Vec<PathBuf> = ["/etc/openmosix.map", "/etc/mosix.map", "/etc/hpc.map"]
        .map(PathBuf::from)
        .into();
    assert_eq!(cfg.static_maps, want);
    assert_eq!(
        run(&["--static-map=my.map"]).static_maps,
        vec![PathBuf::from("my.map")]
    );
    // Empty: none (how OMDISCD_OPTS turns the unit's list off); the last one wins.
    assert!(run(&["--static-map", "/a", "--static-map="])
        .static_maps
        .is_empty());
    for (value, why) in [
        ("/a,,/b", "empty path"),
        ("/a,", "empty path"),
        ("/etc/", "ends with '/'"),
        ("1,2,3,4,5,6,7,8,9", "more than 8"),
    ] {
        let msg = fail(&["--static-map", value]);
        assert!(
            msg.contains("--static-map") && msg.contains(value) && msg.contains(why),
            "{msg}"
        );
    }
    assert_eq!(
        fail(&["--dump", "--static-map", "/a"]),
        "option '--static-map' cannot be used with --dump"
    );
    match kernel("omdiscd.static-map=/k.map", &[]) {
        Ok(Command::Run(cfg)) => assert_eq!(cfg.static_maps, vec![PathBuf::from("/k.map")]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        run(&["--static-nodes", "/s.map"]).static_nodes,
        Some(PathBuf::from("/s.map"))
    );
    fails_naming(&["--static-nodes", ""], "--static-nodes", "");
    // Empty on the kernel command line: none.
    match kernel("omdiscd.static-map=", &[]) {
        Ok(Command::Run(cfg)) => assert!(cfg.static_maps.is_empty()),
        other => panic!("{other:?}"),
    }
    // The command line wins over the kernel's.
    match kernel("omdiscd.static-map=/k.map", &["--static-map", "/c.map"]) {
        Ok(Command::Run(cfg)) => assert_eq!(cfg.static_maps, vec![PathBuf::from("/c.map")]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn label() {
    let cfg = run(&["--cluster", "lab-A"]);
    assert_eq!(&cfg.label[..5], b"lab-A");
    assert_eq!(cfg.label[5..], [0; 11]);
    let sixteen = "0123456789abcdef";
    assert_eq!(
        &run(&["--cluster=0123456789abcdef"]).label,
        sixteen.as_bytes()
    );
    for (bad, shown) in [
        ("0123456789abcdefg", "0123456789abcdefg"),
        ("", ""),
        ("a b", "a b"),
        ("caf\u{e9}", "caf\u{e9}"),
        ("a\tb", "a\\tb"),
    ] {
        fails_naming(&["--cluster", bad], "--cluster", shown);
    }
}

#[test]
fn last_one_wins() {
    assert_eq!(run(&["--port", "1", "--port", "2"]).port, 2);
    assert_eq!(
        run(&["-m", "3", "--multicast-ttl=4"]).multicast_ttl,
        Some(4)
    );
    // ...but every value is still checked.
    fails_naming(&["--port", "0", "--port", "2"], "--port", "0");
}

#[test]
fn value_may_start_with_a_dash() {
    fails_naming(&["--interval", "-1"], "--interval", "-1");
    assert_eq!(&run(&["--cluster", "-n"]).label[..2], b"-n");
    assert!(run(&["--cluster", "-n"]).daemonize);
}

#[test]
fn dump() {
    let default = Command::Dump {
        map_file: PathBuf::from(DEFAULT_MAP_FILE),
        control: PathBuf::from("/run/omdiscd/openmosix.map.sock"),
        view: View::Showmap,
    };
    assert_eq!(parse(["--dump"]), Ok(default));
    let custom = Ok(Command::Dump {
        map_file: PathBuf::from("/tmp/m"),
        control: PathBuf::from("/tmp/m.sock"),
        view: View::Showmap,
    });
    assert_eq!(parse(["--dump", "--map-file", "/tmp/m"]), custom);
    assert_eq!(parse(["--map-file=/tmp/m", "--dump"]), custom);
    assert_eq!(
        parse(["--dump", "--format", "json", "--control-socket", "/c"]),
        Ok(Command::Dump {
            map_file: PathBuf::from(DEFAULT_MAP_FILE),
            control: PathBuf::from("/c"),
            view: View::Json,
        })
    );
    for (name, view) in View::NAMES {
        match parse(["--dump", "--format", name]) {
            Ok(Command::Dump { view: v, .. }) => assert_eq!(v, view),
            other => panic!("{name}: {other:?}"),
        }
    }
    fails_naming(&["--dump", "--format", "text"], "--format", "text");
    assert_eq!(
        fail(&["--dump", "-i", "eth0"]),
        "option '-i' cannot be used with --dump"
    );
    assert!(fail(&["--interface=eth0", "--dump"]).contains("--interface"));
    assert!(fail(&["--dump", "-n"]).contains("-n"));
    assert!(fail(&["--dump", "--port", "1"]).contains("--port"));
    assert!(fail(&["--dump=x"]).contains("--dump"));
}

#[test]
fn stats() {
    assert_eq!(
        parse(["--stats"]),
        Ok(Command::Stats {
            control: PathBuf::from("/run/omdiscd/openmosix.map.sock"),
            format: StatsFormat::Text,
        })
    );
    assert_eq!(
        parse(["--stats", "--format=prometheus", "--map-file", "/m"]),
        Ok(Command::Stats {
            control: PathBuf::from("/m.sock"),
            format: StatsFormat::Prometheus,
        })
    );
    fails_naming(&["--stats", "--format", "hosts"], "--format", "hosts");
    assert_eq!(
        fail(&["--stats", "-n"]),
        "option '-n' cannot be used with --stats"
    );
    assert!(fail(&["--stats", "--dump"]).contains("exclude each other"));
    assert_eq!(
        fail(&["--format", "json"]),
        "option '--format' needs --dump, --stats or --watch"
    );
}

#[test]
fn watch() {
    assert_eq!(
        parse(["--watch"]),
        Ok(Command::Watch {
            control: PathBuf::from("/run/omdiscd/openmosix.map.sock"),
            format: WatchFormat::Text,
        })
    );
    assert_eq!(
        parse(["--watch", "--format=json", "--control-socket", "/c"]),
        Ok(Command::Watch {
            control: PathBuf::from("/c"),
            format: WatchFormat::Json,
        })
    );
    fails_naming(&["--watch", "--format", "showmap"], "--format", "showmap");
    assert_eq!(
        fail(&["--watch", "-i", "eth0"]),
        "option '-i' cannot be used with --watch"
    );
    assert_eq!(
        fail(&["--watch", "--stats"]),
        "options '--stats' and '--watch' exclude each other"
    );
    assert!(fail(&["--watch=x"]).contains("--watch"));
}

#[test]
fn daemon_paths() {
    let cfg = run(&[
        "--control-socket",
        "/c",
        "--metrics-file",
        "/m.prom",
        "--on-change",
        "/bin/hook",
    ]);
    assert_eq!(cfg.control_socket(), PathBuf::from("/c"));
    assert_eq!(cfg.metrics_file, Some(PathBuf::from("/m.prom")));
    assert_eq!(cfg.on_change, Some(PathBuf::from("/bin/hook")));
    let cfg = run(&["--map-file", "/x/m"]);
    assert_eq!(cfg.control_socket(), PathBuf::from("/x/m.sock"));
    assert_eq!(cfg.pid_file(), PathBuf::from("/x/m.pid"));
    fails_naming(&["--on-change", ""], "--on-change", "");
}

fn kernel(line: &str, args: &[&str]) -> Result<Command, UsageError> {
    parse_with_kernel(line.as_bytes(), args.iter().copied())
}

#[test]
fn kernel_command_line_settings() {
    let line = "BOOT_IMAGE=/vmlinuz root=/dev/ram0 quiet omdiscd.interface=eth0,eth1 \
                omdiscd.cluster=\"lab\" omdiscd.interval=0.5 omdiscd.hold=2 omdiscd.debug \
                omdiscd.nodaemon ip=dhcp\n";
    let Ok(Command::Run(cfg)) = kernel(line, &["--cmdline"]) else {
        panic!("{:?}", kernel(line, &["--cmdline"]));
    };
    assert_eq!(cfg.interfaces, ["eth0", "eth1"]);
    assert_eq!(&cfg.label[..4], b"lab\0");
    assert_eq!((cfg.interval_ms, cfg.hold_ms), (500, Some(2000)));
    assert!(cfg.debug && !cfg.daemonize && cfg.cmdline);
    // The real command line wins, even for -i (given once on each).
    let Ok(Command::Run(cfg)) = kernel(line, &["--cmdline", "-i", "br0", "--hold", "3"]) else {
        panic!()
    };
    assert_eq!(cfg.interfaces, ["br0"]);
    assert_eq!(cfg.hold_ms, Some(3000));
    // Nothing of ours on it: the defaults.
    assert_eq!(
        kernel("quiet splash", &["--cmdline"]),
        Ok(Command::Run(Box::new(Config {
            cmdline: true,
            ..Config::default()
        })))
    );
}

#[test]
fn kernel_command_line_errors_name_the_setting() {
    let msg = |line: &str| kernel(line, &["--cmdline"]).unwrap_err().message;
    assert_eq!(
        msg("omdiscd.interfce=eth0"),
        "unknown setting 'omdiscd.interfce' (on the kernel command line)"
    );
    assert_eq!(
        msg("omdiscd.dump"),
        "unknown setting 'omdiscd.dump' (on the kernel command line)"
    );
    assert_eq!(
        msg("omdiscd.interval=0"),
        "invalid value '0' for omdiscd.interval: not a number of seconds from 0.1 to 3600 (at most 3 decimals) (on the kernel command line)"
    );
    assert!(msg("omdiscd.port").contains("needs a value"));
    assert!(msg("omdiscd.debug=1").contains("does not take a value"));
    // --help still wins.
    assert_eq!(
        kernel("omdiscd.port=0", &["--cmdline", "-h"]),
        Ok(Command::Help)
    );
}

#[test]
fn help_and_version_precedence() {
    for args in [
        &["-h"][..],
        &["--help"],
        &["-i", "eth0", "--help"],
        &["--version", "-h"],
        &["-V", "--help"],
        &["--port", "0", "-h"],
        &["--bogus", "--help"],
        &["stray", "-h"],
        &["--dump", "-i", "eth0", "-h"],
        &["-nh"],
    ] {
        assert_eq!(parse(args.iter().copied()), Ok(Command::Help), "{args:?}");
    }
    for args in [
        &["-V"][..],
        &["--version"],
        &["--port", "0", "--version"],
        &["--dump", "-V"],
    ] {
        assert_eq!(
            parse(args.iter().copied()),
            Ok(Command::Version),
            "{args:?}"
        );
    }
    // A value, or after --, is not an option.
    assert_eq!(&run(&["--cluster", "-h"]).label[..2], b"-h");
    assert!(fail(&["--", "-h"]).contains("'-h'"));
}

#[test]
fn unknown_missing_and_positional() {
    assert_eq!(fail(&["--foo"]), "unknown option '--foo'");
    assert_eq!(fail(&["--foo=bar"]), "unknown option '--foo'");
    assert_eq!(fail(&["-x"]), "unknown option '-x'");
    assert_eq!(fail(&["-nx"]), "unknown option '-x'");
    assert_eq!(fail(&["--inter", "eth0"]), "unknown option '--inter'"); // no abbreviations
    assert_eq!(fail(&["--port"]), "option '--port' needs a value");
    assert_eq!(fail(&["-i"]), "option '-i' needs a value");
    assert_eq!(fail(&["-n", "-m"]), "option '-m' needs a value");
    assert_eq!(fail(&["eth0"]), "unexpected argument 'eth0'");
    assert_eq!(fail(&["-"]), "unexpected argument '-'");
    assert_eq!(fail(&["-n", "--", "x"]), "unexpected argument 'x'");
    assert!(!run(&["-n", "--"]).daemonize); // a trailing -- is fine
                                            // The first error is the one reported.
    assert_eq!(fail(&["--foo", "--port"]), "unknown option '--foo'");
}

#[test]
fn non_utf8() {
    use std::os::unix::ffi::OsStringExt;
    let bad = || OsString::from_vec(b"eth\xff".to_vec());
    let msg = parse([OsString::from("-i"), bad()]).unwrap_err().message;
    assert!(msg.contains("-i") && msg.contains("UTF-8"), "{msg}");
    let mut long = b"--port=".to_vec();
    long.push(0xff);
    let msg = parse([OsString::from_vec(long)]).unwrap_err().message;
    assert!(msg.contains("--port") && msg.contains("UTF-8"), "{msg}");
    // Paths may be any bytes on Linux.
    match parse([OsString::from("--map-file"), bad()]) {
        Ok(Command::Run(cfg)) => assert_eq!(cfg.map_file, PathBuf::from(bad())),
        other => panic!("{other:?}"),
    }
    assert!(parse([bad()])
        .unwrap_err()
        .message
        .starts_with("unexpected argument"));
}

#[test]
fn durations() {
    assert_eq!(format_duration_ms(2000), "2s");
    assert_eq!(format_duration_ms(500), "0.5s");
    assert_eq!(format_duration_ms(250), "0.25s");
    assert_eq!(format_duration_ms(1005), "1.005s");
    assert_eq!(format_duration_ms(0), "0s");
    assert_eq!(format_duration_ms(86_400_000), "86400s");
}

#[test]
fn usage_text() {
    assert!(USAGE.starts_with("Usage: omdiscd [OPTIONS]\n"));
    for line in USAGE.lines() {
        assert!(line.len() <= 80, "too long: {line:?}");
    }
    for option in [
        "-n, --nodaemon",
        "-i, --interface",
        "-m, --multicast-ttl",
        "--group",
        "--port",
        "--interval",
        "--hold",
        "--cluster",
        "--map-file",
        "--proc-root",
        "--setpe",
        "-d, --debug",
        "--dump",
        "--stats",
        "--watch",
        "--format",
        "--control-socket",
        "--metrics-file",
        "--on-change",
        "--static-map",
        "--static-nodes",
        "--cmdline",
        "-h, --help",
        "-V, --version",
    ] {
        assert!(USAGE.contains(option), "{option} missing");
    }
    let cfg = Config::default();
    for default in [
        format!("(default {})", cfg.group),
        format!("(default {})", cfg.port),
        format!(
            "(default {})",
            format_duration_ms(cfg.interval_ms).trim_end_matches('s')
        ),
        format!("(default {})", cfg.proc_root.display()),
        format!("(default {})", cfg.setpe.display()),
        cfg.map_file.display().to_string(),
    ] {
        assert!(USAGE.contains(&default), "{default} missing");
    }
    assert!(USAGE_HINT.contains("omdiscd --help"));
}

/// The limits in the help text are the constants' (which for the interval,
/// hold and label are the wire format's).
#[test]
fn usage_text_limits_match_the_constants() {
    let text = USAGE.split_whitespace().collect::<Vec<_>>().join(" ");
    for limit in [
        format!("(1 to {MAX_INTERFACES})"),
        format!("{} to {}", secs(MIN_INTERVAL_MS), secs(MAX_INTERVAL_MS)),
        format!("interval to {}", secs(MAX_HOLD_MS)),
        format!("1 to {LABEL_LEN} printable"),
        format!("(default {DEFAULT_HOLD_INTERVALS} x the interval)"),
    ] {
        assert!(text.contains(&limit), "{limit:?} not in the help text");
    }
}
