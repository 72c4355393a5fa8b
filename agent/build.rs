//! Builds the eBPF programs (`ebpf/rampart-ebpf`) for the bpf target with
//! aya-build and leaves the object in `OUT_DIR/rampart` for
//! `include_bytes_aligned!`.

#![allow(unsafe_code, reason = "std::env::set_var is unsafe in edition 2024")]

use std::path::Path;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .context("agent crate has a parent directory")?;
    let ebpf_dir = root.join("ebpf/rampart-ebpf");
    // bpf-linker is built into tools/ by scripts/install/bpf-linker.sh.
    let tools = root.join("tools/bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![tools];
    dirs.extend(std::env::split_paths(&path));
    let joined = std::env::join_paths(dirs).context("PATH is joinable")?;
    // These variables only reach the child cargo that aya-build spawns. RUSTC_BOOTSTRAP lets the
    // stable toolchain use -Z build-std=core for the bpf target, without
    // setting it for every crate of the workspace.
    #[allow(
        clippy::disallowed_methods,
        reason = "build script, single-threaded, child env only"
    )]
    // SAFETY: single-threaded build script.
    unsafe {
        std::env::set_var("PATH", joined);
        std::env::set_var("RUSTC_BOOTSTRAP", "1");
    }
    println!("cargo:rerun-if-changed={}", ebpf_dir.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("ebpf/rampart-common/src").display()
    );
    let ebpf_dir = ebpf_dir.to_str().context("utf-8 path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "rampart-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom("stable"),
    )
}
