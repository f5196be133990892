//! `report.svg`: RSS over time with each compaction drawn as a shaded interval, and WAL debt on
//! a second axis — the picture that explained the original OOM.

use std::path::Path;

use plotters::chart::DualCoordChartContext;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::{Sample, TimedEvent};
use strata::Event;

/// Compaction intervals (start, end seconds) from a timeline of events.
pub fn compaction_intervals(events: &[TimedEvent]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut open: Option<f64> = None;
    for e in events {
        match e.event {
            Event::CompactionStart { .. } => open = Some(e.t_s),
            Event::CompactionEnd { .. } | Event::CompactionFailed { .. } => {
                if let Some(start) = open.take() {
                    out.push((start, e.t_s));
                }
            }
            _ => {}
        }
    }
    out
}

/// The chart: RSS (MiB) on the left axis, WAL debt (MiB) on the right, both over seconds.
type Chart<'a, 'b> = DualCoordChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<RangedCoordf64, RangedCoordf64>,
    Cartesian2d<RangedCoordf64, RangedCoordf64>,
>;

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// The ends of the axes: seconds, and RSS and WAL debt in MiB with 15% headroom.
struct Bounds {
    t_end: f64,
    rss_max: f64,
    debt_max: f64,
}

impl Bounds {
    fn of(samples: &[Sample], events: &[TimedEvent]) -> Bounds {
        let t_end = samples
            .iter()
            .map(|s| s.t_s)
            .fold(0.0, f64::max)
            .max(events.iter().map(|e| e.t_s).fold(0.0, f64::max))
            .max(1.0);
        let rss_max = samples
            .iter()
            .map(|s| mib(s.rss.vm_rss.max(s.rss.vm_hwm)))
            .fold(1.0, f64::max)
            * 1.15;
        let debt_max = samples
            .iter()
            .map(|s| mib(s.wal_debt_bytes))
            .fold(1.0, f64::max)
            * 1.15;
        Bounds {
            t_end,
            rss_max,
            debt_max,
        }
    }
}

/// Draws the report into `path` (SVG).
pub fn draw(
    path: &Path,
    title: &str,
    samples: &[Sample],
    events: &[TimedEvent],
) -> Result<(), Box<dyn std::error::Error>> {
    let bounds = Bounds::of(samples, events);
    let root = SVGBackend::new(path, (1100, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(70)
        .build_cartesian_2d(0.0..bounds.t_end, 0.0..bounds.rss_max)?
        .set_secondary_coord(0.0..bounds.t_end, 0.0..bounds.debt_max);
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("RSS (MiB)")
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("WAL debt (MiB)")
        .draw()?;
    draw_compactions(&mut chart, events, &bounds)?;
    draw_lines(&mut chart, samples)?;
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Each compaction as a shaded interval the height of the RSS axis, with a minimum width so
/// that short ones still show.
fn draw_compactions(
    chart: &mut Chart<'_, '_>,
    events: &[TimedEvent],
    bounds: &Bounds,
) -> Result<(), Box<dyn std::error::Error>> {
    let Bounds { t_end, rss_max, .. } = *bounds;
    let shade = RGBColor(255, 170, 60).mix(0.25);
    chart
        .draw_series(compaction_intervals(events).into_iter().map(|(a, b)| {
            Rectangle::new(
                [(a, 0.0), (b.max(a + t_end / 2000.0), rss_max)],
                shade.filled(),
            )
        }))?
        .label("compaction")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], shade.filled()));
    Ok(())
}

/// The RSS and RssAnon lines on the left axis, WAL debt on the right.
fn draw_lines(
    chart: &mut Chart<'_, '_>,
    samples: &[Sample],
) -> Result<(), Box<dyn std::error::Error>> {
    chart
        .draw_series(LineSeries::new(
            samples.iter().map(|s| (s.t_s, mib(s.rss.vm_rss))),
            BLUE.stroke_width(2),
        ))?
        .label("RSS (VmRSS)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            samples.iter().map(|s| (s.t_s, mib(s.rss.rss_anon))),
            GREEN.stroke_width(1),
        ))?
        .label("RssAnon")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], GREEN));
    chart
        .draw_secondary_series(LineSeries::new(
            samples.iter().map(|s| (s.t_s, mib(s.wal_debt_bytes))),
            RED.stroke_width(1),
        ))?
        .label("WAL debt (right axis)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
    Ok(())
}
