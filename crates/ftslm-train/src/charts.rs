//! Training charts as PNG and SVG (plotters, text in an embedded DejaVu
//! Sans): loss against step with the evaluations marked and the best one
//! ringed, learning rate, gradient norm and tokens per second. Several runs
//! overlay in one chart with a legend.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::history::RunHistory;
use crate::metrics::MetricRecord;

const SIZE: (u32, u32) = (1200, 700);
const FONT: &str = "sans-serif";

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("cannot draw {path}: {problem}")]
    Draw { path: PathBuf, problem: String },
    #[error("the embedded chart font did not load")]
    Font,
    #[error("no run has any {0} logged; there is nothing to chart")]
    Empty(&'static str),
}

/// The run colours, distinguishable in print and for common colour blindness.
const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
];

fn font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok());
    if ok {
        Ok(())
    } else {
        Err(ChartError::Font)
    }
}

/// One chart: a quantity of the training logs against the step.
struct Quantity {
    file: &'static str,
    title: &'static str,
    y_label: &'static str,
    field: fn(&MetricRecord) -> Option<f64>,
    log_scale_hint: bool,
}

const QUANTITIES: [Quantity; 4] = [
    Quantity {
        file: "loss",
        title: "Loss",
        y_label: "loss (nats per target token)",
        field: |r| r.loss,
        log_scale_hint: false,
    },
    Quantity {
        file: "learning_rate",
        title: "Learning rate",
        y_label: "learning rate",
        field: |r| r.learning_rate,
        log_scale_hint: false,
    },
    Quantity {
        file: "grad_norm",
        title: "Gradient norm before clipping",
        y_label: "global L2 norm",
        field: |r| r.grad_norm,
        log_scale_hint: true,
    },
    Quantity {
        file: "tokens_per_second",
        title: "Training speed",
        y_label: "tokens per second",
        field: |r| r.tokens_per_second,
        log_scale_hint: false,
    },
];

/// The files `write_charts` may write into its folder.
pub fn chart_files() -> Vec<String> {
    QUANTITIES
        .iter()
        .flat_map(|q| [format!("{}.png", q.file), format!("{}.svg", q.file)])
        .collect()
}

/// Writes `loss`, `learning_rate`, `grad_norm` and `tokens_per_second` as
/// `.png` and `.svg` into `dir` (created if needed), overlaying `runs`.
/// Returns the files written. A quantity no run logged is skipped.
pub fn write_charts(runs: &[RunHistory], dir: &Path) -> Result<Vec<PathBuf>, ChartError> {
    font()?;
    std::fs::create_dir_all(dir).map_err(|e| ChartError::Draw {
        path: dir.to_path_buf(),
        problem: e.to_string(),
    })?;
    let mut written = Vec::new();
    for quantity in &QUANTITIES {
        let series: Vec<(String, Vec<(u64, f64)>)> = runs
            .iter()
            .map(|r| (r.name.clone(), r.series(quantity.field)))
            .filter(|(_, points)| !points.is_empty())
            .collect();
        let evals: Vec<Vec<(u64, f64)>> = if quantity.file == "loss" {
            runs.iter()
                .map(|r| {
                    r.evaluations()
                        .iter()
                        .map(|e| (e.step, e.eval_loss))
                        .collect()
                })
                .collect()
        } else {
            Vec::new()
        };
        if series.is_empty() && evals.iter().all(Vec::is_empty) {
            if quantity.file == "loss" {
                return Err(ChartError::Empty("loss"));
            }
            continue;
        }
        let chart = Chart {
            quantity,
            series: &series,
            evals: &evals,
            runs,
        };
        let png = dir.join(format!("{}.png", quantity.file));
        let svg = dir.join(format!("{}.svg", quantity.file));
        let draw_error = |path: &Path, e: String| ChartError::Draw {
            path: path.to_path_buf(),
            problem: e,
        };
        {
            let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
            chart.draw(&root).map_err(|e| draw_error(&png, e))?;
            root.present()
                .map_err(|e| draw_error(&png, e.to_string()))?;
        }
        {
            let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
            chart.draw(&root).map_err(|e| draw_error(&svg, e))?;
            root.present()
                .map_err(|e| draw_error(&svg, e.to_string()))?;
        }
        written.push(png);
        written.push(svg);
    }
    Ok(written)
}

struct Chart<'a> {
    quantity: &'a Quantity,
    series: &'a [(String, Vec<(u64, f64)>)],
    evals: &'a [Vec<(u64, f64)>],
    runs: &'a [RunHistory],
}

