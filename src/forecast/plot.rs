//! SVG plots of forecasts against actuals with the p10–p90 band (plotters, SVG backend only).

use std::path::Path;

use plotters::prelude::*;

use crate::forecast::error::{ForecastError, Result};

/// What one plot shows: recent history, then rolling forecasts over the test part.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlotData {
    /// Plot title.
    pub title: String,
    /// Steps per hour, to label the x axis in hours (x = 0 at the first forecast target).
    pub steps_per_hour: f64,
    /// History values shown before the forecast start (oldest first).
    pub history: Vec<f64>,
    /// Actual values over the forecast targets.
    pub actual: Vec<f64>,
    /// Point forecasts for the same targets.
    pub mean: Vec<f64>,
    /// Lower band (p10).
    pub p10: Vec<f64>,
    /// Upper band (p90).
    pub p90: Vec<f64>,
}

fn err(e: impl std::fmt::Display) -> ForecastError {
    ForecastError::Plot(e.to_string())
}

/// Renders `d` as an SVG file at `path` (1200×500 px).
///
/// Non-finite values are left out of the lines; an empty forecast is an error.
pub fn plot_forecast(path: &Path, d: &PlotData) -> Result<()> {
    if d.mean.is_empty() {
        return Err(ForecastError::Plot("nothing to plot".into()));
    }
    let sph = if d.steps_per_hour > 0.0 {
        d.steps_per_hour
    } else {
        1.0
    };
    let nh = d.history.len() as f64;
    let x_of = |i: f64| i / sph;
    let all = d
        .history
        .iter()
        .chain(&d.actual)
        .chain(&d.mean)
        .chain(&d.p10)
        .chain(&d.p90)
        .copied()
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in all {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return Err(ForecastError::Plot("no finite value to plot".into()));
    }
    if hi - lo < 1e-12 {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * 0.05;
    let x0 = x_of(-nh);
    let x1 = x_of(d.mean.len() as f64);
    let root = SVGBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&d.title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, (lo - pad)..(hi + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("hours from the first forecast target")
        .disable_mesh()
        .draw()
        .map_err(err)?;
    let band_color = RGBColor(100, 149, 237).mix(0.3);
    let mut band: Vec<(f64, f64)> = Vec::new();
    for (i, v) in d.p90.iter().enumerate() {
        if v.is_finite() {
            band.push((x_of(i as f64), *v));
        }
    }
    for (i, v) in d.p10.iter().enumerate().rev() {
        if v.is_finite() {
            band.push((x_of(i as f64), *v));
        }
    }
    if band.len() >= 3 {
        chart
            .draw_series(std::iter::once(Polygon::new(band, band_color.filled())))
            .map_err(err)?
            .label("p10–p90")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 15, y + 5)], band_color.filled())
            });
    }
    let hist = d
        .history
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, v)| (x_of(i as f64 - nh), *v));
    chart
        .draw_series(LineSeries::new(hist, BLACK.mix(0.5)))
        .map_err(err)?
        .label("history")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK.mix(0.5)));
    let act = d
        .actual
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, v)| (x_of(i as f64), *v));
    chart
        .draw_series(LineSeries::new(act, &BLACK))
        .map_err(err)?
        .label("actual")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
    let mean = d
        .mean
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, v)| (x_of(i as f64), *v));
    chart
        .draw_series(LineSeries::new(mean, &RED))
        .map_err(err)?
        .label("forecast")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_svg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svg");
        let d = PlotData {
            title: "t".into(),
            steps_per_hour: 12.0,
            history: vec![1.0, 2.0, f64::NAN, 3.0],
            actual: vec![2.0, 3.0, 4.0],
            mean: vec![2.5, 2.5, 2.5],
            p10: vec![1.0, 1.0, 1.0],
            p90: vec![4.0, 4.0, 4.0],
        };
        plot_forecast(&path, &d).unwrap();
        let s = std::fs::read_to_string(&path).unwrap();
        assert!(s.starts_with("<svg") && s.contains("polyline"));
        let empty = PlotData::default();
        assert!(plot_forecast(&path, &empty).is_err());
    }
}
