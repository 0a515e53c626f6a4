//! Which region this instance runs in, and which region holds the primary.

use std::fmt;

/// The region used when the environment names none, so that a laptop run
/// behaves as a single-region primary.
pub const DEFAULT_REGION: &str = "local";

/// Region identity: pure data, no I/O.
///
/// ```
/// use fly_rpc::Regions;
///
/// let lax = Regions::new("lax", "syd");
/// assert_eq!(lax.my_region(), "lax");
/// assert!(!lax.is_primary());
/// assert!(Regions::new("syd", "syd").is_primary());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Regions {
    my_region: String,
    primary_region: String,
}

impl Regions {
    /// Regions given in code (tests, apps configured without env).
    pub fn new(my_region: impl Into<String>, primary_region: impl Into<String>) -> Self {
        Regions {
            my_region: my_region.into(),
            primary_region: primary_region.into(),
        }
    }

    /// Reads the process environment: this region is `FLY_REGION`, else
    /// `MY_REGION`, else `local`; the primary region is `PRIMARY_REGION`,
    /// else `local`. Empty values count as unset.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Regions::from_env`] but with any variable lookup, so callers can
    /// read from a config map instead of the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Regions {
            my_region: get("FLY_REGION")
                .or_else(|| get("MY_REGION"))
                .unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            primary_region: get("PRIMARY_REGION").unwrap_or_else(|| DEFAULT_REGION.to_owned()),
        }
    }

    /// The region this instance runs in.
    pub fn my_region(&self) -> &str {
        &self.my_region
    }

    /// The region of the primary database.
    pub fn primary_region(&self) -> &str {
        &self.primary_region
    }

    /// Whether this instance runs in the primary region.
    pub fn is_primary(&self) -> bool {
        self.my_region == self.primary_region
    }
}

impl fmt::Display for Regions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (primary: {})", self.my_region, self.primary_region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn regions(vars: &[(&str, &str)]) -> Regions {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Regions::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_to_local_primary() {
        let r = regions(&[]);
        assert_eq!(r.my_region(), "local");
        assert_eq!(r.primary_region(), "local");
        assert!(r.is_primary());
    }

    #[test]
    fn fly_region_wins_over_my_region() {
        let r = regions(&[
            ("FLY_REGION", "lax"),
            ("MY_REGION", "fra"),
            ("PRIMARY_REGION", "syd"),
        ]);
        assert_eq!(r.my_region(), "lax");
        assert!(!r.is_primary());
        let r = regions(&[("MY_REGION", "fra"), ("PRIMARY_REGION", "fra")]);
        assert_eq!(r.my_region(), "fra");
        assert!(r.is_primary());
    }

    #[test]
    fn empty_values_count_as_unset() {
        let r = regions(&[
            ("FLY_REGION", ""),
            ("MY_REGION", " syd "),
            ("PRIMARY_REGION", ""),
        ]);
        assert_eq!(r.my_region(), "syd");
        assert_eq!(r.primary_region(), "local");
        assert!(!r.is_primary());
    }
}
