//! Embeds `supabase/migrations/*.sql` and `supabase/seed.sql` in the binary, so `pesachama`
//! deploys exactly the schema it was built with, and `supabase db push` reads the same files.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // Read at run time, not `env!` (baked in when this script is compiled): a target folder
    // copied to another checkout would otherwise keep embedding the first checkout's files.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    let root = Path::new(&manifest_dir).join("../../supabase");
    let migrations_dir = root.join("migrations");
    println!("cargo:rerun-if-changed={}", migrations_dir.display());
    println!("cargo:rerun-if-changed={}", root.join("seed.sql").display());

    let mut files: Vec<_> = std::fs::read_dir(&migrations_dir)
        .map(|dir| dir.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    files.retain(|path| path.extension().is_some_and(|ext| ext == "sql"));
    files.sort();

    let mut code = String::from(
        "/// The migrations, in the order they apply.\npub static EMBEDDED: &[Migration] = &[\n",
    );
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let (version, name) = stem.split_once('_').unwrap_or((stem, ""));
        assert!(
            version.len() == 14 && version.bytes().all(|b| b.is_ascii_digit()),
            "migration {} must be named <14-digit timestamp>_<name>.sql (Supabase CLI layout)",
            path.display()
        );
        let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        writeln!(
            code,
            "    Migration {{ version: {version:?}, name: {name:?}, sql: include_str!({:?}) }},",
            absolute.display().to_string()
        )
        .unwrap_or_default();
    }
    code.push_str("];\n");

    let seed = root.join("seed.sql");
    if seed.is_file() {
        let absolute = std::fs::canonicalize(&seed).unwrap_or(seed);
        writeln!(
            code,
            "/// Demo data.\npub static SEED: &str = include_str!({:?});",
            absolute.display().to_string()
        )
        .unwrap_or_default();
    } else {
        code.push_str("/// Demo data.\npub static SEED: &str = \"\";\n");
    }

    let out = Path::new(&std::env::var("OUT_DIR").unwrap_or_default()).join("embedded.rs");
    std::fs::write(out, code).unwrap_or_else(|err| panic!("writing embedded.rs: {err}"));
}
