//! Upload and download throughput through `/storage/v1` against raw filesystem writes and
//! reads of the same bytes in the same folder, in the same run.
//!
//! The baseline does what the storage path does to the disk (write a temporary file, fsync,
//! rename into place; read it back), without HTTP, JWT, RLS or the database row. One client
//! at a time, so the figures are per-request cost, not parallel capacity.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pesachama_api::storage_api::{DEFAULT_FILE_SIZE_LIMIT, StorageSettings};
use pesachama_storage::{FsStore, ObjectStore};
use pesachama_testkit::{TestApp, TestDb};

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
const OFFICIAL: &str = "wanjiku.kamau@example.co.ke";

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

pub async fn run(phase: Duration) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = TestApp::config();
    config.storage = Some(StorageSettings {
        backend: ObjectStore::Fs(Arc::new(FsStore::new(dir.path().join("objects"))?)),
        file_size_limit: DEFAULT_FILE_SIZE_LIMIT,
    });
    let app = TestApp::spawn_with(TestDb::new().await, config).await;
    pesachama_store::seed_demo(&app.db.pool).await?;
    let token = app.demo_token(OFFICIAL).await;
    println!(
        "each timed phase {phase:?}; one client; folder {}",
        dir.path().display()
    );
    println!(
        "| object size | API upload MB/s | raw write MB/s | ratio | API download MB/s | raw read MB/s | ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for size in [64 * 1024, 1024 * 1024, 16 * 1024 * 1024] {
        let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let raw_dir = dir.path().join(format!("raw-{size}"));
        std::fs::create_dir_all(&raw_dir)?;

        // Raw: temp file, fsync, rename; then read each back.
        let started = Instant::now();
        let mut raw_count = 0u64;
        while started.elapsed() < phase {
            let temp = raw_dir.join(format!("tmp-{raw_count}"));
            let mut file = tokio::fs::File::create(&temp).await?;
            tokio::io::AsyncWriteExt::write_all(&mut file, &bytes).await?;
            file.sync_all().await?;
            tokio::fs::rename(&temp, raw_dir.join(format!("obj-{raw_count}"))).await?;
            raw_count += 1;
        }
        let raw_write = mb_per_s(raw_count * size as u64, started.elapsed());
        let started = Instant::now();
        let mut reads = 0u64;
        while started.elapsed() < phase {
            let data = tokio::fs::read(raw_dir.join(format!("obj-{}", reads % raw_count))).await?;
            anyhow::ensure!(data.len() == bytes.len(), "short raw read");
            reads += 1;
        }
        let raw_read = mb_per_s(reads * size as u64, started.elapsed());

        // Through the API as a chama official: RLS check, spool, row, rename, commit.
        let started = Instant::now();
        let mut uploads = 0u64;
        while started.elapsed() < phase {
            let url = app.url(&format!(
                "/storage/v1/object/documents/{UMOJA}/bench-{size}/{uploads}.pdf"
            ));
            let response = app
                .client
                .post(url)
                .bearer_auth(&token)
                .header("content-type", "application/pdf")
                .body(bytes.clone())
                .send()
                .await?;
            anyhow::ensure!(
                response.status() == 200,
                "upload failed: {}",
                response.status()
            );
            uploads += 1;
        }
        let api_upload = mb_per_s(uploads * size as u64, started.elapsed());
        let started = Instant::now();
        let mut downloads = 0u64;
        while started.elapsed() < phase {
            let url = app.url(&format!(
                "/storage/v1/object/authenticated/documents/{UMOJA}/bench-{size}/{}.pdf",
                downloads % uploads
            ));
            let response = app.client.get(url).bearer_auth(&token).send().await?;
            anyhow::ensure!(
                response.status() == 200,
                "download failed: {}",
                response.status()
            );
            let data = response.bytes().await?;
            anyhow::ensure!(data.len() == bytes.len(), "short download");
            downloads += 1;
        }
        let api_download = mb_per_s(downloads * size as u64, started.elapsed());
        println!(
            "| {} KiB | {api_upload:.1} | {raw_write:.1} | {:.2} | {api_download:.1} | {raw_read:.1} | {:.2} |",
            size / 1024,
            api_upload / raw_write,
            api_download / raw_read
        );
    }
    Ok(())
}
