//! This process's CPU time and memory, read from `/proc/self` at scrape time (Linux; on
//! other systems the figures are absent).

/// What `/proc/self` says now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessFigures {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory, in bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Threads.
    pub threads: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// Reads the figures; `None` where `/proc/self` cannot be read.
pub fn read() -> Option<ProcessFigures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let uptime = std::fs::read_to_string("/proc/uptime").ok();
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    parse(
        &stat,
        &statm,
        uptime.as_deref(),
        ticks.max(1) as f64,
        page.max(1) as u64,
        open_fds,
    )
}

/// The figures from the text of `/proc/self/stat` and `/proc/self/statm`.
fn parse(
    stat: &str,
    statm: &str,
    uptime: Option<&str>,
    ticks_per_second: f64,
    page_bytes: u64,
    open_fds: u64,
) -> Option<ProcessFigures> {
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let utime = field(14)?;
    let stime = field(15)?;
    let threads = field(20)? as u64;
    let start_ticks = field(22)?;
    let virtual_bytes = field(23)? as u64;
    let mut statm = statm.split_whitespace();
    let resident_pages: u64 = statm.nth(1)?.parse().ok()?;
    let start_time_seconds = uptime
        .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok())
        .map(|up| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            now - up + start_ticks / ticks_per_second
        })
        .unwrap_or(0.0);
    Some(ProcessFigures {
        cpu_seconds: (utime + stime) / ticks_per_second,
        resident_bytes: resident_pages * page_bytes,
        virtual_bytes,
        open_fds,
        threads,
        start_time_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_past_a_command_name_with_spaces() {
        let stat = "4242 (zoom host) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 7 0 1000 123456789 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let figures = parse(
            stat,
            "30000 2000 500 1 0 900 0",
            Some("100.0 50.0"),
            100.0,
            4096,
            9,
        )
        .expect("parses");
        assert_eq!(figures.cpu_seconds, 3.0);
        assert_eq!(figures.resident_bytes, 2000 * 4096);
        assert_eq!(figures.virtual_bytes, 123_456_789);
        assert_eq!(figures.threads, 7);
        assert_eq!(figures.open_fds, 9);
        assert!(figures.start_time_seconds > 0.0);
        assert!(parse("garbage", "", None, 100.0, 4096, 0).is_none());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let figures = read().expect("/proc/self is readable on Linux");
        assert!(figures.resident_bytes > 0 && figures.threads > 0);
    }
}
