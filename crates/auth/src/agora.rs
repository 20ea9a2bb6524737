//! Agora RTC tokens (AccessToken2, the "007" format) for video meetings.
//!
//! Layout (CONTRACTS §7): integers little-endian; a string is a u16 length and its bytes; a map
//! is a u16 count and (u16 key, u32 value) pairs. The signing key is HMAC-SHA256 keyed by the
//! issue time over the app certificate, then keyed by the salt over that. The token is "007"
//! and the base64 of the zlib of (signature as a string ‖ signing info).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write as _;

const VERSION: &str = "007";
const SERVICE_RTC: u16 = 1;
const JOIN_CHANNEL: u16 = 1;
const PUBLISH_AUDIO: u16 = 2;
const PUBLISH_VIDEO: u16 = 3;
const PUBLISH_DATA: u16 = 4;

/// What the holder may do in the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcRole {
    /// Join, and publish audio, video and data (officials).
    Publisher,
    /// Join and watch (members).
    Subscriber,
}

impl RtcRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publisher => "publisher",
            Self::Subscriber => "subscriber",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AgoraError {
    #[error("the Agora app id and certificate are 32 hexadecimal characters each")]
    BadCredentials,
    #[error("channel names are 1 to 64 characters")]
    BadChannel,
}

/// Everything a token is made of; `issued_at` and `salt` are inputs so tests are exact.
#[derive(Debug, Clone)]
pub struct RtcTokenRequest<'a> {
    pub app_id: &'a str,
    pub app_certificate: &'a str,
    pub channel: &'a str,
    /// 0 means "any uid" (encoded as an empty string).
    pub uid: u32,
    pub role: RtcRole,
    /// Seconds the token is valid, from `issued_at`.
    pub expire_seconds: u32,
    /// Seconds each privilege is valid, from `issued_at`.
    pub privilege_seconds: u32,
    pub issued_at: u32,
    /// 1..=99,999,999.
    pub salt: u32,
}

fn is_hex32(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every string here is bounded (ids, channel, a 32-byte signature), far below u16::MAX.
    put_u16(out, u16::try_from(bytes.len()).unwrap_or(u16::MAX));
    out.extend_from_slice(bytes);
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The signing info: app id, times, salt and the RTC service.
fn signing_info(request: &RtcTokenRequest<'_>) -> Vec<u8> {
    let mut privileges = vec![(JOIN_CHANNEL, request.privilege_seconds)];
    if request.role == RtcRole::Publisher {
        for privilege in [PUBLISH_AUDIO, PUBLISH_VIDEO, PUBLISH_DATA] {
            privileges.push((privilege, request.privilege_seconds));
        }
    }
    let mut info = Vec::with_capacity(128);
    put_bytes(&mut info, request.app_id.as_bytes());
    put_u32(&mut info, request.issued_at);
    put_u32(&mut info, request.expire_seconds);
    put_u32(&mut info, request.salt);
    put_u16(&mut info, 1); // one service
    put_u16(&mut info, SERVICE_RTC);
    put_u16(&mut info, privileges.len() as u16);
    for (privilege, seconds) in privileges {
        put_u16(&mut info, privilege);
        put_u32(&mut info, seconds);
    }
    put_bytes(&mut info, request.channel.as_bytes());
    let uid = if request.uid == 0 {
        String::new()
    } else {
        request.uid.to_string()
    };
    put_bytes(&mut info, uid.as_bytes());
    info
}

/// The token's content before compression: the signature (as a string) and the signing info.
pub fn rtc_token_content(request: &RtcTokenRequest<'_>) -> Result<Vec<u8>, AgoraError> {
    if !is_hex32(request.app_id) || !is_hex32(request.app_certificate) {
        return Err(AgoraError::BadCredentials);
    }
    if request.channel.is_empty() || request.channel.len() > 64 {
        return Err(AgoraError::BadChannel);
    }
    let first = hmac(
        &request.issued_at.to_le_bytes(),
        request.app_certificate.as_bytes(),
    );
    let signing_key = hmac(&request.salt.to_le_bytes(), &first);
    let info = signing_info(request);
    let signature = hmac(&signing_key, &info);
    let mut content = Vec::with_capacity(info.len() + 34);
    put_bytes(&mut content, &signature);
    content.extend_from_slice(&info);
    Ok(content)
}

/// An RTC token: "007" + base64(zlib(content)).
pub fn rtc_token(request: &RtcTokenRequest<'_>) -> Result<String, AgoraError> {
    let content = rtc_token_content(request)?;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(&content);
    let compressed = encoder.finish().unwrap_or_default();
    Ok(format!(
        "{VERSION}{}",
        base64::engine::general_purpose::STANDARD.encode(compressed)
    ))
}

/// A random salt in Agora's range.
pub fn random_salt() -> u32 {
    use rand::Rng as _;
    rand::rng().random_range(1..=99_999_999)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    const OFFICIAL: &str = "007eJxTYBBbsMMnKq7p9Hf/HcIX5kce9b518kCiQgSr5Zrp4X1Tu6UUGCzNDZwdjU1TUs0Mkk1MzExMk5ISUy0SjQxNDcwMk4yN3b8IMEQwMTAwMoAwBIL4CgzmKeZGxmamqUmWFsYmFqbGluapxqnGaZYpJmYGSSkpiVwMRhYWRsYmhkbmxgDCaiTj";

    fn vector(role: RtcRole) -> RtcTokenRequest<'static> {
        RtcTokenRequest {
            app_id: "970CA35de60c44645bbae8a215061b33",
            app_certificate: "5CFd2fd1755d40ecb72977518be15d3b",
            channel: "7d72365eb983485397e3e3f9d460bdda",
            uid: 2_882_341_273,
            role,
            expire_seconds: 600,
            privilege_seconds: 600,
            issued_at: 1_111_111,
            salt: 1,
        }
    }

    fn inflate(token: &str) -> Vec<u8> {
        let compressed = base64::engine::general_purpose::STANDARD
            .decode(token.strip_prefix("007").unwrap())
            .unwrap();
        let mut content = Vec::new();
        flate2::read::ZlibDecoder::new(&compressed[..])
            .read_to_end(&mut content)
            .unwrap();
        content
    }

    #[test]
    fn the_official_test_vector_matches_byte_for_byte_once_inflated() {
        let ours = rtc_token(&vector(RtcRole::Subscriber)).unwrap();
        assert!(ours.starts_with("007"));
        assert_eq!(inflate(&ours), inflate(OFFICIAL));
    }

    #[test]
    fn publishers_get_every_privilege_and_a_different_signature() {
        let subscriber = rtc_token_content(&vector(RtcRole::Subscriber)).unwrap();
        let publisher = rtc_token_content(&vector(RtcRole::Publisher)).unwrap();
        assert_ne!(subscriber[2..34], publisher[2..34]);
        assert_eq!(publisher.len(), subscriber.len() + 3 * 6);
    }

    #[test]
    fn bad_credentials_and_channels_are_refused() {
        let mut request = vector(RtcRole::Subscriber);
        request.app_certificate = "not-a-certificate";
        assert_eq!(rtc_token(&request), Err(AgoraError::BadCredentials));
        let mut request = vector(RtcRole::Subscriber);
        request.channel = "";
        assert_eq!(rtc_token(&request), Err(AgoraError::BadChannel));
    }
}
