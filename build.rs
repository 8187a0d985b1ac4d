//! Build script: the git commit the operator is built from, for `hypersync_build_info{git_sha}`.
//! `HYPERSYNC_GIT_SHA` in the environment wins (the Dockerfile passes it, its context has no .git);
//! otherwise `git rev-parse`, and "unknown" where there is no repository (a source tarball).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=HYPERSYNC_GIT_SHA");
    let sha = std::env::var("HYPERSYNC_GIT_SHA")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    // Rebuild when HEAD moves: the HEAD file (a branch switch) and the branch's ref (a commit).
    // (Only files that exist: cargo reruns the script on every build for a missing one.)
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    }
    for path in watched.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rustc-env=HYPERSYNC_GIT_SHA={sha}");
}
