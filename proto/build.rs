//! Compiles `rampart/v1/*.proto` into Rust with tonic-prost-build, and writes a
//! file descriptor set for gRPC server reflection.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let protos = [
        "rampart/v1/management.proto",
        "rampart/v1/policy.proto",
        "rampart/v1/agent.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("rampart_descriptor.bin"))
        // Policy messages are also written by hand (standalone agents), so they
        // read and write as YAML/JSON with the proto field names.
        .type_attribute(
            ".rampart.v1.HostPolicy",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        )
        .type_attribute(
            ".rampart.v1.InterfacePolicy",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        )
        .type_attribute(
            ".rampart.v1.FirewallRule",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        )
        .type_attribute(
            ".rampart.v1.PortRange",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        )
        .type_attribute(
            ".rampart.v1.VirtualService",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        )
        .type_attribute(
            ".rampart.v1.LbBackend",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        )
        .type_attribute(
            ".rampart.v1.HealthCheck",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        )
        .field_attribute(
            ".rampart.v1.VirtualService.mode",
            "#[serde(with = \"crate::serde_enum::forwarding_mode\")]",
        )
        .field_attribute(
            ".rampart.v1.VirtualService.protocol",
            "#[serde(with = \"crate::serde_enum::ip_protocol\")]",
        )
        .field_attribute(
            ".rampart.v1.HealthCheck.kind",
            "#[serde(with = \"crate::serde_enum::health_check_kind\")]",
        )
        .field_attribute(
            ".rampart.v1.FirewallRule.action",
            "#[serde(with = \"crate::serde_enum::action\")]",
        )
        .field_attribute(
            ".rampart.v1.InterfacePolicy.default_action",
            "#[serde(with = \"crate::serde_enum::action\")]",
        )
        .field_attribute(
            ".rampart.v1.InterfacePolicy.direction",
            "#[serde(with = \"crate::serde_enum::direction\")]",
        )
        .compile_protos(&protos, &["."])?;
    Ok(())
}
