//! Latency charts (cumulative distributions) as SVG files, for `--svg DIR`.

use std::path::Path;

use plotters::prelude::*;

use crate::percentiles::Samples;

pub(super) type ChartResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Colours told apart by colour-blind readers too (Okabe-Ito).
pub(super) const PALETTE: [RGBColor; 4] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
];

/// One line of a chart: its legend and its samples (milliseconds).
pub(crate) struct Series<'a> {
    pub(crate) label: &'a str,
    pub(crate) samples: &'a Samples,
}

/// Writes the cumulative distribution of each series to `path`: x is the
/// latency in milliseconds (log scale), y the share of samples at or below
/// it.
pub(crate) fn cdf_svg(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[Series<'_>],
) -> ChartResult<()> {
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.samples.values().iter().copied())
        .fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return Err(format!("no samples for the chart {title}").into());
    }
    // Logarithmic: a sub-millisecond curve and a 50 ms one on one chart.
    let x_range = (lo.max(0.001) * 0.9..hi.max(0.002) * 1.1).log_scale();
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(x_range, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("share of samples at or below")
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let values = s.samples.values();
        let n = values.len() as f64;
        let points = values
            .iter()
            .enumerate()
            .map(|(rank, v)| (v.max(0.001), (rank + 1) as f64 / n));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
            .label(format!("{} (p50 {:.2} ms)", s.label, s.samples.pct(50.0)))
            .legend(legend_line(colour));
    }
    draw_legend(&mut chart)?;
    root.present()?;
    Ok(())
}

/// A line's entry in the legend: a short stroke of its colour.
pub(super) fn legend_line(colour: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
}

/// The legend of a chart's lines, in its lower right corner.
pub(super) fn draw_legend<'a, DB, CT>(chart: &mut ChartContext<'a, DB, CT>) -> ChartResult<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: plotters::coord::CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
