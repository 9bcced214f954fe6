//! "Announce once, then mark sent": how a service publishes an effect that
//! is not tied to an input offset (a churn alert, a lifecycle transition)
//! exactly once per step, whoever evaluates it and however often.
//!
//! The entity's hash holds a step counter (`alert_n`, `stage_n`, ...) and
//! `sent_n`. A step is *won* with a compare-and-set on the hash
//! ([`StateStore::hset_if`]) that moves the counter: of several evaluators
//! (the handler, the sweep, a second replica) one wins and only the winner
//! publishes. After the broker acknowledged, `sent_n` is set to the step,
//! guarded by the counter still being that step. A step won but never
//! published (crash, broker error) shows as `sent_n < counter`, and the next
//! evaluation publishes it again with the same id ([`Announcement::send`]
//! once more).
use std::future::Future;

use mesh_store::{Slot, StateStore};

/// One entity's announcement counters: field `counter` and `sent_n` of
/// hash `key` in `slot`.
#[derive(Clone, Copy)]
pub struct Announcement<'a> {
    pub store: &'a StateStore,
    pub slot: Slot<'a>,
    pub key: &'a str,
    /// The step counter's field; `sent_n` follows it.
    pub counter: &'a str,
}

impl Announcement<'_> {
    /// Wins a step: sets `set` if every field of `guard` holds (the guard
    /// names the counter's current value). Only the winner publishes.
    pub async fn claim(
        &self,
        guard: &[(&str, Option<&str>)],
        set: &[(&str, &str)],
    ) -> mesh_store::Result<bool> {
        self.store.hset_if(self.slot, self.key, guard, set).await
    }

    /// Publishes step `n` (won now, or won earlier and not sent: `sent_n <
    /// n`), then records it sent. An error of `publish` leaves it unsent,
    /// for the next evaluation to send again with the same id.
    pub async fn send<E, Fut>(&self, n: u64, publish: impl FnOnce() -> Fut) -> Result<(), E>
    where
        Fut: Future<Output = Result<(), E>>,
        E: From<mesh_store::Error>,
    {
        publish().await?;
        self.mark_sent(n).await?;
        Ok(())
    }

    /// Records that step `n` was published, unless the counter moved on
    /// (then the newer step's own mark follows).
    pub async fn mark_sent(&self, n: u64) -> mesh_store::Result<()> {
        let n = n.to_string();
        self.store
            .hset_if(
                self.slot,
                self.key,
                &[(self.counter, Some(&n))],
                &[("sent_n", &n)],
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_store::MemoryStore;

    #[tokio::test]
    async fn a_step_is_published_once_and_an_unsent_one_again() {
        let store = StateStore::Memory(MemoryStore::new("t"));
        let slot = Slot {
            scope: "announce",
            partition: 0,
        };
        let a = Announcement {
            store: &store,
            slot,
            key: "u:x",
            counter: "n",
        };
        let guard = [("n", None)];
        let set = [("n", "1")];
        let mut published = 0;
        for _ in 0..2 {
            if a.claim(&guard, &set).await.unwrap() {
                a.send::<mesh_store::Error, _>(1, || {
                    published += 1;
                    async { Ok(()) }
                })
                .await
                .unwrap();
            }
        }
        assert_eq!(published, 1, "the second claim loses");
        let h = store.hgetall(slot, "u:x").await.unwrap();
        assert_eq!(h.get("sent_n").map(String::as_str), Some("1"));
        // Step 2 won but its publish failed: sent_n stays 1 until a resend.
        assert!(a.claim(&[("n", Some("1"))], &[("n", "2")]).await.unwrap());
        let failed = a
            .send(2, || async {
                Err(mesh_store::Error::Config("broker down".into()))
            })
            .await;
        assert!(failed.is_err());
        let h = store.hgetall(slot, "u:x").await.unwrap();
        assert_eq!(h.get("sent_n").map(String::as_str), Some("1"));
        a.send::<mesh_store::Error, _>(2, || async { Ok(()) })
            .await
            .unwrap();
        let h = store.hgetall(slot, "u:x").await.unwrap();
        assert_eq!(h.get("sent_n").map(String::as_str), Some("2"));
    }
}
