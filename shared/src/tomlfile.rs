//! The operator's TOML files (`--integrations`, `--clients`): read, parsed
//! strictly, and refused with an error that names the file, the line and the
//! key. The error is built from structure (a key path, a line, what was
//! expected), never from the parser's text, which may quote a value.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A file that cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// The key path (`integrations.coinbase.token_url`), when known.
    pub key: Option<String>,
    /// What is wrong, without any value from the file.
    pub reason: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A TOML file read into memory, to parse and to point into.
pub struct TomlFile {
    path: PathBuf,
    text: String,
}

impl TomlFile {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self, FileError> {
        let text = std::fs::read_to_string(path).map_err(|e| FileError {
            path: path.to_owned(),
            line: None,
            key: None,
            reason: format!("cannot be read ({})", e.kind()),
        })?;
        Ok(Self::from_text(path, text))
    }

    /// A file whose text is already in hand.
    pub fn from_text(path: &Path, text: String) -> Self {
        Self {
            path: path.to_owned(),
            text,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Parses the whole file as `T` (which should `deny_unknown_fields`).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, FileError> {
        let de = toml::de::Deserializer::parse(&self.text).map_err(|e| FileError {
            path: self.path.clone(),
            line: e.span().map(|s| self.line_of(s.start)),
            key: None,
            reason: "is not valid TOML".into(),
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            FileError {
                path: self.path.clone(),
                line: inner.span().map(|s| self.line_of(s.start)),
                key: (path != ".").then_some(path),
                reason: reason(inner.message()),
            }
        })
    }

    /// An error about the value at `span` (from a `toml::Spanned` field).
    pub fn error_at(&self, span: Range<usize>, key: &str, reason: impl Into<String>) -> FileError {
        FileError {
            path: self.path.clone(),
            line: Some(self.line_of(span.start)),
            key: Some(key.to_owned()),
            reason: reason.into(),
        }
    }

    /// Checks an endpoint URL: `https://`, or `http://` to a loopback host
    /// only (a local test server); never a password or a fragment.
    pub fn check_url(&self, key: &str, url: &toml::Spanned<String>) -> Result<url::Url, FileError> {
        let fail = |reason: &str| self.error_at(url.span(), key, reason);
        let parsed = url::Url::parse(url.get_ref()).map_err(|_| fail("is not a URL"))?;
        if !parsed.password().unwrap_or_default().is_empty() || !parsed.username().is_empty() {
            return Err(fail("must not carry credentials"));
        }
        match parsed.scheme() {
            "https" => Ok(parsed),
            "http" if is_loopback(&parsed) => Ok(parsed),
            "http" => Err(fail(
                "uses http:// to a host that is not a loopback address; use https://",
            )),
            _ => Err(fail("must be an https:// URL")),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// What the parser said, reduced to its kind and what the schema expected:
/// the names of keys and types come from our own types; a value never does.
fn reason(message: &str) -> String {
    let expected = message
        .split_once(", expected ")
        .map(|(_, e)| e.trim_end_matches('.').to_owned());
    let with = |what: &str| match &expected {
        Some(e) => format!("{what}, expected {e}"),
        None => what.to_owned(),
    };
    if message.starts_with("unknown field") {
        with("unknown key")
    } else if let Some(rest) = message.strip_prefix("missing field ") {
        format!("missing key {}", rest.trim_matches('`'))
    } else if message.starts_with("invalid type") {
        with("wrong type")
    } else if message.starts_with("unknown variant") {
        with("unknown value")
    } else if message.starts_with("duplicate") {
        "is given twice".to_owned()
    } else {
        with("invalid value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Conf {
        endpoints: std::collections::BTreeMap<String, Endpoint>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Endpoint {
        url: toml::Spanned<String>,
        timeout_ms: Option<u64>,
    }

    fn parse(text: &str) -> Result<Conf, FileError> {
        TomlFile::from_text(Path::new("f.toml"), text.into()).parse()
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line_and_never_its_value() {
        let e = parse("[endpoints.a]\nurl = \"https://x\"\nsecret = \"hunter2\"\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("unknown key"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn a_wrong_type_names_the_key_path_and_what_was_expected() {
        let e = parse("[endpoints.a]\nurl = \"https://x\"\ntimeout_ms = \"sekrit\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("endpoints.a.timeout_ms"), "{e}");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(!e.to_string().contains("sekrit"), "{e}");
        assert!(e.reason.starts_with("wrong type"), "{e}");
    }

    #[test]
    fn broken_toml_is_refused_with_its_line() {
        let e = parse("[endpoints.a]\nurl = \"https://x\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert_eq!(e.reason, "is not valid TOML");
    }

    #[test]
    fn http_is_allowed_to_loopback_hosts_only() {
        let file = TomlFile::from_text(Path::new("f.toml"), String::new());
        let url = |u: &str| toml::Spanned::new(0..1, u.to_owned());
        for ok in [
            "https://a.example/t",
            "http://127.0.0.1:9/t",
            "http://localhost/t",
            "http://[::1]:8/t",
        ] {
            assert!(file.check_url("k", &url(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "http://a.example/t",
            "ftp://127.0.0.1/",
            "https://u:p@a.example/",
            "nonsense",
        ] {
            let e = file.check_url("k", &url(bad)).unwrap_err();
            assert!(!e.to_string().contains("u:p"), "{e}");
        }
    }
}
