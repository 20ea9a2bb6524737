//! AWS Signature Version 4 for S3 requests (header form), written from AWS's published
//! specification and checked against its worked example.
//!
//! The body is sent as `UNSIGNED-PAYLOAD` (allowed by S3 and the compatible stores, Supabase's
//! S3 endpoint included): the upload was already hashed for its ETag, and signing the payload
//! would mean reading a large recording twice.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Who signs, and for which region and service (`s3`).
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    pub service: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// One request to sign. `uri` is the path exactly as sent (already percent-encoded),
/// `query` the decoded pairs, `headers` every header to sign (the host included).
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    pub payload_hash: &'a str,
    /// `YYYYMMDD'T'HHMMSS'Z'`, the value of `x-amz-date`.
    pub amz_date: &'a str,
}

/// Percent-encodes as SigV4 wants: everything but `A-Z a-z 0-9 - _ . ~` (and `/` when
/// `keep_slash`, for paths).
pub fn uri_encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        let plain = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && byte == b'/');
        if plain {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &str) -> String {
    hex::encode(Sha256::digest(data.as_bytes()))
}

/// `name1;name2;...` of the headers signed, and the signature.
pub fn sign(credentials: &Credentials, request: &Request<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| {
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            (name.to_ascii_lowercase(), value)
        })
        .collect();
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let mut query: Vec<(String, String)> = request
        .query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request = format!(
        "{}\n{}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        request.method, request.uri, request.payload_hash
    );
    let date = request.amz_date.get(..8).unwrap_or_default();
    let scope = format!(
        "{date}/{}/{}/aws4_request",
        credentials.region, credentials.service
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        request.amz_date,
        sha256_hex(&canonical_request)
    );
    let key = hmac(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        date,
    );
    let key = hmac(&key, &credentials.region);
    let key = hmac(&key, &credentials.service);
    let key = hmac(&key, "aws4_request");
    (signed_headers, hex::encode(hmac(&key, &string_to_sign)))
}

/// The `Authorization` header value for a signed request.
pub fn authorization(credentials: &Credentials, request: &Request<'_>) -> String {
    let (signed_headers, signature) = sign(credentials, request);
    let date = request.amz_date.get(..8).unwrap_or_default();
    format!(
        "{ALGORITHM} Credential={}/{date}/{}/{}/aws4_request, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id, credentials.region, credentials.service
    )
}

/// The parts of an `Authorization` header: access key id, signed header names, signature.
pub fn parse_authorization(value: &str) -> Option<(String, Vec<String>, String)> {
    let rest = value.strip_prefix(ALGORITHM)?.trim();
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=')?;
        match name {
            "Credential" => credential = value.split('/').next().map(str::to_owned),
            "SignedHeaders" => signed = Some(value.split(';').map(str::to_owned).collect()),
            "Signature" => signature = Some(value.to_owned()),
            _ => {}
        }
    }
    Some((credential?, signed?, signature?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's worked example "GET Object" from the Signature Version 4 documentation for S3
    /// (bucket `examplebucket`, the documentation's example key pair, 2013-05-24).
    #[test]
    fn matches_the_published_get_object_example() {
        let credentials = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
            service: "s3".into(),
        };
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let headers = [
            (
                "Host".to_owned(),
                "examplebucket.s3.amazonaws.com".to_owned(),
            ),
            ("Range".to_owned(), "bytes=0-9".to_owned()),
            ("x-amz-content-sha256".to_owned(), empty.to_owned()),
            ("x-amz-date".to_owned(), "20130524T000000Z".to_owned()),
        ];
        let request = Request {
            method: "GET",
            uri: "/test.txt",
            query: &[],
            headers: &headers,
            payload_hash: empty,
            amz_date: "20130524T000000Z",
        };
        let (signed, signature) = sign(&credentials, &request);
        assert_eq!(signed, "host;range;x-amz-content-sha256;x-amz-date");
        assert_eq!(
            signature,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        let header = authorization(&credentials, &request);
        let (key, names, parsed) = parse_authorization(&header).unwrap();
        assert_eq!(key, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(names.len(), 4);
        assert_eq!(parsed, signature);
    }

    #[test]
    fn encoding_keeps_only_unreserved_characters() {
        assert_eq!(uri_encode("a b/c~d", true), "a%20b/c~d");
        assert_eq!(uri_encode("a b/c", false), "a%20b%2Fc");
        assert_eq!(uri_encode("ü", false), "%C3%BC");
    }
}
