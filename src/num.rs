//! Decimal numbers read from text (`str::parse`), with one copy of std's
//! integer parser: inlined, it was a copy at each of nine places
//! (docs/SCALE.md, "Binary size").
#![forbid(unsafe_code)]

/// `s.parse::<u64>().ok()`.
#[inline(never)]
pub(crate) fn u64_of(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// `s.parse::<u32>().ok()`: the same strings (an optional `+`, then decimal
/// digits), read by [`u64_of`] and refused above `u32::MAX`.
pub(crate) fn u32_of(s: &str) -> Option<u32> {
    u64_of(s).and_then(|v| u32::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_numbers_as_str_parse() {
        // Separated by '|': the empty string, spaces and signs are cases too.
        let cases = "|0|7|+7|-0|-7|+|-| 7|7 |07|0x10|1e3|4294967295|4294967296|\
                     18446744073709551615|18446744073709551616|000000000000000000000000000042|٣";
        for s in cases.split('|') {
            assert_eq!(u64_of(s), s.parse::<u64>().ok(), "{s:?}");
            assert_eq!(u32_of(s), s.parse::<u32>().ok(), "{s:?}");
        }
    }
}
