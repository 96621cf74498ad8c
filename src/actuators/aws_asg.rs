//! The AWS Auto Scaling backend (`kind: aws_asg` targets).
//!
//! * reads the group with `DescribeAutoScalingGroups` (desired capacity, `MinSize`,
//!   `MaxSize`; the safety layer clamps to the group's bounds as well as the policy's);
//! * sets it with `SetDesiredCapacity`, passing `HonorCooldown` (default true), so AWS
//!   itself refuses a change while the group's cooldown runs (`ScalingActivityInProgress`).
//!
//! Credentials come from the standard AWS chain (environment, shared files, SSO, web
//! identity, ECS/EC2 metadata), optionally with a named profile or a credentials file; the
//! region is the target's `region`, else `actuators.aws.region`, else the chain's.
//! `endpoint_url` points the client elsewhere (moto in the tests, a VPC endpoint).

use std::time::Duration;

use aws_sdk_autoscaling::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::actuators::{
    ActuatorError, AwsActuatorConfig, Backend, BackendFuture, Observed, Result,
};
use crate::recommend::policy::TargetPolicy;

/// Sets an Auto Scaling group's desired capacity.
#[derive(Debug, Clone)]
pub struct AwsAsg {
    client: aws_sdk_autoscaling::Client,
    honor_cooldown: bool,
    region: String,
}

impl AwsAsg {
    /// Creates the client: `region` (the target's) wins over `cfg.region`, then the chain.
    /// Fails when no region can be found.
    pub async fn connect(cfg: &AwsActuatorConfig, region: Option<&str>) -> Result<AwsAsg> {
        let sdk = crate::aws::load(
            crate::aws::SdkOverrides {
                region: region.or(cfg.region.as_deref()),
                endpoint_url: cfg.endpoint_url.as_deref(),
                profile: cfg.profile.as_deref(),
                credentials_file: cfg.credentials_file.as_deref(),
            },
            aws_config::retry::RetryConfig::standard().with_max_attempts(cfg.max_attempts.max(1)),
            Duration::from_secs(cfg.timeout_secs.max(1)),
        )
        .await;
        let Some(region) = sdk.region().map(|r| r.to_string()) else {
            return Err(ActuatorError::Config(
                "no AWS region: set the target's `region`, `actuators.aws.region`, AWS_REGION or a profile region".into(),
            ));
        };
        Ok(AwsAsg {
            client: aws_sdk_autoscaling::Client::new(&sdk),
            honor_cooldown: cfg.honor_cooldown,
            region,
        })
    }

    /// The region the client talks to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The group's desired capacity and bounds; `NotFound` when it does not exist.
    pub async fn describe(&self, group: &str) -> Result<Observed> {
        let out = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeAutoScalingGroups", group, e))?;
        let Some(g) = out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(group))
        else {
            return Err(ActuatorError::NotFound(format!(
                "Auto Scaling group {group:?} does not exist in {}",
                self.region
            )));
        };
        let conv = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok());
        Ok(Observed {
            replicas: conv(g.desired_capacity()),
            min: conv(g.min_size()),
            max: conv(g.max_size()),
        })
    }

    /// `SetDesiredCapacity` with the configured `HonorCooldown`.
    pub async fn set_desired(&self, group: &str, desired: u32) -> Result<()> {
        let desired = i32::try_from(desired).map_err(|_| {
            ActuatorError::Config(format!(
                "desired capacity {desired} does not fit AWS's int32"
            ))
        })?;
        self.client
            .set_desired_capacity()
            .auto_scaling_group_name(group)
            .desired_capacity(desired)
            .honor_cooldown(self.honor_cooldown)
            .send()
            .await
            .map_err(|e| sdk_error("SetDesiredCapacity", group, e))?;
        Ok(())
    }
}

fn group_of(target: &TargetPolicy) -> Result<&str> {
    target
        .asg_name
        .as_deref()
        .ok_or_else(|| ActuatorError::Config(format!("target {:?} has no `asg_name`", target.name)))
}

/// Maps an SDK error to a clear [`ActuatorError`] naming the operation and the group.
fn sdk_error<E, R>(op: &str, group: &str, e: SdkError<E, R>) -> ActuatorError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let ctx = DisplayErrorContext(&e).to_string();
    match &e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = err.code().unwrap_or("unknown");
            let msg = err.message().unwrap_or("");
            let text = format!("{op} on {group:?}: {code}: {msg}");
            match code {
                "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
                    ActuatorError::Forbidden(text)
                }
                "InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken" => {
                    ActuatorError::Unauthorized(text)
                }
                "ScalingActivityInProgress" => ActuatorError::Api(format!(
                    "{text} (the group's cooldown or a running activity; HonorCooldown is on)"
                )),
                _ => ActuatorError::Api(text),
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            ActuatorError::Transport(format!("{op} on {group:?}: {ctx}"))
        }
        SdkError::ConstructionFailure(_) => {
            // Missing credentials surface here.
            ActuatorError::Credentials(format!("{op} on {group:?}: {ctx}"))
        }
        _ => ActuatorError::Api(format!("{op} on {group:?}: {ctx}")),
    }
}

impl Backend for AwsAsg {
    fn name(&self) -> &str {
        "aws_asg"
    }

    fn observe<'a>(&'a self, target: &'a TargetPolicy) -> BackendFuture<'a, Observed> {
        Box::pin(async move { self.describe(group_of(target)?).await })
    }

    fn scale<'a>(&'a self, target: &'a TargetPolicy, _from: u32, to: u32) -> BackendFuture<'a, ()> {
        Box::pin(async move { self.set_desired(group_of(target)?, to).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_endpoint_is_a_clear_transport_error() {
        // Port 9 (discard) on loopback is closed: connection refused, no panic.
        let cfg = AwsActuatorConfig {
            region: Some("us-east-1".into()),
            endpoint_url: Some("http://127.0.0.1:9".into()),
            credentials_file: None,
            max_attempts: 1,
            timeout_secs: 5,
            ..Default::default()
        };
        let a = AwsAsg::connect(&cfg, None).await.expect("client");
        assert_eq!(a.region(), "us-east-1");
        let mut t = TargetPolicy::example("batch", 1.0, 1, 10);
        let err = a.observe(&t).await.expect_err("no asg_name");
        assert!(matches!(err, ActuatorError::Config(_)), "{err}");
        t.asg_name = Some("batch-asg".into());
        let err = a.observe(&t).await.expect_err("nothing listens");
        let msg = err.to_string();
        assert!(msg.contains("DescribeAutoScalingGroups"), "{msg}");
        assert!(msg.contains("batch-asg"), "{msg}");
    }
}
