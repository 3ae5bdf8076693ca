//! The key file (CONTRACT.md §11): one key a line, `<keyId>:<64 hex>`, the
//! last line the active key; a v1 file (one line of 64 hex) is key id `0`.
//! Reading it refuses a file group or others can access and never quotes
//! a key in an error; [`rotate`] appends a fresh key, the file rewritten
//! atomically (mode 0600) under a lock on its directory, so two rotations
//! at once add two keys, never one twice.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use super::{CryptoError, KEY_BYTES, KeyId};

/// One key of the file: its id and its bytes.
pub(super) type KeyLine = (KeyId, Zeroizing<[u8; KEY_BYTES]>);

/// Why a key file's text is not a key ring: the line (from 1) and what is
/// wrong with it, never its content.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Malformed {
    pub(super) line: usize,
    pub(super) why: &'static str,
}

/// The keys of a key file's text, in file order (ids strictly increasing;
/// the last is the active key).
pub(super) fn parse(text: &str) -> Result<Vec<KeyLine>, Malformed> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(at, line)| (at + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty())
        .collect();
    let malformed = |line, why| Malformed { line, why };
    if lines.is_empty() {
        return Err(malformed(1, "the file holds no key"));
    }
    if let [(line, only)] = lines.as_slice()
        && !only.contains(':')
    {
        return Ok(vec![(0, hex_key(only).ok_or(malformed(*line, HEX))?)]);
    }
    let mut keys: Vec<KeyLine> = Vec::with_capacity(lines.len());
    for (line, text) in lines {
        let (id, hex) = text
            .split_once(':')
            .ok_or(malformed(line, "a ring's line is <keyId>:<64 hex>"))?;
        let id: KeyId = (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            .then(|| id.parse().ok())
            .flatten()
            .ok_or(malformed(line, "a key id is a decimal number below 2^32"))?;
        if keys.last().is_some_and(|(last, _)| *last >= id) {
            return Err(malformed(
                line,
                "key ids must increase from line to line (the last line is the active key)",
            ));
        }
        keys.push((id, hex_key(hex).ok_or(malformed(line, HEX))?));
    }
    Ok(keys)
}

const HEX: &str = "a key is 64 hexadecimal characters (32 bytes)";

fn hex_key(text: &str) -> Option<Zeroizing<[u8; KEY_BYTES]>> {
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    hex::decode_to_slice(text, &mut key[..]).ok()?;
    Some(key)
}

/// The text of a key ring's file, every key as `<keyId>:<hex>`.
fn format(keys: &[KeyLine]) -> Zeroizing<String> {
    let mut text = Zeroizing::new(String::with_capacity(keys.len() * (KEY_BYTES * 2 + 12)));
    for (id, key) in keys {
        text.push_str(&id.to_string());
        text.push(':');
        text.push_str(&Zeroizing::new(hex::encode(&key[..])));
        text.push('\n');
    }
    text
}

