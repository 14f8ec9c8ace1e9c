//! Random numbers, key-popularity distributions and key formatting.

/// wyrand: tiny, fast, good enough for load generation (not for cryptography).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform in `0..n` (n > 0), Lemire's multiply-shift (bias negligible for n << 2^64).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipf(s) over ranks 1..=n by rejection-inversion (Hörmann & Derflinger 1996), as in
/// Apache Commons' `RejectionInversionZipfSampler`: O(1) set-up and O(1) expected sampling
/// for any s > 0, so key spaces of millions of keys cost nothing to set up.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: f64,
    s: f64,
    h_x1: f64,
    h_n: f64,
    s_thr: f64,
}

impl Zipf {
    pub fn new(n: u64, s: f64) -> Zipf {
        assert!(n >= 1 && s > 0.0);
        let mut z = Zipf {
            n: n as f64,
            s,
            h_x1: 0.0,
            h_n: 0.0,
            s_thr: 0.0,
        };
        z.h_x1 = z.h_integral(1.5) - 1.0;
        z.h_n = z.h_integral(n as f64 + 0.5);
        z.s_thr = 2.0 - z.h_integral_inv(z.h_integral(2.5) - z.h(2.0));
        z
    }

    /// A rank in `0..n`, rank 0 the most popular.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_n + rng.unit() * (self.h_x1 - self.h_n);
            let x = self.h_integral_inv(u);
            let mut k = (x + 0.5) as u64;
            if k < 1 {
                k = 1;
            } else if k as f64 > self.n {
                k = self.n as u64;
            }
            let kf = k as f64;
            if kf - x <= self.s_thr || u >= self.h_integral(kf + 0.5) - self.h(kf) {
                return k - 1;
            }
        }
    }

    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.s) * log_x) * log_x
    }

    fn h_integral_inv(&self, x: f64) -> f64 {
        let mut t = x * (1.0 - self.s);
        if t < -1.0 {
            t = -1.0;
        }
        (helper1(t) * x).exp()
    }
}

/// ln(1+x)/x, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// (e^x - 1)/x, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

/// Appends `prefix` + decimal `idx`, zero-padded to at least `pad` digits.
#[inline]
pub fn put_key(buf: &mut Vec<u8>, prefix: &[u8], idx: u64, pad: usize) {
    buf.extend_from_slice(prefix);
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = idx;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let n = digits.len() - i;
    for _ in n..pad {
        buf.push(b'0');
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Length in bytes of the key for `idx`.
pub fn key_len(prefix_len: usize, idx: u64, pad: usize) -> usize {
    let mut n = 1;
    let mut v = idx / 10;
    while v > 0 {
        n += 1;
        v /= 10;
    }
    prefix_len + n.max(pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_format() {
        let mut b = Vec::new();
        put_key(&mut b, b"k:", 42, 5);
        assert_eq!(b, b"k:00042");
        b.clear();
        put_key(&mut b, b"", 0, 0);
        assert_eq!(b, b"0");
        assert_eq!(key_len(2, 42, 5), 7);
        assert_eq!(key_len(0, 123456, 2), 6);
    }

    #[test]
    fn zipf_is_skewed_and_in_range() {
        let z = Zipf::new(1000, 0.99);
        let mut r = Rng::new(1);
        let mut counts = vec![0u32; 1000];
        for _ in 0..200_000 {
            let k = z.sample(&mut r);
            counts[k as usize] += 1;
        }
        // rank 0 should be about twice rank 1 and ~10x rank 9 for s close to 1
        let r01 = f64::from(counts[0]) / f64::from(counts[1]);
        let r09 = f64::from(counts[0]) / f64::from(counts[9]);
        assert!((1.7..2.3).contains(&r01), "{r01}");
        assert!((7.0..13.0).contains(&r09), "{r09}");
    }
}
