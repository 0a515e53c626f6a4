//! The soak's chart: each app's resident memory and open descriptors, the
//! record table's rows and the write p99, over the run (one SVG).

use std::path::Path;

use plotters::prelude::*;

use super::charts::{ChartResult, PALETTE, draw_legend, legend_line};
use super::soak_report::SoakReport;

/// One panel: a title, a y label, and lines of (minute, value).
struct Panel {
    title: &'static str,
    y_label: &'static str,
    lines: Vec<(String, Vec<(f64, f64)>)>,
}

pub(super) fn svg(path: &Path, report: &SoakReport) -> ChartResult<()> {
    let minute = |at_s: u64| at_s as f64 / 60.0;
    let apps = report.samples.first().map_or(0, |s| s.apps.len());
    let per_app = |value: fn(&super::app_usage::AppUsage) -> f64| {
        (0..apps)
            .map(|i| {
                let label = report.samples[0].apps[i].region.clone();
                let points = report
                    .samples
                    .iter()
                    .map(|s| (minute(s.at_s), value(&s.apps[i])))
                    .collect();
                (label, points)
            })
            .collect::<Vec<_>>()
    };
    let panels = [
        Panel {
            title: "resident memory of each app",
            y_label: "MiB",
            lines: per_app(|a| a.rss_mib),
        },
        Panel {
            title: "open descriptors of each app",
            y_label: "descriptors",
            lines: per_app(|a| a.fds as f64),
        },
        Panel {
            title: "exactly-once records on the primary",
            y_label: "rows",
            lines: vec![(
                "fly_postgres_requests".into(),
                report
                    .samples
                    .iter()
                    .filter_map(|s| Some((minute(s.at_s), s.record_rows? as f64)))
                    .collect(),
            )],
        },
        Panel {
            title: "write p99 per minute (all regions)",
            y_label: "ms",
            lines: vec![(
                "write p99".into(),
                report
                    .write_p99_by_minute()
                    .into_iter()
                    .map(|(m, p99)| (m as f64 - 0.5, p99))
                    .collect(),
            )],
        },
    ];
    let root = SVGBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    for (area, panel) in root.split_evenly((2, 2)).iter().zip(&panels) {
        draw(area, panel)?;
    }
    root.present()?;
    Ok(())
}

fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
) -> ChartResult<()>
where
    DB::ErrorType: 'static,
{
    let points = || panel.lines.iter().flat_map(|(_, p)| p.iter().copied());
    let x_max = points().map(|(x, _)| x).fold(1.0_f64, f64::max);
    let y_max = points().map(|(_, y)| y).fold(1.0_f64, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc(panel.y_label)
        .draw()?;
    for (i, (label, line)) in panel.lines.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                line.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(label.as_str())
            .legend(legend_line(colour));
    }
    draw_legend(&mut chart)
}
