//! AWS SDK configuration shared by the CloudWatch source and the Auto Scaling
//! actuator: the standard credential chain and region lookup, with the
//! overrides scalecast's config offers (`region`, `endpoint_url`, `profile`,
//! `credentials_file`).

use std::path::Path;
use std::time::Duration;

/// Overrides on top of the standard AWS chain.
#[derive(Debug, Clone, Copy, Default)]
pub struct SdkOverrides<'a> {
    /// Region (else `AWS_REGION`, the profile, ...).
    pub region: Option<&'a str>,
    /// Endpoint override (moto, LocalStack, VPC endpoints).
    pub endpoint_url: Option<&'a str>,
    /// Named profile.
    pub profile: Option<&'a str>,
    /// Extra shared-credentials file.
    pub credentials_file: Option<&'a Path>,
}

/// Loads an SDK configuration with `retry` and a per-attempt timeout.
pub async fn load(
    o: SdkOverrides<'_>,
    retry: aws_config::retry::RetryConfig,
    attempt_timeout: Duration,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(attempt_timeout)
                .build(),
        );
    if let Some(r) = o.region {
        loader = loader.region(aws_config::Region::new(r.to_string()));
    }
    if let Some(u) = o.endpoint_url {
        loader = loader.endpoint_url(u.to_string());
    }
    if let Some(p) = o.profile {
        loader = loader.profile_name(p.to_string());
    }
    if let Some(f) = o.credentials_file {
        #[allow(deprecated)]
        let files = aws_config::profile::profile_file::ProfileFiles::builder()
            .include_default_config_file(true)
            .with_file(
                aws_config::profile::profile_file::ProfileFileKind::Credentials,
                f,
            )
            .build();
        loader = loader.profile_files(files);
    }
    loader.load().await
}
