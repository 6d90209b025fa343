//! Reading the files an operator names (a policy, a rule module, a
//! configuration, a token): regular files only, and only up to a size.
//!
//! Whoever can write a policy can name any path in it. A module path of
//! `/dev/zero` or `/dev/urandom` would be read without end, and a fifo would
//! block the reload that reads it; either could take down a running daemon
//! through one saved file. So a path is checked before it is opened, and
//! the read stops one byte past the limit, whatever the file grew to since.

use std::io::{self, Read};
use std::path::Path;

/// Largest rule module read. Real modules are tens to hundreds of KiB; the
/// built-in ones are under 100 KiB.
pub const MAX_MODULE_BYTES: u64 = 64 << 20;

/// Largest policy file read.
pub const MAX_POLICY_BYTES: u64 = 4 << 20;

/// Reads `path` whole, if it is a regular file of at most `limit` bytes;
/// `what` names it in the error ("rule module").
pub fn read_regular(path: &Path, limit: u64, what: &str) -> io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({}): a {what} must be one", kind(&meta)),
        ));
    }
    let too_big = |size: u64| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{size} bytes, over the {} limit for a {what}",
                human_bytes(limit)
            ),
        )
    };
    if meta.len() > limit {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read_regular`], as UTF-8 text.
pub fn read_regular_text(path: &Path, limit: u64, what: &str) -> io::Result<String> {
    String::from_utf8(read_regular(path, limit, what)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not valid UTF-8 text"))
}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a fifo"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// `64 MiB`, `4 KiB`, `100 bytes`.
pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_are_refused_before_they_are_read() {
        for (path, kind) in [
            ("/dev/zero", "a character device"),
            ("/dev/urandom", "a character device"),
            ("/", "a directory"),
        ] {
            let error = read_regular(Path::new(path), MAX_MODULE_BYTES, "rule module")
                .unwrap_err()
                .to_string();
            assert_eq!(
                error,
                format!("not a regular file ({kind}): a rule module must be one")
            );
        }
    }

    #[test]
    fn files_over_the_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.wasm");
        std::fs::write(&path, vec![0u8; 5000]).unwrap();
        let error = read_regular(&path, 4096, "rule module").unwrap_err();
        assert_eq!(
            error.to_string(),
            "5000 bytes, over the 4 KiB limit for a rule module"
        );
        assert_eq!(
            read_regular(&path, 5000, "rule module").unwrap().len(),
            5000
        );
        let missing = read_regular(&dir.path().join("none"), 10, "x").unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }
}