/// Reads the key file's text, refusing one that group or others can access.
pub(super) fn read(path: &Path) -> Result<Zeroizing<String>, CryptoError> {
    let key_file_error = |source| CryptoError::KeyFile {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(key_file_error)?;
    let mode = file
        .metadata()
        .map_err(key_file_error)?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CryptoError::KeyFileMode {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text).map_err(key_file_error)?;
    Ok(text)
}

/// The keys of the file at `path`.
pub(super) fn load(path: &Path) -> Result<Vec<KeyLine>, CryptoError> {
    parse(&read(path)?).map_err(|Malformed { line, why }| CryptoError::KeyFormat {
        path: path.to_owned(),
        line,
        why,
    })
}

/// Appends a fresh random key to the file at `path` (which must exist and
/// hold a key ring): the file is rewritten whole into a temporary file of
/// mode 0600 beside it, synced, and renamed over it, so a reader sees the
/// old ring or the new one, never part of one. Returns the new key's id.
pub fn rotate(path: &Path) -> Result<KeyId, CryptoError> {
    let key_file_error = |source| CryptoError::KeyFile {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    let dir_handle = std::fs::File::open(dir).map_err(key_file_error)?;
    dir_handle.lock().map_err(key_file_error)?;
    let mut keys = load(path)?;
    let id = match keys.last() {
        Some((last, _)) => last.checked_add(1).ok_or(CryptoError::KeyFormat {
            path: path.to_owned(),
            line: keys.len(),
            why: "the last key id is the largest there is: no key can follow it",
        })?,
        None => 0,
    };
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    orion::util::secure_rand_bytes(&mut key[..]).map_err(|_| CryptoError::Cipher)?;
    keys.push((id, key));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".to_owned());
    let tmp = dir.join(format!(".{name}.rotate.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(format(&keys).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        dir_handle.sync_all()
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        key_file_error(source)
    })?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    fn ids(text: &str) -> Result<Vec<KeyId>, Malformed> {
        parse(text).map(|keys| keys.into_iter().map(|(id, _)| id).collect())
    }

    #[test]
    fn a_v1_file_is_key_zero_and_a_ring_names_its_ids() {
        assert_eq!(ids(&format!("{A}\n")), Ok(vec![0]));
        assert_eq!(ids(&format!("  {A}  ")), Ok(vec![0]));
        assert_eq!(ids(&format!("0:{A}\n7:{B}\n")), Ok(vec![0, 7]));
        assert_eq!(ids(&format!("\n3:{A}\n\n4:{B}\n\n")), Ok(vec![3, 4]));
        let keys = parse(&format!("0:{A}\n1:{B}\n")).expect("a ring");
        assert_eq!(hex::encode(&keys[1].1[..]), B);
    }

    #[test]
    fn a_bad_ring_names_its_line_and_never_its_key() {
        for (text, line) in [
            (String::new(), 1),
            (format!("{A}\n{B}\n"), 1),
            (format!("0:{A}\n0:{B}\n"), 2),
            (format!("1:{A}\n0:{B}\n"), 2),
            (format!("0:{A}\nx:{B}\n"), 2),
            (format!("0:{A}\n-1:{B}\n"), 2),
            (format!("0:{A}\n4294967296:{B}\n"), 2),
            (format!("0:{A}\n1:{}\n", &B[1..]), 2),
            (format!("0:{A}\n1:{B}0\n"), 2),
            (format!("0:{A}\n1:\n"), 2),
            (format!("{}g\n", &A[1..]), 1),
        ] {
            let error = parse(&text).expect_err(&text);
            assert_eq!(error.line, line, "{text}: {error:?}");
            assert!(!error.why.contains(&A[..8]) && !error.why.contains(&B[..8]));
        }
    }

    #[test]
    fn rotation_appends_a_fresh_key_atomically_and_keeps_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mmt.key");
        std::fs::write(&path, format!("{A}\n")).expect("writes");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(rotate(&path).expect("rotates"), 1);
        assert_eq!(rotate(&path).expect("rotates"), 2);
        let keys = load(&path).expect("a ring");
        assert_eq!(
            keys.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(hex::encode(&keys[0].1[..]), A);
        assert_ne!(keys[1].1[..], keys[2].1[..]);
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("lists")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from("mmt.key")]);
    }

    #[test]
    fn rotations_at_once_each_add_their_own_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mmt.key");
        std::fs::write(&path, format!("0:{A}\n")).expect("writes");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let mut ids: Vec<KeyId> = std::thread::scope(|scope| {
            let rotations: Vec<_> = (0..4).map(|_| scope.spawn(|| rotate(&path))).collect();
            rotations
                .into_iter()
                .map(|r| r.join().expect("joins").expect("rotates"))
                .collect()
        });
        ids.sort_unstable();
        assert_eq!(ids, [1, 2, 3, 4]);
        assert_eq!(load(&path).expect("a ring").len(), 5);
    }
}
