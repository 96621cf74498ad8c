//! The dry-run backend (default): records what would be done, changes nothing.
//!
//! It remembers the count it "set" per target, so the safety layer's step and cooldown
//! logic behaves exactly as with a real backend; before the first action the current count
//! is the one the recommendation reports.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::actuators::{Backend, BackendFuture, Observed};
use crate::recommend::policy::TargetPolicy;

/// Records intended changes; never calls anything.
#[derive(Debug, Default)]
pub struct DryRun {
    set: Mutex<BTreeMap<String, u32>>,
}

impl DryRun {
    /// A dry-run backend with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// The count last "set" for `target`, if any.
    pub fn replicas(&self, target: &str) -> Option<u32> {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
            .copied()
    }
}

impl Backend for DryRun {
    fn name(&self) -> &str {
        "dry_run"
    }

    fn observe<'a>(&'a self, target: &'a TargetPolicy) -> BackendFuture<'a, Observed> {
        let replicas = self.replicas(&target.name);
        Box::pin(async move {
            Ok(Observed {
                replicas,
                min: None,
                max: None,
            })
        })
    }

    fn scale<'a>(&'a self, target: &'a TargetPolicy, from: u32, to: u32) -> BackendFuture<'a, ()> {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target.name.clone(), to);
        tracing::info!(target = %target.name, from, to, "dry run: would scale");
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembers_what_it_would_have_set() {
        let d = DryRun::new();
        let t = TargetPolicy::example("web", 1.0, 1, 10);
        assert_eq!(d.observe(&t).await.expect("observe").replicas, None);
        d.scale(&t, 2, 5).await.expect("scale");
        assert_eq!(d.observe(&t).await.expect("observe").replicas, Some(5));
        assert_eq!(d.replicas("other"), None);
    }
}
