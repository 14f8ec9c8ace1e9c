//! Decimal numbers, as memcached writes and reads them: no allocation, C
//! `strto*` semantics. Shared by the wire protocols (command arguments) and
//! the store (incr/decr on item values); depends on nothing.

/// The decimal digits of `v`, written into the end of `buf` (no allocation).
pub fn fmt_u64(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Parse an unsigned decimal number: digits only, no sign, no spaces, must
/// fit in 64 bits.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

/// C `isspace` in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// C `strtoull`/`strtol` core as memcached's `safe_strto*` use it: leading
/// white space, optional sign, decimal digits, then white space or the end
/// (only the byte right after the digits is looked at). Returns (negative,
/// magnitude). None when there are no digits, the magnitude overflows u64,
/// or a non-space byte follows the digits.
fn c_number(s: &[u8]) -> Option<(bool, u64)> {
    let mut i = s.iter().take_while(|&&b| is_c_space(b)).count();
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut v: u64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add((s[i] - b'0') as u64)?;
        i += 1;
    }
    if i == start {
        return None;
    }
    if i < s.len() && !is_c_space(s[i]) {
        return None;
    }
    Some((neg, v))
}

/// memcached's `safe_strtoull` (command arguments, and the value of an item
/// under incr/decr): a negative number is refused unless it wraps to a value
/// that is non-negative as a signed 64-bit number.
pub fn strtoull(s: &[u8]) -> Option<u64> {
    let (neg, v) = c_number(s)?;
    let v = if neg { v.wrapping_neg() } else { v };
    if (v as i64) < 0 && s.contains(&b'-') {
        return None;
    }
    Some(v)
}

/// memcached's `safe_strtoul` on a 64-bit host: strtoull rules, then the
/// result is truncated to 32 bits.
pub fn strtoul32(s: &[u8]) -> Option<u32> {
    strtoull(s).map(|v| v as u32)
}

/// memcached's `safe_strtol` on a 64-bit host: a signed 64-bit number,
/// truncated to 32 bits.
pub fn strtol32(s: &[u8]) -> Option<i32> {
    let (neg, v) = c_number(s)?;
    let v: i64 = if neg {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        (v as i64).wrapping_neg()
    } else {
        i64::try_from(v).ok()?
    };
    Some(v as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_plain_parse() {
        let mut b = [0u8; 20];
        assert_eq!(fmt_u64(0, &mut b), b"0");
        assert_eq!(fmt_u64(u64::MAX, &mut b), b"18446744073709551615");
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"1a"), None);
        assert_eq!(parse_u64(b" 1"), None);
        assert_eq!(parse_u64(b""), None);
    }

    #[test]
    fn safe_strtoull_rules() {
        assert_eq!(strtoull(b"+5"), Some(5));
        assert_eq!(strtoull(b"-0"), Some(0));
        assert_eq!(strtoull(b"-5"), None);
        assert_eq!(strtoull(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(strtoull(b"18446744073709551616"), None);
        assert_eq!(strtoull(b"5x"), None);
        assert_eq!(strtoull(b"5\tx"), Some(5));
        assert_eq!(strtoull(b""), None);
        // item values under incr (memcached's are followed by CRLF; ours
        // end): leading white space, padding left by an in-place decr, and
        // junk after a space are all read as memcached reads them.
        assert_eq!(strtoull(b"  12"), Some(12));
        assert_eq!(strtoull(b"99 "), Some(99));
        assert_eq!(strtoull(b"10 abc"), Some(10));
        assert_eq!(strtoull(b"\t7x"), None);
        assert_eq!(strtoul32(b"4294967296"), Some(0));
        assert_eq!(strtol32(b"-1"), Some(-1));
        assert_eq!(strtol32(b"4294967297"), Some(1));
        assert_eq!(strtol32(b"x"), None);
    }
}