impl Chart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let all = self
            .series
            .iter()
            .flat_map(|(_, p)| p.iter())
            .chain(self.evals.iter().flatten())
            .copied();
        let (mut x_max, mut y_min, mut y_max) = (1u64, f64::MAX, f64::MIN);
        for (x, y) in all.filter(|(_, y)| y.is_finite()) {
            x_max = x_max.max(x);
            y_min = y_min.min(y);
            y_max = y_max.max(y);
        }
        if y_min > y_max {
            (y_min, y_max) = (0.0, 1.0);
        }
        let pad = ((y_max - y_min) * 0.08).max(y_max.abs() * 0.02).max(1e-12);
        let y_low = if self.quantity.log_scale_hint || y_min - pad < 0.0 && y_min >= 0.0 {
            0.0
        } else {
            y_min - pad
        };
        let mut chart = ChartBuilder::on(root)
            .caption(self.quantity.title, (FONT, 34))
            .margin(24)
            .x_label_area_size(70)
            .y_label_area_size(110)
            // Room past the last step so the marker ringing a final best
            // evaluation is not cut by the frame.
            .build_cartesian_2d(0u64..x_max + (x_max / 40).max(1), y_low..(y_max + pad))
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("optimizer step")
            .y_desc(self.quantity.y_label)
            .axis_desc_style((FONT, 24))
            .label_style((FONT, 20))
            .x_labels(10)
            .y_labels(8)
            .y_label_formatter(&|v| format_value(*v))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;
        let several = self.runs.len() > 1;
        for (index, (name, points)) in self.series.iter().enumerate() {
            let colour = PALETTE[index % PALETTE.len()];
            let label = if self.quantity.file == "loss" {
                if several {
                    format!("{name}: train")
                } else {
                    "train loss".to_string()
                }
            } else if several {
                name.clone()
            } else {
                self.quantity.y_label.to_string()
            };
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    colour.stroke_width(3),
                ))
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 30, y)], colour.stroke_width(3))
                });
        }
        for (index, points) in self.evals.iter().enumerate() {
            if points.is_empty() {
                continue;
            }
            let colour = PALETTE[index % PALETTE.len()];
            let name = &self.runs[index].name;
            let label = if several {
                format!("{name}: eval")
            } else {
                "eval loss".to_string()
            };
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    colour.mix(0.6).stroke_width(2),
                ))
                .map_err(e)?;
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 6, colour.filled())),
                )
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 15, y), 6, colour.filled()));
            if let Some(&(bx, by)) = points.iter().min_by(|a, b| a.1.total_cmp(&b.1)) {
                chart
                    .draw_series([Circle::new((bx, by), 13, colour.stroke_width(3))])
                    .map_err(e)?
                    .label(if several {
                        format!("{name}: best eval")
                    } else {
                        "best eval".into()
                    })
                    .legend(move |(x, y)| Circle::new((x + 15, y), 8, colour.stroke_width(2)));
            }
        }
        // One run's speed or learning rate needs no legend: the axis says it.
        if !several && self.quantity.file != "loss" {
            return Ok(());
        }
        chart
            .configure_series_labels()
            .legend_area_size(50)
            .label_font((FONT, 20))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(e)?;
        Ok(())
    }
}

/// Axis numbers short enough not to collide: 3 significant figures, in
/// scientific notation below 0.01.
fn format_value(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() < 0.01 {
        format!("{v:.1e}")
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_written_as_png_and_svg_with_their_labels() {
        let metrics = r#"{"step":0,"epoch":0.0,"eval_loss":1.64}
{"step":5,"epoch":0.1,"loss":1.49,"learning_rate":0.0004,"grad_norm":0.65,"tokens_per_second":257.5}
{"step":10,"epoch":0.2,"loss":1.20,"learning_rate":0.00035,"grad_norm":0.63,"tokens_per_second":260.8}
{"step":10,"epoch":0.2,"eval_loss":0.78}
"#;
        let run = RunHistory::parse("a", metrics, None, Path::new("m")).unwrap();
        let mut other = run.clone();
        other.name = "b".into();
        let dir = tempfile::tempdir().unwrap();
        let files = write_charts(&[run, other], dir.path()).unwrap();
        assert_eq!(files.len(), 8);
        let png = std::fs::read(dir.path().join("loss.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(dir.path().join("loss.svg")).unwrap();
        for text in [
            "optimizer step",
            "loss (nats per target token)",
            "a: train",
            "b: eval",
            "best eval",
        ] {
            assert!(svg.contains(text), "{text}");
        }
        assert_eq!(format_value(0.0004), "4.0e-4");
        assert_eq!(format_value(1.25), "1.25");
        assert_eq!(format_value(257.5), "257.5");
    }
}
