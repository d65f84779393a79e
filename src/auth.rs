//! Message authentication: the shared keys, the key file, and the MAC of
//! the trailer (HMAC-SHA256 truncated to 16 bytes, see `docs/PROTOCOL.md`).
//!
//! The HMAC is RustCrypto's (`hmac`, `sha2`): no home-made cryptography.
//! Each key is turned into its keyed HMAC state once, when the key file is
//! read; signing and checking clone that state on the stack, so neither
//! allocates.
//!
//! The key file is text, one key per line: `<key-id> <secret>`, the id a
//! decimal number from 1 to 4294967295, the secret 32 to 64 bytes written
//! as 64 to 128 hex digits. Lines starting with `#` and blank lines are
//! ignored. The first key signs; every key verifies, so keys rotate without
//! downtime. Secrets never reach a log line or an error message.
#![forbid(unsafe_code)]

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use arrayvec::ArrayVec;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::wire::{field, MAC_LEN, TRAILER_LEN};

/// Keys a key file may hold.
pub const MAX_KEYS: usize = 8;
/// Shortest secret, in bytes (the HMAC-SHA256 output size).
pub const MIN_SECRET_LEN: usize = 32;
/// Longest secret, in bytes (the SHA-256 block size: longer keys are hashed).
pub const MAX_SECRET_LEN: usize = 64;
/// Largest key file, in bytes.
pub const MAX_KEY_FILE_LEN: usize = 4096;
/// The key id of an unsigned message (its MAC is all zero).
pub const UNSIGNED: u32 = 0;

type HmacSha256 = Hmac<Sha256>;

/// The SHA-256 block size.
const BLOCK_LEN: usize = 64;

/// `--auth`: what this node signs and what it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Send unsigned, check nothing (no key file).
    #[default]
    Off,
    /// Sign; accept valid and unsigned messages (counting the unsigned).
    Permissive,
    /// Sign; accept only messages with a valid MAC.
    Enforce,
}

impl Mode {
    /// The `--auth` values, in the order the help lists them.
    pub const NAMES: [(&'static str, Mode); 3] = [
        ("off", Mode::Off),
        ("permissive", Mode::Permissive),
        ("enforce", Mode::Enforce),
    ];

    /// The `--auth` value for this mode.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Permissive => "permissive",
            Mode::Enforce => "enforce",
        }
    }
}

/// What checking a received message's trailer found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Signed with a key of ours, and the MAC is right.
    Valid,
    /// No trailer, or key id 0.
    Unsigned,
    /// A key id this node does not have.
    UnknownKey,
    /// A key of ours, and the MAC is wrong (forged, altered, or another secret).
    Failed,
}

/// One key: its id and its keyed HMAC state.
#[derive(Clone)]
struct Key {
    id: u32,
    mac: HmacSha256,
}

/// The keys of a key file; the first signs. Its `Debug` shows key ids only.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: ArrayVec<Key, MAX_KEYS>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| k.id))
            .finish()
    }
}

impl PartialEq for Keyring {
    /// Same key ids in the same order (the secrets are not compared).
    fn eq(&self, other: &Keyring) -> bool {
        self.ids().eq(other.ids())
    }
}

impl Eq for Keyring {}

/// Why a key file was refused. `Copy`, and never holds a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFileError {
    /// Opening or reading it failed (an errno).
    Io(i32),
    /// Not a regular file.
    NotRegular,
    /// Group or others have some access (the mode).
    Exposed(u32),
    /// Longer than [`MAX_KEY_FILE_LEN`].
    TooLong,
    /// No key in it.
    Empty,
    /// More than [`MAX_KEYS`] keys.
    TooManyKeys,
    /// This line is not `<key-id> <hex secret>`.
    BadLine(usize),
    /// This line's key id is not 1 .. 4294967295.
    BadKeyId(usize),
    /// This line's secret is not 64 to 128 hex digits.
    BadSecret(usize),
    /// This line repeats a key id.
    DuplicateKeyId(usize),
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KeyFileError::Io(errno) => {
                write!(f, "{}", std::io::Error::from_raw_os_error(errno))
            }
            KeyFileError::NotRegular => f.write_str("not a regular file"),
            KeyFileError::Exposed(mode) => write!(
                f,
                "group or others may access it (mode {:04o}); make it mode 600 (chmod 600)",
                mode & 0o7777
            ),
            KeyFileError::TooLong => write!(f, "longer than {MAX_KEY_FILE_LEN} bytes"),
            KeyFileError::Empty => f.write_str("no key in it"),
            KeyFileError::TooManyKeys => write!(f, "more than {MAX_KEYS} keys"),
            KeyFileError::BadLine(n) => {
                write!(f, "line {n}: not '<key-id> <secret in hex>'")
            }
            KeyFileError::BadKeyId(n) => {
                write!(f, "line {n}: the key id is not a number from 1 to 4294967295")
            }
            KeyFileError::BadSecret(n) => write!(
                f,
                "line {n}: the secret is not {MIN_SECRET_LEN} to {MAX_SECRET_LEN} bytes in hex ({} to {} hex digits)",
                2 * MIN_SECRET_LEN,
                2 * MAX_SECRET_LEN
            ),
            KeyFileError::DuplicateKeyId(n) => write!(f, "line {n}: a key id given twice"),
        }
    }
}

