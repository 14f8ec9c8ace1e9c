//! /proc and rusage readings: server CPU time, server RSS, client CPU time.

use std::io;

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a whole process (all its threads), in seconds, from /proc/PID/stat.
pub fn proc_cpu_seconds(pid: u32) -> io::Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unparseable /proc/PID/stat");
    // comm (field 2) may contain spaces and ')': skip to the last ')'.
    let rest = s.get(s.rfind(')').ok_or_else(bad)? + 1..).ok_or_else(bad)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let ut: u64 = f.get(11).and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let st: u64 = f.get(12).and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    Ok((ut + st) as f64 / clk_tck())
}

/// Resident set size of a process in bytes (VmRSS).
pub fn proc_rss_bytes(pid: u32) -> io::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in s.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            let kb: u64 = v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad VmRSS"))?;
            return Ok(kb * 1024);
        }
    }
    Err(io::Error::new(io::ErrorKind::NotFound, "no VmRSS"))
}

/// (user, system) CPU seconds used by this process so far, all threads.
pub fn self_cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return (0.0, 0.0);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}
