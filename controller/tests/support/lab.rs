//! The engine side of every driver test: devices in a temporary store,
//! their credentials in a file, an engine over the store, and helpers that
//! validate YAML specs and run them as one transaction. A test's own `Lab`
//! holds its simulator and derefs to this.

use std::collections::BTreeMap;

use rampart_controller::{
    model::{
        DocFormat, SourceDoc, Validator,
        device::{Device, Platform},
        spec::{API_VERSION, ServiceSpec},
    },
    store::Store,
    txn::{Change, Engine, EngineConfig, EngineError},
};

/// Store, engine, validator and inventory of one test.
pub struct Harness {
    /// The engine under test.
    pub engine: Engine,
    /// Validates the test's YAML.
    pub validator: Validator,
    /// The devices, as stored.
    pub inventory: BTreeMap<String, Device>,
    /// Holds credentials and known_hosts files.
    pub dir: tempfile::TempDir,
}

/// Writes `line` (`user:secret`) to `dir/file` and returns the device's
/// `credentials_ref` for it.
#[must_use]
pub fn credentials(dir: &tempfile::TempDir, file: &str, line: &str) -> String {
    let path = dir.path().join(file);
    std::fs::write(&path, format!("{line}\n")).unwrap();
    format!("file:{}", path.display())
}

/// An inventory device.
#[must_use]
pub fn device(
    name: &str,
    platform: Platform,
    address: String,
    credentials_ref: &str,
    labels: &[(&str, &str)],
) -> Device {
    Device {
        name: name.to_owned(),
        platform,
        address,
        credentials_ref: credentials_ref.to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        created_unix: 0,
    }
}

impl Harness {
    /// `devices` stored, and an engine over them with `config`.
    #[must_use]
    pub fn new(dir: tempfile::TempDir, devices: Vec<Device>, config: EngineConfig) -> Harness {
        let store = Store::temporary().unwrap();
        for d in &devices {
            store.put_device(d, false).unwrap();
        }
        Harness {
            engine: Engine::new(store, config),
            validator: Validator::new().unwrap(),
            inventory: devices.into_iter().map(|d| (d.name.clone(), d)).collect(),
            dir,
        }
    }

    /// The one spec of a YAML document, validated against the inventory.
    #[must_use]
    pub fn spec(&self, yaml: &str) -> (ServiceSpec, String) {
        let doc = SourceDoc {
            text: yaml,
            format: DocFormat::Yaml,
            name: "test.yaml",
        };
        let mut v = self.validator.validate(&doc, &self.inventory).unwrap();
        (v.remove(0).spec, API_VERSION.to_owned())
    }

    /// Applies `apply` and deletes `delete` (`tenant/name`) in one
    /// transaction.
    ///
    /// # Errors
    /// The engine's.
    pub async fn run(&self, apply: &[&str], delete: &[&str]) -> Result<(), EngineError> {
        let planned = self.engine.plan(
            Change {
                apply: apply.iter().map(|y| self.spec(y)).collect(),
                delete: delete.iter().map(|s| (*s).to_owned()).collect(),
            },
            "test",
        )?;
        self.engine.execute(planned).await.map(|_| ())
    }
}

/// `impl Deref<Target = Harness>` (and `DerefMut`) for a test's `Lab`
/// whose field `h` is its harness.
#[macro_export]
macro_rules! deref_harness {
    ($lab:ty) => {
        impl std::ops::Deref for $lab {
            type Target = support::lab::Harness;
            fn deref(&self) -> &Self::Target {
                &self.h
            }
        }
        impl std::ops::DerefMut for $lab {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.h
            }
        }
    };
}
