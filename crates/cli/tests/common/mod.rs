//! Running the real `pesachama` binary.

#![allow(dead_code, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

pub fn pesachama() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pesachama"));
    // The tests choose the database themselves.
    command
        .env_remove("DATABASE_URL")
        .env_remove("SUPABASE_JWT_SECRET")
        .env_remove("API_PORT");
    command
}

pub fn run(args: &[&str]) -> Output {
    pesachama().args(args).output().expect("run pesachama")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Removes an embedded cluster's files, including a server home kept under the temp folder.
pub fn remove_cluster_files(state_dir: &Path) {
    if let Ok(text) = std::fs::read_to_string(state_dir.join("cluster.json"))
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(home) = value["server_home"].as_str()
    {
        let _ = std::fs::remove_dir_all(home);
    }
    let _ = std::fs::remove_dir_all(state_dir);
}
