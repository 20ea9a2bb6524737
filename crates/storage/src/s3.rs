//! Objects in an S3-compatible store (AWS S3, MinIO, Supabase Storage's S3 endpoint, ...),
//! addressed path-style: `<endpoint>/<bucket>/<key>`. Uploads are spooled locally first, then
//! sent with a known length, so the store sees a plain single `PUT`.

use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use reqwest::{Method, StatusCode};

use crate::sigv4::{self, Credentials, UNSIGNED_PAYLOAD};
use crate::{BackendError, Download, Spooled};

/// `STORAGE_S3_*`.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `https://host[:port][/prefix]`, without the bucket.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Where uploads are spooled before they are sent.
    pub temp_dir: PathBuf,
}

#[derive(Debug)]
pub struct S3Store {
    endpoint: String,
    bucket: String,
    credentials: Credentials,
    temp: PathBuf,
    client: reqwest::Client,
}

impl S3Store {
    pub fn new(config: S3Config) -> std::io::Result<Self> {
        crate::private::create_dir_all(&config.temp_dir)?;
        Ok(Self {
            endpoint: config.endpoint.trim_end_matches('/').to_owned(),
            bucket: config.bucket,
            credentials: Credentials {
                access_key_id: config.access_key_id,
                secret_access_key: config.secret_access_key,
                region: config.region,
                service: "s3".to_owned(),
            },
            temp: config.temp_dir,
            client: reqwest::Client::new(),
        })
    }

    pub(crate) fn temp_dir(&self) -> &Path {
        &self.temp
    }

    fn url(&self, key: &str) -> Result<reqwest::Url, BackendError> {
        let raw = format!(
            "{}/{}/{}",
            self.endpoint,
            sigv4::uri_encode(&self.bucket, false),
            sigv4::uri_encode(key, true)
        );
        reqwest::Url::parse(&raw).map_err(|err| {
            BackendError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bad S3 URL {raw}: {err}"),
            ))
        })
    }

    /// A request with SigV4 headers for `extra` plus host, date and payload hash.
    fn signed(
        &self,
        method: Method,
        key: &str,
        extra: &[(String, String)],
    ) -> Result<reqwest::RequestBuilder, BackendError> {
        let url = self.url(key)?;
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => String::new(),
        };
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let mut headers = vec![
            ("host".to_owned(), host),
            (
                "x-amz-content-sha256".to_owned(),
                UNSIGNED_PAYLOAD.to_owned(),
            ),
            ("x-amz-date".to_owned(), amz_date.clone()),
        ];
        headers.extend_from_slice(extra);
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let authorization = sigv4::authorization(
            &self.credentials,
            &sigv4::Request {
                method: method.as_str(),
                uri: url.path(),
                query: &query,
                headers: &headers,
                payload_hash: UNSIGNED_PAYLOAD,
                amz_date: &amz_date,
            },
        );
        let mut builder = self.client.request(method, url);
        for (name, value) in headers.iter().filter(|(name, _)| name != "host") {
            builder = builder.header(name, value);
        }
        Ok(builder.header(reqwest::header::AUTHORIZATION, authorization))
    }

    async fn refused(response: reqwest::Response) -> BackendError {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        BackendError::S3 {
            status,
            body: body.chars().take(500).collect(),
        }
    }

    pub(crate) async fn commit(&self, spooled: Spooled, key: &str) -> Result<(), BackendError> {
        let file = tokio::fs::File::open(spooled.path()).await?;
        let body = futures_util::stream::try_unfold(file, |mut file| async move {
            use tokio::io::AsyncReadExt;
            let mut buffer = bytes::BytesMut::with_capacity(256 * 1024);
            let read = file.read_buf(&mut buffer).await?;
            Ok::<_, std::io::Error>((read > 0).then(|| (buffer.freeze(), file)))
        });
        let response = self
            .signed(Method::PUT, key, &[])?
            .header(reqwest::header::CONTENT_LENGTH, spooled.size)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Self::refused(response).await)
        }
        // `spooled` drops here: the local copy is removed whether or not the PUT succeeded.
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Download, BackendError> {
        let response = self.signed(Method::GET, key, &[])?.send().await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(BackendError::NotFound),
            _ => return Err(Self::refused(response).await),
        }
        let length = response.content_length().unwrap_or(0);
        let body = response.bytes_stream().map_err(std::io::Error::other);
        Ok(Download {
            length,
            body: Box::pin(body),
        })
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), BackendError> {
        let response = self.signed(Method::DELETE, key, &[])?.send().await?;
        match response.status() {
            status if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(Self::refused(response).await),
        }
    }

    /// Server-side copy (`x-amz-copy-source`): the bytes never pass through this process.
    pub(crate) async fn copy(&self, from: &str, to: &str) -> Result<(), BackendError> {
        let source = format!(
            "/{}/{}",
            sigv4::uri_encode(&self.bucket, false),
            sigv4::uri_encode(from, true)
        );
        let response = self
            .signed(Method::PUT, to, &[("x-amz-copy-source".to_owned(), source)])?
            .send()
            .await?;
        match response.status() {
            // S3 can answer 200 with an error document for a failed copy.
            StatusCode::OK => {
                let body = response.text().await?;
                if body.contains("<Error>") {
                    Err(BackendError::S3 { status: 200, body })
                } else {
                    Ok(())
                }
            }
            StatusCode::NOT_FOUND => Err(BackendError::NotFound),
            _ => Err(Self::refused(response).await),
        }
    }
}
