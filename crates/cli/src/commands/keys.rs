//! `pesachama keys`: the anon and service-role API keys for the configured JWT secret.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::{Global, KeysArgs};
use crate::output;

/// Keys are issued at a fixed instant, so the same secret always gives the same keys and a
/// `.env` file written once stays valid.
const ISSUED_AT: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

pub fn run(global: &Global, args: &KeysArgs) -> anyhow::Result<ExitCode> {
    let secret = jwt_secret(global)?;
    let project_ref = project_ref(global.supabase_url.as_deref());
    let anon = pesachama_api::keys::api_key(secret.as_bytes(), &project_ref, "anon", ISSUED_AT)?;
    let service =
        pesachama_api::keys::api_key(secret.as_bytes(), &project_ref, "service_role", ISSUED_AT)?;
    if args.json {
        output::json(&serde_json::json!({ "anon": anon, "service_role": service }))?;
    } else {
        output::line(&format!("anon: {anon}"));
        output::line(&format!("service_role: {service}"));
    }
    Ok(ExitCode::SUCCESS)
}

/// `SUPABASE_JWT_SECRET` when set. Otherwise, in the embedded default, the secret kept in the
/// data folder (made on first use); with a `DATABASE_URL` and no secret there is nothing to sign with.
pub fn jwt_secret(global: &Global) -> anyhow::Result<String> {
    if let Some(secret) = &global.jwt_secret {
        anyhow::ensure!(
            secret.len() >= 32,
            "SUPABASE_JWT_SECRET must be at least 32 characters (it is {})",
            secret.len()
        );
        return Ok(secret.clone());
    }
    anyhow::ensure!(
        global.database_url.is_none(),
        "SUPABASE_JWT_SECRET is not set (it is required with DATABASE_URL; find it in the Supabase dashboard under Settings > API)"
    );
    embedded_secret(&global.data_dir)
}

fn embedded_secret(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("jwt_secret");
    match fs::read_to_string(&path) {
        Ok(secret) => return Ok(secret.trim().to_owned()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    }
    fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let secret = hex::encode(bytes);
    // create_new: if another process made it meanwhile, theirs wins and we read it.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(secret)
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(fs::read_to_string(&path)?.trim().to_owned())
        }
        Err(err) => Err(err).with_context(|| format!("writing {}", path.display())),
    }
}

/// The project ref is the first label of a Supabase URL's host; `local` otherwise.
fn project_ref(supabase_url: Option<&str>) -> String {
    supabase_url
        .and_then(|url| url::Url::parse(url).ok())
        .and_then(|url| {
            url.host_str()
                .map(|host| host.split('.').next().unwrap_or(host).to_owned())
        })
        .filter(|label| !label.is_empty() && label != "localhost" && label != "127")
        .unwrap_or_else(|| "local".to_owned())
}

#[cfg(test)]
mod tests {
    use super::project_ref;

    #[test]
    fn project_ref_is_the_first_label_of_a_supabase_host() {
        assert_eq!(
            project_ref(Some("https://abcdefgh.supabase.co")),
            "abcdefgh"
        );
        assert_eq!(project_ref(Some("http://localhost:54321")), "local");
        assert_eq!(project_ref(None), "local");
    }
}
