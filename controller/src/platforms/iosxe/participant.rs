//! One device's side of a two-phase transaction over NETCONF.
//!
//! The ssh2 session is blocking, so every step runs on the blocking pool and
//! the session is handed back and forth; the session (and with it the
//! candidate lock) lives for the whole transaction.
//!
//! Phases: [`prepare`](IosXeParticipant::prepare) locks the candidate,
//! discards stale edits and stages the edit with `test-then-set` (the
//! device validates it here — a separate `<validate>` is not used because
//! some servers drop candidate edits on it); [`commit`](IosXeParticipant::commit)
//! commits, confirmed when the device supports `:confirmed-commit`, so a
//! controller that dies before [`confirm`](IosXeParticipant::confirm) leaves
//! the device to roll itself back; [`abort`](IosXeParticipant::abort) and
//! [`cancel`](IosXeParticipant::cancel) undo the two phases.

use std::time::Duration;

use crate::transport::netconf::{
    NetconfError, Session, SessionConfig,
    ops::{Commit, Datastore, EditConfig, ErrorOption, Filter, TestOption},
};

/// A participant's failure, with the device it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{device}: {stage}: {source}")]
pub struct ParticipantError {
    /// Inventory name.
    pub device: String,
    /// `connect`, `lock`, `edit-config`, `commit`, ...
    pub stage: &'static str,
    /// The NETCONF error (typed `rpc-error`s included).
    #[source]
    pub source: NetconfError,
}

impl ParticipantError {
    /// The YANG paths the device named in its `rpc-error`s.
    #[must_use]
    pub fn paths(&self) -> Vec<String> {
        self.source
            .rpc_errors()
            .iter()
            .filter_map(|e| e.path.clone())
            .collect()
    }
}

/// Where a participant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Connected, nothing staged.
    Idle,
    /// Candidate locked and edited.
    Prepared,
    /// Committed, waiting for confirmation.
    CommittedUnconfirmed,
    /// Committed for good.
    Done,
}

/// A NETCONF device taking part in a transaction.
pub struct IosXeParticipant {
    device: String,
    session: Option<Session>,
    stage: Stage,
    confirmed_commit: bool,
    confirm_timeout: Duration,
}

fn err(device: &str, stage: &'static str) -> impl FnOnce(NetconfError) -> ParticipantError {
    let device = device.to_owned();
    move |source| ParticipantError {
        device,
        stage,
        source,
    }
}

impl IosXeParticipant {
    /// Connects (blocking work on the blocking pool).
    ///
    /// # Errors
    /// Connection, authentication or host-key failures.
    pub async fn connect(
        device: &str,
        config: SessionConfig,
        confirm_timeout: Duration,
    ) -> Result<Self, ParticipantError> {
        let name = device.to_owned();
        let session = tokio::task::spawn_blocking(move || Session::connect(&config))
            .await
            .map_err(|e| ParticipantError {
                device: name.clone(),
                stage: "connect",
                source: NetconfError::Io(std::io::Error::other(e.to_string())),
            })?
            .map_err(err(device, "connect"))?;
        let confirmed_commit = session.capabilities().confirmed_commit();
        Ok(Self {
            device: device.to_owned(),
            session: Some(session),
            stage: Stage::Idle,
            confirmed_commit,
            confirm_timeout,
        })
    }

    /// The inventory name of the device.
    #[must_use]
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Whether commits are confirmed (device-side rollback on controller loss).
    #[must_use]
    pub fn uses_confirmed_commit(&self) -> bool {
        self.confirmed_commit
    }

