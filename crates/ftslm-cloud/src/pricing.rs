//! What an hour of the training instance costs, for the figure `cloud stop`
//! prints: the configured `aws.ec2.hourly_price_usd` when set, else a built-in
//! table of on-demand prices for the GPU families ftslm is meant for.

use serde::Serialize;

/// Where the table's prices come from, shown next to every cost computed from it.
pub const TABLE_SOURCE: &str =
    "AWS EC2 on-demand pricing, us-east-1, Linux, as of mid-2025 (approximate)";

/// Hourly on-demand prices in USD, us-east-1, Linux, shared tenancy.
///
/// Source: the AWS EC2 On-Demand pricing page
/// (https://aws.amazon.com/ec2/pricing/on-demand/), as published in mid-2025,
/// after the June 2025 reduction of P4d/P4de/P5 prices. Approximate: AWS
/// changes prices and other regions differ, so check the AWS pricing page and
/// set `aws.ec2.hourly_price_usd` when the figure matters.
const ON_DEMAND_US_EAST_1: &[(&str, f64)] = &[
    // g4dn: NVIDIA T4 (16 GB)
    ("g4dn.xlarge", 0.526),
    ("g4dn.2xlarge", 0.752),
    ("g4dn.4xlarge", 1.204),
    ("g4dn.8xlarge", 2.176),
    ("g4dn.12xlarge", 3.912),
    ("g4dn.16xlarge", 4.352),
    ("g4dn.metal", 7.824),
    // g5: NVIDIA A10G (24 GB)
    ("g5.xlarge", 1.006),
    ("g5.2xlarge", 1.212),
    ("g5.4xlarge", 1.624),
    ("g5.8xlarge", 2.448),
    ("g5.12xlarge", 5.672),
    ("g5.16xlarge", 4.096),
    ("g5.24xlarge", 8.144),
    ("g5.48xlarge", 16.288),
    // g6: NVIDIA L4 (24 GB)
    ("g6.xlarge", 0.8048),
    ("g6.2xlarge", 0.9776),
    ("g6.4xlarge", 1.3232),
    ("g6.8xlarge", 2.0144),
    ("g6.12xlarge", 4.6016),
    ("g6.16xlarge", 3.3968),
    ("g6.24xlarge", 6.6752),
    ("g6.48xlarge", 13.3504),
    // g6e: NVIDIA L40S (48 GB)
    ("g6e.xlarge", 1.861),
    ("g6e.2xlarge", 2.242),
    ("g6e.4xlarge", 3.004),
    ("g6e.8xlarge", 4.529),
    ("g6e.12xlarge", 10.493),
    ("g6e.16xlarge", 7.577),
    ("g6e.24xlarge", 15.066),
    ("g6e.48xlarge", 30.131),
    // p4d/p4de: 8 × NVIDIA A100 (40 / 80 GB)
    ("p4d.24xlarge", 21.96),
    ("p4de.24xlarge", 27.45),
    // p5: 8 × NVIDIA H100 (80 GB)
    ("p5.48xlarge", 55.04),
];

/// Where an hourly price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceSource {
    /// `aws.ec2.hourly_price_usd`.
    Config,
    /// The built-in table ([`TABLE_SOURCE`]).
    Table,
}

impl std::fmt::Display for PriceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PriceSource::Config => f.write_str("aws.ec2.hourly_price_usd"),
            PriceSource::Table => f.write_str(TABLE_SOURCE),
        }
    }
}

/// The table's price for `instance_type`, if it has one.
pub fn table_price(instance_type: &str) -> Option<f64> {
    let wanted = instance_type.trim().to_ascii_lowercase();
    ON_DEMAND_US_EAST_1
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, price)| *price)
}

/// The hourly price of `instance_type`: the configured one (`configured`, from
/// `aws.ec2.hourly_price_usd`) wins over the table. `None` when neither knows
/// it, or when the configured value is not a price (negative, NaN): a cost
/// computed from a wrong figure is worse than none.
pub fn hourly_price(instance_type: &str, configured: Option<f64>) -> Option<(f64, PriceSource)> {
    match configured {
        Some(price) if price.is_finite() && price >= 0.0 => Some((price, PriceSource::Config)),
        Some(_) => None,
        None => table_price(instance_type).map(|price| (price, PriceSource::Table)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_the_issue_names_has_a_price() {
        for family in ["g4dn", "g5", "g6", "g6e", "p4d", "p4de", "p5"] {
            assert!(
                ON_DEMAND_US_EAST_1
                    .iter()
                    .any(|(name, _)| name.split('.').next() == Some(family)),
                "{family}"
            );
        }
        for (name, price) in ON_DEMAND_US_EAST_1 {
            assert!(*price > 0.0 && price.is_finite(), "{name}");
        }
    }

    #[test]
    fn larger_single_gpu_sizes_cost_more() {
        // Within g6, xlarge < 2xlarge < 4xlarge < 8xlarge (same single GPU, more CPU).
        let sizes = ["g6.xlarge", "g6.2xlarge", "g6.4xlarge", "g6.8xlarge"];
        let prices: Vec<f64> = sizes.iter().map(|s| table_price(s).unwrap()).collect();
        assert!(prices.windows(2).all(|w| w[0] < w[1]), "{prices:?}");
    }

    #[test]
    fn configured_price_wins_and_bad_ones_are_refused() {
        let table = table_price("g6.2xlarge").unwrap();
        assert_eq!(
            hourly_price("g6.2xlarge", None),
            Some((table, PriceSource::Table))
        );
        assert_eq!(
            hourly_price("G6.2XLARGE ", None),
            Some((table, PriceSource::Table))
        );
        assert_eq!(
            hourly_price("g6.2xlarge", Some(0.5)),
            Some((0.5, PriceSource::Config))
        );
        assert_eq!(
            hourly_price("x9.unknown", Some(2.0)),
            Some((2.0, PriceSource::Config))
        );
        assert_eq!(hourly_price("x9.unknown", None), None);
        assert_eq!(hourly_price("g6.2xlarge", Some(-1.0)), None);
        assert_eq!(hourly_price("g6.2xlarge", Some(f64::NAN)), None);
    }
}
