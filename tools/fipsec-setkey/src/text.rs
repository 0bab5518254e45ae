//! Small text helpers shared by the dump formatter and the session:
//! `strerror` texts per dialect, ctime-style dates, setkey's hex dumps.

use core::fmt::Write as _;

use crate::cli::DialectChoice;

/// `strerror(errno)` as the dialect's C library prints it, for the errnos a
/// PF_KEY reply carries. `errno` is in the dialect's numbering.
pub fn strerror(dialect: DialectChoice, errno: u8) -> String {
    let linux = |e: u8| -> Option<&'static str> {
        Some(match e {
            1 => "Operation not permitted",
            2 => "No such file or directory",
            3 => "No such process",
            4 => "Interrupted system call",
            5 => "Input/output error",
            6 => "No such device or address",
            7 => "Argument list too long",
            9 => "Bad file descriptor",
            11 => "Resource temporarily unavailable",
            12 => "Cannot allocate memory",
            13 => "Permission denied",
            14 => "Bad address",
            16 => "Device or resource busy",
            17 => "File exists",
            19 => "No such device",
            22 => "Invalid argument",
            23 => "Too many open files in system",
            24 => "Too many open files",
            28 => "No space left on device",
            34 => "Numerical result out of range",
            38 => "Function not implemented",
            90 => "Message too long",
            93 => "Protocol not supported",
            95 => "Operation not supported",
            97 => "Address family not supported by protocol",
            105 => "No buffer space available",
            110 => "Connection timed out",
            _ => return None,
        })
    };
    let freebsd = |e: u8| -> Option<&'static str> {
        Some(match e {
            1 => "Operation not permitted",
            2 => "No such file or directory",
            3 => "No such process",
            4 => "Interrupted system call",
            5 => "Input/output error",
            6 => "Device not configured",
            7 => "Argument list too long",
            9 => "Bad file descriptor",
            12 => "Cannot allocate memory",
            13 => "Permission denied",
            14 => "Bad address",
            16 => "Device busy",
            17 => "File exists",
            19 => "Operation not supported by device",
            22 => "Invalid argument",
            23 => "Too many open files in system",
            24 => "Too many open files",
            28 => "No space left on device",
            34 => "Result too large",
            35 => "Resource temporarily unavailable",
            40 => "Message too long",
            43 => "Protocol not supported",
            45 => "Operation not supported",
            47 => "Address family not supported by protocol family",
            55 => "No buffer space available",
            60 => "Operation timed out",
            78 => "Function not implemented",
            _ => return None,
        })
    };
    let known = match dialect {
        DialectChoice::Linux => linux(errno),
        DialectChoice::FreeBsd => freebsd(errno),
    };
    match known {
        Some(s) => s.to_string(),
        None => match dialect {
            DialectChoice::Linux => format!("Unknown error {errno}"),
            DialectChoice::FreeBsd => format!("Unknown error: {errno}"),
        },
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// setkey's `str_time`: characters 4..24 of `ctime(3)` ("Nov 25 19:33:23
/// 2026"), in local time; 20 spaces for 0.
pub fn str_time(secs: u64) -> String {
    if secs == 0 {
        return " ".repeat(20);
    }
    let Some(t) = i64::try_from(secs)
        .ok()
        .and_then(fipsec_ffi::sys::localtime)
    else {
        return "?".repeat(20);
    };
    let month = MONTHS.get(usize::from(t.month)).copied().unwrap_or("???");
    let mut s = format!(
        "{month} {:2} {:02}:{:02}:{:02} {}",
        t.mday, t.hour, t.min, t.sec, t.year
    );
    // ctime's year field is at least 4 wide; keep setkey's fixed 20 columns.
    s.truncate(20);
    while s.len() < 20 {
        s.push(' ');
    }
    s
}

/// libipsec's `ipsec_hexdump`: groups of 4 bytes, each group preceded by a
/// space, a newline after every 32 bytes (no indentation).
pub fn ipsec_hexdump(out: &mut String, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if i != 0 && i % 32 == 0 {
            out.push('\n');
        }
        if i % 4 == 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b:02x}");
    }
}

/// setkey's `-H`/`-x -H` dump of a raw message: 16 bytes per line with an
/// offset.
pub fn raw_hexdump(out: &mut String, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if i % 16 == 0 {
            let _ = write!(out, "{i:08x}: ");
        }
        let _ = write!(out, "{b:02x} ");
        if i % 16 == 15 {
            out.push('\n');
        }
    }
    if !bytes.len().is_multiple_of(16) {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hexdumps() {
        let mut s = String::new();
        ipsec_hexdump(&mut s, &[0, 0x11, 0x22, 0x33, 0x44]);
        assert_eq!(s, " 00112233 44");
        let mut s = String::new();
        ipsec_hexdump(&mut s, &[0xab; 36]);
        assert_eq!(s.lines().count(), 2);
        assert!(s.contains("abababab\n abababab"));
        let mut s = String::new();
        raw_hexdump(&mut s, &[1; 17]);
        assert_eq!(
            s,
            format!("00000000: {}\n00000010: 01 \n", "01 ".repeat(16))
        );
    }

    #[test]
    fn errno_texts() {
        assert_eq!(strerror(DialectChoice::Linux, 3), "No such process");
        assert_eq!(strerror(DialectChoice::Linux, 22), "Invalid argument");
        assert_eq!(
            strerror(DialectChoice::FreeBsd, 55),
            "No buffer space available"
        );
        assert_eq!(strerror(DialectChoice::Linux, 200), "Unknown error 200");
    }

    #[test]
    fn dates() {
        assert_eq!(str_time(0), " ".repeat(20));
        let s = str_time(1_795_000_000);
        assert_eq!(s.len(), 20);
        assert!(s.ends_with("2026") || s.ends_with("2027"), "{s}");
    }
}