    /// Current stage.
    #[must_use]
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Runs `f` on the session on the blocking pool.
    async fn with<T: Send + 'static>(
        &mut self,
        stage: &'static str,
        f: impl FnOnce(&mut Session) -> Result<T, NetconfError> + Send + 'static,
    ) -> Result<T, ParticipantError> {
        let Some(mut session) = self.session.take() else {
            return Err(ParticipantError {
                device: self.device.clone(),
                stage,
                source: NetconfError::Closed { mid_message: false },
            });
        };
        let (session, res) = tokio::task::spawn_blocking(move || {
            let res = f(&mut session);
            (session, res)
        })
        .await
        .map_err(|e| ParticipantError {
            device: self.device.clone(),
            stage,
            source: NetconfError::Io(std::io::Error::other(e.to_string())),
        })?;
        // A fatal error leaves the session unusable: drop it.
        match &res {
            Err(e) if e.is_fatal() => {}
            _ => self.session = Some(session),
        }
        res.map_err(err(&self.device, stage))
    }

    /// Locks the candidate and stages `config` (a `<config>` element).
    ///
    /// # Errors
    /// Lock contention, or the device refusing the edit (with its paths).
    pub async fn prepare(&mut self, config: String) -> Result<(), ParticipantError> {
        self.with("lock", |s| s.lock(Datastore::Candidate)).await?;
        self.with("discard-changes", Session::discard_changes)
            .await?;
        let rollback = self
            .session
            .as_ref()
            .is_some_and(|s| s.capabilities().rollback_on_error());
        let validate = self
            .session
            .as_ref()
            .is_some_and(|s| s.capabilities().validate());
        self.with("edit-config", move |s| {
            let mut edit = EditConfig::new(Datastore::Candidate, config);
            if rollback {
                edit.error_option = Some(ErrorOption::RollbackOnError);
            }
            if validate {
                edit.test_option = Some(TestOption::TestThenSet);
            }
            s.edit_config(edit)
        })
        .await?;
        self.stage = Stage::Prepared;
        Ok(())
    }

    /// Commits the staged edit (confirmed when supported).
    ///
    /// # Errors
    /// The device refusing the commit or dying.
    pub async fn commit(&mut self) -> Result<(), ParticipantError> {
        let commit = if self.confirmed_commit {
            Commit {
                confirmed: true,
                confirm_timeout: Some(
                    u32::try_from(self.confirm_timeout.as_secs())
                        .unwrap_or(600)
                        .max(1),
                ),
                ..Commit::default()
            }
        } else {
            Commit::default()
        };
        self.with("commit", move |s| s.commit(commit)).await?;
        self.stage = if self.confirmed_commit {
            Stage::CommittedUnconfirmed
        } else {
            Stage::Done
        };
        Ok(())
    }

    /// Confirms a confirmed commit and releases the lock.
    ///
    /// # Errors
    /// The device refusing or dying (it then rolls back by itself).
    pub async fn confirm(&mut self) -> Result<(), ParticipantError> {
        if self.stage == Stage::CommittedUnconfirmed {
            self.with("confirm", |s| s.commit(Commit::default()))
                .await?;
        }
        self.stage = Stage::Done;
        self.release().await;
        Ok(())
    }

    /// Undoes a prepare: discard the candidate and unlock. Best effort.
    pub async fn abort(&mut self) {
        if self.session.is_some() {
            let _ = self.with("discard-changes", Session::discard_changes).await;
        }
        self.release().await;
        self.stage = Stage::Idle;
    }

    /// Cancels an unconfirmed commit (the device restores its previous
    /// running configuration). Returns false when there was nothing to
    /// cancel this way (a plain commit needs compensation instead).
    pub async fn cancel(&mut self) -> bool {
        if self.stage != Stage::CommittedUnconfirmed {
            return false;
        }
        let ok = self
            .with("cancel-commit", |s| s.cancel_commit(None))
            .await
            .is_ok();
        self.release().await;
        self.stage = Stage::Idle;
        ok
    }

    /// Reads the running configuration under `subtree` (a filter body).
    ///
    /// # Errors
    /// The device refusing or dying.
    pub async fn running(&mut self, subtree: String) -> Result<String, ParticipantError> {
        self.with("get-config", move |s| {
            s.get_config(Datastore::Running, Some(Filter::Subtree(subtree)))
        })
        .await
    }

    async fn release(&mut self) {
        if self.session.is_some() {
            let _ = self
                .with("unlock", |s| s.unlock(Datastore::Candidate))
                .await;
        }
    }

    /// Applies `config` in one go (lock, edit, commit, unlock): used for
    /// compensation and repairs, outside the two-phase protocol.
    ///
    /// # Errors
    /// Any step failing (the candidate is discarded then).
    pub async fn apply_now(&mut self, config: String) -> Result<(), ParticipantError> {
        let confirmed = std::mem::replace(&mut self.confirmed_commit, false);
        let res = async {
            self.prepare(config).await?;
            self.commit().await
        }
        .await;
        self.confirmed_commit = confirmed;
        if res.is_err() {
            self.abort().await;
        } else {
            self.release().await;
            self.stage = Stage::Done;
        }
        res
    }
}
