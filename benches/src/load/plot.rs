//! `--plot FILE.svg`: the latency percentile distribution of one or more
//! reports (plotters, SVG backend). The x axis is the percentile on a
//! "nines" scale (0 %, 90 %, 99 %, 99.9 %, ... evenly spaced), the y axis
//! the latency in µs, so the tail gets as much room as the median.

use std::path::Path;

use plotters::prelude::*;

use super::error::LoadError;
use super::report::{nines, percentile_of_nines, Report};

/// Picture size in pixels.
const SIZE: (u32, u32) = (960, 540);
/// Headroom above the highest latency.
const Y_HEADROOM: f64 = 1.1;
/// Font size of the caption and of the axis labels.
const CAPTION_FONT: u32 = 22;
const LABEL_FONT: u32 = 14;
/// Margins and label areas, pixels.
const MARGIN: u32 = 16;
const X_LABEL_AREA: u32 = 48;
const Y_LABEL_AREA: u32 = 72;
/// Latency ticks below this many µs get a decimal.
const SMALL_LATENCY_US: f64 = 10.0;
/// Line width of a series.
const STROKE: u32 = 2;

/// The label of a point on the nines axis: `99.9%`.
fn nines_label(n: f64) -> String {
    let p = percentile_of_nines(n);
    let digits = (n.ceil() as usize).saturating_sub(2);
    format!("{p:.digits$}%")
}

/// The label of a latency tick: whole µs, one decimal below 10 µs.
fn latency_label(us: f64) -> String {
    if us.abs() >= SMALL_LATENCY_US {
        format!("{us:.0}")
    } else {
        format!("{us:.1}")
    }
}

/// Draws the percentile distributions of `series` (label, report) into
/// the SVG file `path`.
pub fn write_svg(path: &Path, series: &[(&str, &Report)]) -> Result<(), LoadError> {
    draw(path, series).map_err(|message| LoadError::Plot {
        path: path.to_owned(),
        message,
    })
}

fn draw(path: &Path, series: &[(&str, &Report)]) -> Result<(), String> {
    let points = |r: &Report| -> Vec<(f64, f64)> {
        r.distribution
            .iter()
            .map(|p| (nines(p.percentile), p.latency_us))
            .collect()
    };
    let x_max = series
        .iter()
        .flat_map(|(_, r)| points(r))
        .map(|(x, _)| x)
        .fold(1.0, f64::max)
        .ceil();
    let y_max = series
        .iter()
        .flat_map(|(_, r)| r.distribution.iter().map(|p| p.latency_us))
        .fold(1.0, f64::max)
        * Y_HEADROOM;
    let caption = match series {
        [(_, r)] => format!("{} ({})", r.target, r.shape()),
        _ => "latency by percentile".to_owned(),
    };

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", CAPTION_FONT))
        .margin(MARGIN)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| nines_label(*x))
        .y_label_formatter(&|y| latency_label(*y))
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .label_style(("sans-serif", LABEL_FONT))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (label, report)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points(report), color.stroke_width(STROKE)))
            .map_err(|e| e.to_string())?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_on_the_nines_axis() {
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(5.0), "99.999%");
        assert_eq!(latency_label(1000.0), "1000");
        assert_eq!(latency_label(2.5), "2.5");
    }
}
