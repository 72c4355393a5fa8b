//! A real NETCONF peer for tests, and the Cisco models it enforces.
//!
//! [`yang`] validates payloads with libyang against the vendor models in
//! `../shared/yang` (read in place, never copied into the project).

use std::path::PathBuf;

/// Root of the shared vendor models (`../shared/yang` from the project).
#[must_use]
pub fn shared_yang_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/yang"))
}

/// The two IOS-XE releases payloads are checked against.
pub const RELEASES: [&str; 2] = ["cisco-xe-16.9.3", "cisco-xe-17.12.1"];

/// libyang validation against the Cisco IOS-XE models.
pub mod yang {
    use yang3::{
        context::{Context, ContextFlags},
        data::{
            Data, DataFormat, DataParserFlags, DataPrinterFlags, DataTree, DataValidationFlags,
        },
    };

    /// Modules loaded for validation: the native tree, the augments the
    /// renderer uses, and `ietf-netconf` for the `nc:operation` attribute.
    pub const MODULES: [&str; 5] = [
        "ietf-netconf",
        "Cisco-IOS-XE-native",
        "Cisco-IOS-XE-acl",
        "Cisco-IOS-XE-nat",
        "Cisco-IOS-XE-bgp",
    ];

    /// Whether libyang can load `module` of `release`: 17.12.1's
    /// `Cisco-IOS-XE-bgp` has a cyclic `when` that libyang (Debian's 2.1 and
    /// the bundled 3.x alike) refuses.
    #[must_use]
    pub fn loadable(release: &str, module: &str) -> bool {
        !(release == "cisco-xe-17.12.1" && module == "Cisco-IOS-XE-bgp")
    }

    /// A libyang context with the models of `release` (a folder of
    /// `../shared/yang`).
    ///
    /// # Panics
    /// When the models are missing or do not load.
    #[must_use]
    pub fn context(release: &str) -> Context {
        let dir = super::shared_yang_dir().join(release);
        assert!(dir.is_dir(), "vendor models missing: {}", dir.display());
        let mut ctx = Context::new(ContextFlags::NO_YANGLIBRARY).expect("libyang context");
        ctx.set_searchdir(&dir).expect("search dir");
        for m in MODULES.into_iter().filter(|m| loadable(release, m)) {
            ctx.load_module(m, None, &[])
                .unwrap_or_else(|e| panic!("{release}: loading {m}: {e}"));
        }
        ctx
    }

    /// The `<native>` element inside a NETCONF `<config>` payload.
    ///
    /// # Panics
    /// When `config` is not a `<config>` element.
    #[must_use]
    pub fn config_inner(config: &str) -> &str {
        let start = config.find('>').expect("<config> start tag") + 1;
        let end = config.rfind("</config>").expect("</config> end tag");
        &config[start..end]
    }

    /// Parses and validates `data` (XML without the `<config>` wrapper, or
    /// RFC 7951 JSON) as configuration; unknown nodes are errors. Returns the
    /// data as canonical JSON so two encodings can be compared.
    ///
    /// # Errors
    /// libyang's message and data path.
    pub fn validate(ctx: &Context, data: &str, format: DataFormat) -> Result<String, String> {
        let tree = DataTree::parse_string(
            ctx,
            data,
            format,
            DataParserFlags::STRICT | DataParserFlags::NO_STATE,
            DataValidationFlags::NO_STATE | DataValidationFlags::PRESENT,
        )
        .map_err(|e| {
            format!(
                "{} (at {})",
                e.msg.unwrap_or_default(),
                e.path.unwrap_or_default()
            )
        })?;
        tree.print_string(DataFormat::JSON, DataPrinterFlags::WITH_SIBLINGS)
            .map_err(|e| e.to_string())
    }
}
