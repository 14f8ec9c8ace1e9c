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
    let ticks = stat_cpu_ticks(&s)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparseable /proc/PID/stat"))?;
    Ok(ticks as f64 / clk_tck())
}

/// utime + stime, in clock ticks, from the text of /proc/PID/stat.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // comm (field 2) may contain spaces and ')': skip to the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    Some(ut + st)
}

/// CPU microseconds per operation: `cpu_s` seconds over `ops` operations.
pub fn us_per_op(cpu_s: f64, ops: u64) -> Option<f64> {
    (ops > 0).then(|| cpu_s * 1e6 / ops as f64)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_past_an_odd_comm() {
        // fields 1-15 of a real line; the comm holds spaces and a ')'
        let stat = "4242 (my (odd) srv) S 1 4242 4242 0 -1 4194560 95 0 0 0 150 50 0 0 20 0 3";
        assert_eq!(stat_cpu_ticks(stat), Some(200));
        assert_eq!(stat_cpu_ticks("4242 (x) S 1 2"), None);
        assert_eq!(stat_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn us_per_op_from_ticks() {
        // 200 ticks at 100 Hz = 2 s of CPU over 100 000 ops = 20 us/op
        assert_eq!(us_per_op(200.0 / 100.0, 100_000), Some(20.0));
        assert_eq!(us_per_op(1.0, 0), None);
    }
}
