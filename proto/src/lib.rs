//! Rampart's wire types: the management API (rampartd ⇄ rampartctl), the host
//! policy (rampartd → rampart-agent) and their gRPC service stubs.
//!
//! One crate so the two daemons and the CLI can never disagree on a message.

#![allow(
    missing_docs,
    reason = "generated code; the .proto files carry the docs"
)]
#![allow(
    clippy::all,
    clippy::pedantic,
    clippy::allow_attributes_without_reason,
    reason = "generated code"
)]

/// Version 1 of the API.
pub mod v1 {
    tonic::include_proto!("rampart.v1");

    /// Encoded `FileDescriptorSet` of every Rampart proto, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("rampart_descriptor");
}

/// Serde adapters so enum fields of hand-written policy files read as words
/// (`permit`, `ingress`) instead of the i32 that prost stores.
pub mod serde_enum {
    macro_rules! enum_adapter {
        ($module:ident, $ty:ty, $prefix:literal) => {
            /// Serde adapter for an i32-backed prost enum field.
            pub mod $module {
                use serde::{Deserialize, Deserializer, Serializer, de::Error};

                /// Writes the lower-case name without the enum prefix.
                pub fn serialize<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
                    let name = <$ty>::try_from(*v)
                        .map(|e| {
                            e.as_str_name()
                                .trim_start_matches($prefix)
                                .to_ascii_lowercase()
                        })
                        .unwrap_or_else(|_| v.to_string());
                    s.serialize_str(&name)
                }

                /// Accepts `permit`, `PERMIT` or `ACTION_PERMIT`.
                pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
                    let raw = String::deserialize(d)?;
                    let upper = raw.to_ascii_uppercase().replace('-', "_");
                    let full = if upper.starts_with($prefix) {
                        upper
                    } else {
                        format!("{}{}", $prefix, upper)
                    };
                    <$ty>::from_str_name(&full)
                        .filter(|e| *e as i32 != 0)
                        .map(|e| e as i32)
                        .ok_or_else(|| D::Error::custom(format!("unknown value {raw:?}")))
                }
            }
        };
    }
    enum_adapter!(action, crate::v1::Action, "ACTION_");
    enum_adapter!(direction, crate::v1::Direction, "DIRECTION_");
    enum_adapter!(
        forwarding_mode,
        crate::v1::ForwardingMode,
        "FORWARDING_MODE_"
    );
    enum_adapter!(
        health_check_kind,
        crate::v1::HealthCheckKind,
        "HEALTH_CHECK_KIND_"
    );

    /// Serde adapter for an IP protocol number that hand-written files may
    /// also spell `tcp`, `udp`, `icmp` or `icmpv6`; written as the number.
    pub mod ip_protocol {
        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        /// Writes the number.
        pub fn serialize<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u32(*v)
        }

        #[derive(Deserialize)]
        #[serde(untagged)]
        enum NumOrName {
            Num(u32),
            Name(String),
        }

        /// Accepts a number or a protocol name.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
            match NumOrName::deserialize(d)? {
                NumOrName::Num(n) => Ok(n),
                NumOrName::Name(n) => match n.to_ascii_lowercase().as_str() {
                    "tcp" => Ok(6),
                    "udp" => Ok(17),
                    "icmp" => Ok(1),
                    "icmpv6" | "ipv6-icmp" => Ok(58),
                    other => other.parse::<u32>().map_err(|_| {
                        D::Error::custom(format!(
                            "unknown protocol {n:?} (expected tcp, udp or a number)"
                        ))
                    }),
                },
            }
        }
    }
}
