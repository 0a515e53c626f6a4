//! The crate's metrics, recorded with the `metrics` crate when the
//! `metrics` feature is on (the default) and compiled away when it is off.
//! The macros take `metrics`'s own forms: a name, then `label => value`
//! pairs; with the feature off the labels are still evaluated (so nothing
//! computed for them goes unused) and dropped.

#[cfg(feature = "metrics")]
macro_rules! counter {
    ($($args:tt)*) => { ::metrics::counter!($($args)*) };
}

#[cfg(feature = "metrics")]
macro_rules! histogram {
    ($($args:tt)*) => { ::metrics::histogram!($($args)*) };
}

#[cfg(not(feature = "metrics"))]
macro_rules! counter {
    ($name:expr $(, $key:expr => $value:expr)* $(,)?) => {{
        let _ = $name;
        $(let _ = ($key, $value);)*
        $crate::metric::Noop
    }};
}

#[cfg(not(feature = "metrics"))]
macro_rules! histogram {
    ($name:expr $(, $key:expr => $value:expr)* $(,)?) => {{
        let _ = $name;
        $(let _ = ($key, $value);)*
        $crate::metric::Noop
    }};
}

pub(crate) use {counter, histogram};

/// What the macros return without the `metrics` feature.
#[cfg(not(feature = "metrics"))]
pub(crate) struct Noop;

#[cfg(not(feature = "metrics"))]
impl Noop {
    pub(crate) fn increment(&self, _: u64) {}
    pub(crate) fn record(&self, _: f64) {}
}