impl std::error::Error for KeyFileError {}

impl Keyring {
    /// Parses the text of a key file. Never allocates.
    pub fn parse(text: &[u8]) -> Result<Keyring, KeyFileError> {
        if text.len() > MAX_KEY_FILE_LEN {
            return Err(KeyFileError::TooLong);
        }
        let mut ring = Keyring::default();
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            let n = i + 1;
            let line = trim(line);
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            let mut words = line
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty());
            let (Some(id), Some(secret), None) = (words.next(), words.next(), words.next()) else {
                return Err(KeyFileError::BadLine(n));
            };
            let id = key_id(id).ok_or(KeyFileError::BadKeyId(n))?;
            let mut bytes = [0u8; MAX_SECRET_LEN];
            let len = unhex(secret, &mut bytes).ok_or(KeyFileError::BadSecret(n))?;
            if ring.keys.iter().any(|k| k.id == id) {
                return Err(KeyFileError::DuplicateKeyId(n));
            }
            let mac = HmacSha256::new_from_slice(&bytes[..len])
                .map_err(|_| KeyFileError::BadSecret(n))?;
            bytes.fill(0);
            ring.keys
                .try_push(Key { id, mac })
                .map_err(|_| KeyFileError::TooManyKeys)?;
        }
        if ring.keys.is_empty() {
            return Err(KeyFileError::Empty);
        }
        Ok(ring)
    }

    /// Reads and parses a key file: a regular file that only its owner may
    /// access. Allocates nothing for a path shorter than a few hundred bytes
    /// (so SIGHUP can re-read it in the loop).
    pub fn load(path: &Path) -> Result<Keyring, KeyFileError> {
        let errno = |e: std::io::Error| KeyFileError::Io(e.raw_os_error().unwrap_or(libc::EIO));
        let mut file = File::open(path).map_err(errno)?;
        let meta = file.metadata().map_err(errno)?;
        if !meta.file_type().is_file() {
            return Err(KeyFileError::NotRegular);
        }
        if meta.mode() & 0o077 != 0 {
            return Err(KeyFileError::Exposed(meta.mode()));
        }
        let mut buf = [0u8; MAX_KEY_FILE_LEN + 1];
        let mut len = 0;
        while len < buf.len() {
            match file.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(errno(e)),
            }
        }
        let ring = Keyring::parse(&buf[..len]);
        buf.fill(0);
        ring
    }

    /// The key ids, the signing one first.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.iter().map(|k| k.id)
    }

    /// No keys (authentication off).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Signs `msg` (a whole message whose trailer, with its stamp, is in
    /// place) with the first key: writes the key id and the MAC. With no
    /// key, marks it unsigned (key id 0, MAC all zero).
    pub fn sign(&self, msg: &mut [u8]) {
        let Some(trailer_at) = msg.len().checked_sub(TRAILER_LEN) else {
            return;
        };
        let trailer = &mut msg[trailer_at..];
        let Some(key) = self.keys.first() else {
            trailer[field::KEY_ID].copy_from_slice(&UNSIGNED.to_be_bytes());
            trailer[field::MAC].fill(0);
            return;
        };
        trailer[field::KEY_ID].copy_from_slice(&key.id.to_be_bytes());
        let covered = msg.len() - MAC_LEN;
        let tag = key.tag(&msg[..covered]);
        msg[covered..].copy_from_slice(&tag);
    }

    /// Checks a received message: `msg` is the whole datagram, `trailer`
    /// whether it ends in a trailer (the `AUTH` flag).
    pub fn verify(&self, msg: &[u8], trailer: bool) -> Verdict {
        let Some(at) = msg.len().checked_sub(TRAILER_LEN).filter(|_| trailer) else {
            return Verdict::Unsigned;
        };
        let t = &msg[at..];
        let id = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
        if id == UNSIGNED {
            return Verdict::Unsigned;
        }
        let Some(key) = self.keys.iter().find(|k| k.id == id) else {
            return Verdict::UnknownKey;
        };
        let covered = msg.len() - MAC_LEN;
        let tag = u128::from_ne_bytes(key.tag(&msg[..covered]));
        let got = u128::from_ne_bytes(msg[covered..].try_into().expect("MAC_LEN bytes"));
        // Constant time (subtle), on the leftmost MAC_LEN bytes (RFC 2104
        // section 5): one comparison of 16 bytes, not 16 of one byte each.
        if bool::from(tag.ct_eq(&got)) {
            Verdict::Valid
        } else {
            Verdict::Failed
        }
    }
}

