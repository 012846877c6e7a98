//! Small self-contained SVG line charts for run directories.

/// One line of a chart.
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points `(x, y)`.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A named series.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
        }
    }
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An SVG line chart of `series` with axes, ticks and a legend.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (w, h) = (640.0, 400.0);
    let (left, right, top, bottom) = (70.0, 170.0, 40.0, 50.0);
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    // Round axes: the data range widened to multiples of a 1, 2, 2.5 or 5 step.
    let (xs, ys) = (nice_ticks(x0, x1), nice_ticks(y0, y1));
    let (x0, x1) = (xs[0], xs[xs.len() - 1]);
    let (y0, y1) = (ys[0], ys[ys.len() - 1]);
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let py = |y: f64| h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>
"#,
        (left + w - right) / 2.0,
        escape(title)
    );
    let (x_step, y_step) = (xs[1] - xs[0], ys[1] - ys[0]);
    for &fy in &ys {
        svg.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e0e0e0\"/>\n<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            w - right,
            left - 6.0,
            py(fy) + 4.0,
            tick(fy, y_step),
            y = py(fy),
        ));
    }
    for &fx in &xs {
        svg.push_str(&format!(
            "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            h - bottom + 18.0,
            tick(fx, x_step),
            x = px(fx),
        ));
    }
    svg.push_str(&format!(
        "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{left}\" x2=\"{}\" y1=\"{b}\" y2=\"{b}\" stroke=\"black\"/>\n<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n<text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>\n",
        h - bottom,
        w - right,
        (left + w - right) / 2.0,
        h - 10.0,
        escape(x_label),
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0,
        escape(y_label),
        b = h - bottom,
    ));
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        if path.len() == 1 {
            svg.push_str(&format!(
                "<circle cx=\"{}\" r=\"3\" fill=\"{color}\" cy=\"{}\"/>\n",
                path[0].split(',').next().unwrap_or("0"),
                path[0].split(',').nth(1).unwrap_or("0")
            ));
        } else if !path.is_empty() {
            svg.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\" points=\"{}\"/>\n",
                path.join(" ")
            ));
        }
        let ly = top + 10.0 + 18.0 * i as f64;
        svg.push_str(&format!(
            "<line x1=\"{}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"3\"/>\n<text x=\"{}\" y=\"{}\">{}</text>\n",
            w - right + 10.0,
            w - right + 30.0,
            w - right + 36.0,
            ly + 4.0,
            escape(&s.name)
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

/// Ticks covering `[lo, hi]` (`lo < hi`): about five multiples of a round step (1, 2, 2.5 or
/// 5 times a power of ten), the first at or below `lo`, the last at or above `hi`.
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step + 1e-9).floor() as i64;
    let last = (hi / step - 1e-9).ceil() as i64;
    (first..=last.max(first + 1))
        .map(|i| i as f64 * step)
        .collect()
}

/// The label of tick `v` on an axis of ticks `step` apart: as many decimals as the step needs.
fn tick(v: f64, step: f64) -> String {
    let a = step.abs();
    if a != 0.0 && !(1e-4..1e6).contains(&a) {
        return format!("{v:.1e}");
    }
    // 2.5 steps need one decimal more than their power of ten.
    let scaled = step / 10f64.powf(step.log10().floor());
    let extra = f64::from(u8::from((scaled - 2.5).abs() < 1e-9));
    let decimals = (extra - step.log10().floor()).max(0.0) as usize;
    let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_have_a_line_per_series_and_escape_text() {
        let svg = line_chart(
            "a < b",
            "epoch",
            "loss",
            &[
                Series::new("train", vec![(1.0, 2.0), (2.0, 1.0), (3.0, f64::NAN)]),
                Series::new("test", vec![(1.0, 2.5), (2.0, 1.5)]),
                Series::new("one", vec![(1.0, 1.0)]),
            ],
        );
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(svg.contains("a &lt; b"));
        assert!(!svg.contains("NaN"));
        // An empty chart is still valid.
        assert!(line_chart("t", "x", "y", &[]).ends_with("</svg>\n"));
    }

    #[test]
    fn axes_are_round() {
        // Epochs 1..100: 0, 25, ..., 100, not 1.000, 25.750, ...
        assert_eq!(nice_ticks(1.0, 100.0), [0.0, 25.0, 50.0, 75.0, 100.0]);
        let labels: Vec<_> = nice_ticks(1.0, 100.0)
            .iter()
            .map(|&v| tick(v, 25.0))
            .collect();
        assert_eq!(labels, ["0", "25", "50", "75", "100"]);
        // Accuracies up to 0.9999 stop at 1.
        let t = nice_ticks(0.9012, 0.9999);
        assert_eq!(*t.last().unwrap(), 1.0);
        let labels: Vec<_> = t.iter().map(|&v| tick(v, t[1] - t[0])).collect();
        assert_eq!(labels, ["0.900", "0.925", "0.950", "0.975", "1.000"]);
        assert_eq!(nice_ticks(0.0, 1.0), [0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(nice_ticks(0.0031, 2.3), [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(nice_ticks(0.0031, 1.9), [0.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(tick(1.5, 0.5), "1.5");
        // Large and tiny steps in scientific notation.
        assert_eq!(tick(2e7, 1e7), "2.0e7");
        // A chart of accuracies labels no tick above 1.
        let svg = line_chart(
            "accuracy",
            "epoch",
            "accuracy",
            &[Series::new("test", vec![(1.0, 0.95), (100.0, 0.9999)])],
        );
        let y_labels: Vec<f64> = svg
            .lines()
            .filter(|l| l.contains("text-anchor=\"end\""))
            .filter_map(|l| l.split('>').nth(1)?.split('<').next()?.parse().ok())
            .collect();
        assert_eq!(y_labels, [0.94, 0.96, 0.98, 1.0], "{svg}");
    }
}
