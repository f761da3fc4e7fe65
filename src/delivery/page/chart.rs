//! The HTML report's charts: inline SVG drawn with plotters' SVG backend.
//! The charts carry no text (the numbers and labels are in the table beside
//! each one), so no font is needed to draw them.

use std::io;

use plotters::prelude::*;

/// One colour per status, in report order (then a grey for any other).
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(0x2e, 0x7d, 0x32),
    RGBColor(0xc6, 0x28, 0x28),
    RGBColor(0xef, 0x6c, 0x00),
    RGBColor(0x6a, 0x1b, 0x9a),
    RGBColor(0x75, 0x75, 0x75),
    RGBColor(0x15, 0x65, 0xc0),
];

/// The colour of series `i`.
pub fn colour(i: usize) -> RGBColor {
    PALETTE
        .get(i)
        .copied()
        .unwrap_or(RGBColor(0x9e, 0x9e, 0x9e))
}

/// The colour as CSS (`#rrggbb`), for the tables' keys.
pub fn css(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

const WIDTH: u32 = 480;
const BAR: u32 = 18;
const GAP: u32 = 6;

fn draw_err<E: std::error::Error + Send + Sync + 'static>(e: DrawingAreaErrorKind<E>) -> io::Error {
    io::Error::other(e.to_string())
}

/// Horizontal bars, one a row, each split into coloured segments (series
/// `i` in [`colour`]`(i)`), scaled so the longest row fills the width.
pub fn stacked_bars(rows: &[Vec<u64>]) -> io::Result<String> {
    let height = (rows.len().max(1) as u32) * (BAR + GAP) + GAP;
    let max = rows
        .iter()
        .map(|r| r.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        for (i, row) in rows.iter().enumerate() {
            let y0 = (GAP + i as u32 * (BAR + GAP)) as i32;
            let mut x = 0u64;
            for (s, &n) in row.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let x0 = (x * u64::from(WIDTH - 1) / max) as i32;
                x += n;
                let x1 = ((x * u64::from(WIDTH - 1) / max) as i32).max(x0 + 1);
                root.draw(&Rectangle::new(
                    [(x0, y0), (x1, y0 + BAR as i32)],
                    colour(s).filled(),
                ))
                .map_err(draw_err)?;
            }
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Bars of one colour each (`values[i]` in [`colour`]`(i)`).
pub fn bars(values: &[u64]) -> io::Result<String> {
    let rows: Vec<Vec<u64>> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let mut row = vec![0; i + 1];
            row[i] = v;
            row
        })
        .collect();
    stacked_bars(&rows)
}

/// Bars all in the first colour.
pub fn plain_bars(values: &[u64]) -> io::Result<String> {
    let rows: Vec<Vec<u64>> = values.iter().map(|&v| vec![v]).collect();
    stacked_bars(&rows)
}

/// A line over `points` (equal steps from left to right), with a baseline.
pub fn line(points: &[u64]) -> io::Result<String> {
    let (w, h) = (WIDTH as i32, 160i32);
    let max = points.iter().copied().max().unwrap_or(0).max(1);
    let step = if points.len() > 1 {
        (w - 1) as f64 / (points.len() - 1) as f64
    } else {
        0.0
    };
    let coords: Vec<(i32, i32)> = points
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let x = (i as f64 * step).round() as i32;
            let y = h - 2 - (v as f64 * (h - 8) as f64 / max as f64).round() as i32;
            (x, y)
        })
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, h as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        root.draw(&PathElement::new(
            vec![(0, h - 1), (w - 1, h - 1)],
            BLACK.stroke_width(1),
        ))
        .map_err(draw_err)?;
        if coords.len() == 1 {
            let (x, y) = coords[0];
            root.draw(&Circle::new((x + 3, y), 3, colour(5).filled()))
                .map_err(draw_err)?;
        } else {
            root.draw(&PathElement::new(coords, colour(5).stroke_width(2)))
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_svg_rectangles_scaled_to_the_longest() {
        let svg = stacked_bars(&[vec![3, 1], vec![2, 0]]).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        // Three non-empty segments.
        assert_eq!(svg.matches("<rect").count(), 3 + 1, "{svg}");
        assert!(svg.contains(&css(colour(1)).to_uppercase()) || svg.contains(&css(colour(1))));
    }

    #[test]
    fn line_is_one_path() {
        let svg = line(&[1, 5, 2]).unwrap();
        assert!(svg.contains("<polyline") || svg.contains("<path"), "{svg}");
    }
}
