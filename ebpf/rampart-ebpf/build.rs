//! Rebuild the eBPF object when the linker changes (a new bpf-linker can
//! produce different code), as aya-template does.

fn main() {
    let linker = which::which("bpf-linker").ok().or_else(|| {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/bin/bpf-linker");
        p.exists().then_some(p)
    });
    if let Some(p) = linker {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}
