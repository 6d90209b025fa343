//! The catalog options `run`, `query` and `maintain` share: which catalog
//! holds the tables and how to reach it.

use std::path::Path;

use anyhow::bail;
use authpulse::lakehouse::{GlueConfig, WarehouseConfig};
use clap::{Args, ValueEnum};

#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Catalog")]
pub struct CatalogArgs {
    /// Which catalog holds the tables: `embedded` (a SQLite catalog and the
    /// data under --output; no setup) or `glue` (AWS Glue Data Catalog, data
    /// on S3 under --warehouse).
    #[arg(long, value_enum, default_value_t = CatalogKind::Embedded, env = "AUTHPULSE_CATALOG")]
    pub catalog: CatalogKind,
    /// With --catalog glue: the S3 location new tables are created under
    /// (`s3://bucket/prefix`; the bucket must exist).
    #[arg(long, env = "AUTHPULSE_WAREHOUSE", value_name = "S3_URL")]
    pub warehouse: Option<String>,
    /// AWS region. Default: AWS_REGION, then AWS_DEFAULT_REGION.
    #[arg(long, value_name = "REGION")]
    pub aws_region: Option<String>,
    /// Glue endpoint, for a VPC endpoint or a Glue-compatible server.
    /// Default: AWS_ENDPOINT_URL_GLUE, then AWS_ENDPOINT_URL, then AWS's.
    #[arg(long, value_name = "URL")]
    pub glue_endpoint: Option<String>,
    /// S3 endpoint, for a VPC endpoint or an S3-compatible server.
    /// Default: AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, then AWS's.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Address S3 by path (`ENDPOINT/bucket/key`) rather than by virtual
    /// host; most S3-compatible servers need this.
    #[arg(long)]
    pub s3_path_style: bool,
    /// The Glue catalog id (an AWS account id) when it is not the
    /// credentials' own account's.
    #[arg(long, value_name = "ACCOUNT_ID")]
    pub glue_catalog_id: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum CatalogKind {
    /// SQLite catalog and local data files under --output.
    #[default]
    Embedded,
    /// AWS Glue Data Catalog, data files on S3.
    Glue,
}

impl CatalogArgs {
    /// The warehouse these options name; `output` is the embedded one's
    /// directory.
    pub fn config(&self, output: &Path) -> anyhow::Result<WarehouseConfig> {
        self.config_with(output, |name| std::env::var(name).ok())
    }

    fn config_with(
        &self,
        output: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<WarehouseConfig> {
        let first_env = |names: &[&str]| {
            names
                .iter()
                .find_map(|name| env(name).filter(|value| !value.is_empty()))
        };
        match self.catalog {
            CatalogKind::Embedded => {
                if let Some(warehouse) = &self.warehouse {
                    bail!(
                        "--warehouse {warehouse} is for --catalog glue; the embedded catalog keeps its tables under --output"
                    );
                }
                Ok(WarehouseConfig::embedded(output))
            }
            CatalogKind::Glue => {
                let Some(warehouse) = self.warehouse.clone() else {
                    bail!(
                        "--catalog glue needs --warehouse s3://bucket/prefix (or AUTHPULSE_WAREHOUSE)"
                    );
                };
                let Some(region) = self
                    .aws_region
                    .clone()
                    .or_else(|| first_env(&["AWS_REGION", "AWS_DEFAULT_REGION"]))
                else {
                    bail!("--catalog glue needs an AWS region: --aws-region, or AWS_REGION");
                };
                let config = GlueConfig {
                    warehouse: warehouse.trim_end_matches('/').to_string(),
                    region,
                    glue_endpoint: self
                        .glue_endpoint
                        .clone()
                        .or_else(|| first_env(&["AWS_ENDPOINT_URL_GLUE", "AWS_ENDPOINT_URL"])),
                    s3_endpoint: self
                        .s3_endpoint
                        .clone()
                        .or_else(|| first_env(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])),
                    s3_path_style: self.s3_path_style,
                    catalog_id: self.glue_catalog_id.clone(),
                };
                config.validate().map_err(anyhow::Error::msg)?;
                Ok(WarehouseConfig::Glue(config))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glue() -> CatalogArgs {
        CatalogArgs {
            catalog: CatalogKind::Glue,
            warehouse: Some("s3://lake/authpulse/".into()),
            ..CatalogArgs::default()
        }
    }

    #[test]
    fn embedded_is_the_output_directory() {
        let config = CatalogArgs::default()
            .config_with(Path::new("out"), |_| None)
            .unwrap();
        assert_eq!(config, WarehouseConfig::embedded(Path::new("out")));
        let args = CatalogArgs {
            warehouse: Some("s3://x".into()),
            ..CatalogArgs::default()
        };
        let error = args.config_with(Path::new("out"), |_| None).unwrap_err();
        assert!(error.to_string().contains("--catalog glue"), "{error}");
    }

    #[test]
    fn glue_takes_region_and_endpoints_from_the_aws_environment() {
        let env = |name: &str| match name {
            "AWS_DEFAULT_REGION" => Some("eu-central-1".to_string()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:5000".to_string()),
            "AWS_ENDPOINT_URL_S3" => Some("http://127.0.0.1:9000".to_string()),
            _ => None,
        };
        let WarehouseConfig::Glue(config) = glue().config_with(Path::new("out"), env).unwrap()
        else {
            panic!("not glue");
        };
        assert_eq!(config.warehouse, "s3://lake/authpulse");
        assert_eq!(config.region, "eu-central-1");
        assert_eq!(
            config.glue_endpoint.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(config.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));

        let mut args = glue();
        args.aws_region = Some("us-west-2".into());
        args.s3_endpoint = Some("http://s3.local:1".into());
        let WarehouseConfig::Glue(config) = args.config_with(Path::new("out"), env).unwrap() else {
            panic!("not glue");
        };
        assert_eq!(
            config.region, "us-west-2",
            "the flag wins over the environment"
        );
        assert_eq!(config.s3_endpoint.as_deref(), Some("http://s3.local:1"));
    }

    #[test]
    fn glue_without_warehouse_or_region_is_refused_clearly() {
        let mut args = glue();
        args.warehouse = None;
        let error = args.config_with(Path::new("out"), |_| None).unwrap_err();
        assert!(error.to_string().contains("--warehouse"), "{error}");
        let error = glue().config_with(Path::new("out"), |_| None).unwrap_err();
        assert!(error.to_string().contains("AWS_REGION"), "{error}");
        let mut args = glue();
        args.warehouse = Some("lake/authpulse".into());
        args.aws_region = Some("us-east-1".into());
        let error = args.config_with(Path::new("out"), |_| None).unwrap_err();
        assert!(error.to_string().contains("s3://"), "{error}");
    }
}
