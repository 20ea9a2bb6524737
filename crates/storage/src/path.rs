//! Bucket ids and object names, checked once where they enter.
//!
//! An object name reaches a database row, a signed-URL claim and (through the bucket id) a
//! folder on disk, so anything that could mean "somewhere else" is refused outright rather
//! than cleaned up: `..` and `.` segments, absolute paths, empty segments, NUL and other
//! control characters, backslashes (a separator on Windows).

use std::fmt;

/// Longest object name accepted, in bytes (Supabase's limit).
pub const MAX_NAME_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the object name is empty")]
    Empty,
    #[error("the object name is longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    #[error("the object name may not start with '/'")]
    Absolute,
    #[error("the object name has an empty segment ('//' or a trailing '/')")]
    EmptySegment,
    #[error("the object name may not have '.' or '..' segments")]
    DotSegment,
    #[error("the object name may not hold a backslash")]
    Backslash,
    #[error("the object name may not hold NUL or control characters")]
    Control,
    #[error("the bucket id must be 1-100 letters, digits, '-', '_' or '.', not starting with '.'")]
    BadBucket,
}

/// A bucket id: letters, digits, `-`, `_`, `.`; never starting with a dot, so it can never be
/// `.`, `..` or the backends' own `.tmp` folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketId(String);

impl BucketId {
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        let ok = !raw.is_empty()
            && raw.len() <= 100
            && !raw.starts_with('.')
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(PathError::BadBucket)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BucketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object name inside a bucket, such as `5eed.../avatar.png`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectName(String);

impl ObjectName {
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.is_empty() {
            return Err(PathError::Empty);
        }
        if raw.len() > MAX_NAME_BYTES {
            return Err(PathError::TooLong);
        }
        if raw.chars().any(char::is_control) {
            return Err(PathError::Control);
        }
        if raw.contains('\\') {
            return Err(PathError::Backslash);
        }
        if raw.starts_with('/') {
            return Err(PathError::Absolute);
        }
        for segment in raw.split('/') {
            match segment {
                "" => return Err(PathError::EmptySegment),
                "." | ".." => return Err(PathError::DotSegment),
                _ => {}
            }
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment: the file name a download offers.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "a.png",
            "5eed/avatar.png",
            "c4a3/minutes 2026-01.pdf",
            "x/y/z.txt",
        ] {
            assert_eq!(ObjectName::parse(name).unwrap().as_str(), name);
        }
        assert_eq!(ObjectName::parse("a/b/c.pdf").unwrap().file_name(), "c.pdf");
    }

    #[test]
    fn anything_pointing_elsewhere_is_refused() {
        let cases = [
            ("", PathError::Empty),
            ("/etc/passwd", PathError::Absolute),
            ("../secret", PathError::DotSegment),
            ("a/../../b", PathError::DotSegment),
            ("a/./b", PathError::DotSegment),
            ("..", PathError::DotSegment),
            ("a//b", PathError::EmptySegment),
            ("a/", PathError::EmptySegment),
            ("a\\..\\b", PathError::Backslash),
            ("a\0b", PathError::Control),
            ("a\nb", PathError::Control),
        ];
        for (name, expected) in cases {
            assert_eq!(ObjectName::parse(name), Err(expected), "{name:?}");
        }
        assert_eq!(
            ObjectName::parse(&"a".repeat(MAX_NAME_BYTES + 1)),
            Err(PathError::TooLong)
        );
    }

    #[test]
    fn bucket_ids_are_plain() {
        assert!(BucketId::parse("avatars").is_ok());
        for bad in ["", ".tmp", "..", "a/b", "a b", "ü"] {
            assert_eq!(BucketId::parse(bad), Err(PathError::BadBucket), "{bad:?}");
        }
    }
}
