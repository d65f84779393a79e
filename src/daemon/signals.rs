//! The signals: SIGTERM/SIGINT stop, SIGHUP re-reads, SIGUSR1 logs the counters.
#![forbid(unsafe_code)]

use crate::auth::Keyring;
use crate::log::{Level, Limit};
use crate::node::Input;
use crate::notify::Notifier;
use crate::sys::{monotonic_ms, monotonic_us};
use crate::{info, notice};

use super::{Daemon, COUNTERS_GAP_MS, LOG_LIMIT_MS};

/// The signals the daemon takes over with a signalfd (in discovery and in
/// `--static-map` mode alike): SIGTERM and SIGINT stop it, SIGHUP re-reads,
/// SIGCHLD reaps its children, SIGUSR1 logs what it counts.
pub(crate) const HANDLED: [libc::c_int; 5] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGCHLD,
    libc::SIGUSR1,
];

impl Daemon {
    pub(super) fn on_signals(&mut self) {
        loop {
            let Some(signals) = &self.signals else {
                return;
            };
            let info = match signals.read() {
                Ok(Some(info)) => info,
                Ok(None) | Err(_) => break,
            };
            let now = monotonic_ms();
            match info.signo {
                libc::SIGTERM | libc::SIGINT => {
                    notice!("signal {}: leaving the cluster", info.signo);
                    self.notify(Notifier::stopping);
                    self.core.handle(now, Input::Stop, &mut self.io);
                    return;
                }
                libc::SIGHUP => {
                    crate::log::limited(
                        Limit::Signal,
                        LOG_LIMIT_MS,
                        Level::Info,
                        format_args!("SIGHUP: re-reading interfaces, addresses and keys"),
                    );
                    self.notify(|n| n.reloading(monotonic_us()));
                    self.resolve_pending = true;
                    self.reload_keys();
                    self.redetect_kernel(now);
                    self.core.handle(now, Input::Rejoin, &mut self.io);
                    // Ready again once the interfaces are re-read (the end
                    // of this step) and the next step has run the core.
                    self.ready_at_ms = Some(0);
                }
                libc::SIGCHLD => self.poll_children(now),
                libc::SIGUSR1 if now >= self.counters_at_ms => {
                    self.counters_at_ms = now + COUNTERS_GAP_MS;
                    self.log_counters();
                }
                _ => {}
            }
        }
    }

    /// Re-reads `--key-file` (SIGHUP); a file that is now unusable keeps
    /// the keys in use.
    fn reload_keys(&mut self) {
        let Some(path) = &self.key_file else {
            return;
        };
        match Keyring::load(path) {
            Ok(keys) => {
                // Said when the key ids change (each step of a rotation);
                // a storm of SIGHUPs over the same file says nothing more.
                if keys != *self.core.keys() {
                    if let Some(signing) = keys.ids().next() {
                        info!(
                            "keys re-read: signing with key id {signing}, accepting ids {}",
                            KeyIds(&keys)
                        );
                    }
                }
                self.core.set_keys(keys);
            }
            Err(e) => crate::log::limited(
                Limit::Keys,
                LOG_LIMIT_MS,
                Level::Error,
                format_args!("key file {}: {e}; keeping the keys in use", path.display()),
            ),
        }
    }
}

/// The key ids of a key ring as its `Debug` shows them (`[1, 2]`), without
/// the `Debug` builders in the binary.
struct KeyIds<'a>(&'a Keyring);

impl std::fmt::Display for KeyIds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[")?;
        for (i, id) in self.0.ids().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{id}")?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_show_as_the_key_rings_debug() {
        let one = "1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
        let two =
            format!("{one}7 ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n");
        for text in [one.to_string(), two] {
            let keys = Keyring::parse(text.as_bytes()).unwrap();
            assert_eq!(KeyIds(&keys).to_string(), format!("{keys:?}"));
        }
    }
}