impl Key {
    /// The MAC of `covered` (a message up to its MAC) with `hops` taken as
    /// 0 (relays raise it without re-signing): the leftmost [`MAC_LEN`]
    /// bytes of its HMAC-SHA256. The keyed state (the inner and outer pads
    /// already hashed) is copied on the stack, so this costs the blocks of
    /// the message and one outer block: 3 SHA-256 blocks for a 100-byte
    /// message (84 bytes covered), and no allocation. The first block, the
    /// one with `hops`, is fed from a copy with it zeroed; the rest as it is.
    fn tag(&self, covered: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        let head = covered.len().min(BLOCK_LEN);
        let mut first = [0u8; BLOCK_LEN];
        first[..head].copy_from_slice(&covered[..head]);
        if let Some(hops) = first[..head].get_mut(field::HOPS) {
            *hops = 0;
        }
        mac.update(&first[..head]);
        mac.update(&covered[head..]);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; MAC_LEN];
        tag.copy_from_slice(&full[..MAC_LEN]);
        tag
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !first.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !last.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    s
}

fn key_id(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = s.iter().fold(0u64, |v, &d| v * 10 + u64::from(d - b'0'));
    u32::try_from(v).ok().filter(|&id| id != UNSIGNED)
}

/// Decodes hex into `out`; the number of bytes, if `s` is 32 to 64 bytes
/// of hex.
fn unhex(s: &[u8], out: &mut [u8; MAX_SECRET_LEN]) -> Option<usize> {
    if s.len() % 2 != 0 || !(2 * MIN_SECRET_LEN..=2 * MAX_SECRET_LEN).contains(&s.len()) {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *o = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(s.len() / 2)
}

/// Parses `data` as a key file and checks what every parse must hold (for
/// fuzzing and the corpus replay): no panic; a parsed ring has 1 to
/// [`MAX_KEYS`] distinct non-zero ids, and signs a message that it then
/// verifies, and that fails once one byte under the MAC changes.
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_check(data: &[u8]) -> Result<(), KeyFileError> {
    let ring = Keyring::parse(data)?;
    let ids: ArrayVec<u32, MAX_KEYS> = ring.ids().collect();
    assert!(!ids.is_empty() && ids.len() <= MAX_KEYS);
    assert!(ids.iter().all(|&id| id != UNSIGNED));
    for (i, a) in ids.iter().enumerate() {
        assert!(!ids[i + 1..].contains(a), "duplicate key id {a}");
    }
    let mut msg = [0x5au8; 100];
    ring.sign(&mut msg);
    assert_eq!(ring.verify(&msg, true), Verdict::Valid);
    msg[field::HOPS] = 3;
    assert_eq!(
        ring.verify(&msg, true),
        Verdict::Valid,
        "hops is not covered"
    );
    msg[20] ^= 1;
    assert_eq!(ring.verify(&msg, true), Verdict::Failed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn ring(text: &str) -> Keyring {
        Keyring::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_key_file_with_comments_and_two_keys_signs_with_the_first() {
        let text = format!("# keys\n\n 7 {SECRET}\n9\t{SECRET}ff00\n");
        let r = ring(&text);
        assert_eq!(r.ids().collect::<Vec<_>>(), [7, 9]);
        let mut msg = [1u8; 100];
        r.sign(&mut msg);
        assert_eq!(&msg[76..80], &7u32.to_be_bytes());
        assert_eq!(r.verify(&msg, true), Verdict::Valid);
        assert_eq!(format!("{r:?}"), "[7, 9]", "Debug shows ids, never secrets");
    }

    #[test]
    fn the_mac_is_hmac_sha256_of_the_message_with_hops_zero_truncated_to_16_bytes() {
        // Computed independently with Python's hmac module:
        // hmac.new(bytes.fromhex(SECRET), m, 'sha256').digest()[:16] with
        // m = bytes(76) + (5).to_bytes(4, 'big') + (9).to_bytes(4, 'big')
        // (the message with hops 0, then key id 5 and stamp 9).
        let r = ring(&format!("5 {SECRET}"));
        let mut msg = [0u8; 100];
        msg[80..84].copy_from_slice(&9u32.to_be_bytes());
        msg[field::HOPS] = 2;
        r.sign(&mut msg);
        assert_eq!(&msg[76..80], &5u32.to_be_bytes());
        assert_eq!(hex(&msg[84..]), EXPECTED_MAC);
    }

    const EXPECTED_MAC: &str = "ce09e507e5b4758adeba55433ef23d6a";

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn verdicts_for_unsigned_unknown_key_and_a_changed_byte() {
        let r = ring(&format!("5 {SECRET}"));
        let unsigned = Keyring::default();
        let mut msg = [3u8; 100];
        unsigned.sign(&mut msg);
        assert_eq!(r.verify(&msg, true), Verdict::Unsigned);
        assert_eq!(r.verify(&msg, false), Verdict::Unsigned);
        assert_eq!(r.verify(&msg[..10], true), Verdict::Unsigned);
        let other = ring(&format!("6 {SECRET}"));
        other.sign(&mut msg);
        assert_eq!(r.verify(&msg, true), Verdict::UnknownKey);
        let wrong_secret = ring(&format!("5 {}", SECRET.replace('0', "1")));
        wrong_secret.sign(&mut msg);
        assert_eq!(r.verify(&msg, true), Verdict::Failed);
        r.sign(&mut msg);
        for i in (0..100).filter(|&i| i != field::HOPS) {
            let mut m = msg;
            m[i] ^= 0x80;
            let v = r.verify(&m, true);
            assert!(v != Verdict::Valid, "byte {i} is covered");
        }
    }

    #[test]
    fn bad_key_files_name_the_line_and_the_problem() {
        let cases: &[(&str, KeyFileError)] = &[
            ("", KeyFileError::Empty),
            ("# only a comment\n", KeyFileError::Empty),
            ("1\n", KeyFileError::BadLine(1)),
            (&format!("\n1 {SECRET} x\n"), KeyFileError::BadLine(2)),
            (&format!("0 {SECRET}"), KeyFileError::BadKeyId(1)),
            (&format!("4294967296 {SECRET}"), KeyFileError::BadKeyId(1)),
            (&format!("-1 {SECRET}"), KeyFileError::BadKeyId(1)),
            ("1 00ff", KeyFileError::BadSecret(1)),
            (&format!("1 {SECRET}0"), KeyFileError::BadSecret(1)),
            (
                &format!("1 {}", SECRET.replace('a', "g")),
                KeyFileError::BadSecret(1),
            ),
            (&format!("1 {SECRET}{SECRET}00"), KeyFileError::BadSecret(1)),
            (
                &format!("1 {SECRET}\n1 {SECRET}"),
                KeyFileError::DuplicateKeyId(2),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                Keyring::parse(text.as_bytes()).unwrap_err(),
                *want,
                "{text:?}"
            );
        }
        let nine: String = (1..=9).map(|i| format!("{i} {SECRET}\n")).collect();
        assert_eq!(
            Keyring::parse(nine.as_bytes()).unwrap_err(),
            KeyFileError::TooManyKeys
        );
        let long = format!("1 {SECRET}\n{}", "#".repeat(MAX_KEY_FILE_LEN));
        assert_eq!(
            Keyring::parse(long.as_bytes()).unwrap_err(),
            KeyFileError::TooLong
        );
        let msg = KeyFileError::BadSecret(3).to_string();
        assert!(
            msg.contains("line 3") && msg.contains("64 to 128 hex digits"),
            "{msg}"
        );
    }

    #[test]
    fn the_keyed_state_gives_the_mac_of_hmac_sha256_keyed_per_message() {
        // RFC 4231 test case 2 through the dependency, as a sanity check.
        let mut plain = HmacSha256::new_from_slice(b"Jefe").unwrap();
        plain.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&plain.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // The precomputed path (keyed once, cloned per message, first block
        // copied with hops zeroed) against HMAC-SHA256 keyed for each message
        // over a copy with hops 0, for every covered length a message can
        // have and a few short ones, with secrets of 32 and 64 bytes.
        let mut secret = [0u8; MAX_SECRET_LEN];
        for (i, b) in secret.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(151).wrapping_add(7);
        }
        let mut msg = [0u8; crate::wire::MAX_MESSAGE_LEN];
        for (i, b) in msg.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(3);
        }
        for len in [32, MAX_SECRET_LEN] {
            let key = Key {
                id: 1,
                mac: HmacSha256::new_from_slice(&secret[..len]).unwrap(),
            };
            for covered in 0..=msg.len() {
                let mut copy = msg;
                if covered > field::HOPS {
                    copy[field::HOPS] = 0;
                }
                let mut plain = HmacSha256::new_from_slice(&secret[..len]).unwrap();
                plain.update(&copy[..covered]);
                let full = plain.finalize().into_bytes();
                assert_eq!(key.tag(&msg[..covered]), full[..MAC_LEN], "{covered} bytes");
            }
        }
    }

    #[test]
    fn the_longest_secret_and_the_largest_id_are_accepted() {
        let r = ring(&format!("4294967295 {SECRET}{SECRET}"));
        assert_eq!(r.ids().collect::<Vec<_>>(), [u32::MAX]);
        fuzz_check(format!("1 {SECRET}").as_bytes()).unwrap();
    }
}
