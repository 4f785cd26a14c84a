//! HTML building blocks: an escaped-by-construction fragment type, tables, figures, and the
//! page template (`template.html`, pulled in at compile time) with `{{name}}` slots.

use std::collections::BTreeMap;
use std::fmt::Write;

/// The page skeleton and all CSS. Kept in its own file so the markup can be read and edited
/// as HTML, not as Rust strings.
pub const TEMPLATE: &str = include_str!("template.html");

/// A fragment of trusted markup. Text enters only through [`Html::text`], which escapes it, so
/// anything read from the CSV or env.json cannot inject markup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Html(String);

impl Html {
    pub fn text(s: &str) -> Self {
        Html(escape(s))
    }

    /// Markup produced by this module or by plotters (whose SVG backend escapes its text).
    pub fn raw(s: String) -> Self {
        Html(s)
    }

    /// Wraps escaped text in an element with a fixed tag and class.
    pub fn tagged(tag: &str, class: &str, inner: Html) -> Self {
        if class.is_empty() {
            Html(format!("<{tag}>{}</{tag}>", inner.0))
        } else {
            Html(format!("<{tag} class=\"{class}\">{}</{tag}>", inner.0))
        }
    }

    pub fn push(&mut self, other: Html) {
        self.0.push_str(&other.0);
    }

    #[cfg(test)]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromIterator<Html> for Html {
    fn from_iter<I: IntoIterator<Item = Html>>(iter: I) -> Self {
        let mut out = Html::default();
        iter.into_iter().for_each(|h| out.push(h));
        out
    }
}

/// Escapes the five characters that matter in HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A paragraph of escaped text.
pub fn para(s: &str) -> Html {
    Html::tagged("p", "", Html::text(s))
}

/// A table row: an optional CSS class and its cells.
pub struct TableRow {
    pub class: &'static str,
    pub cells: Vec<Html>,
}

impl TableRow {
    pub fn plain(cells: Vec<Html>) -> Self {
        TableRow { class: "", cells }
    }
}

/// A table with a header row. With `class` `num` or `data`, numeric cells are right-aligned.
pub fn table(class: &str, headers: &[&str], rows: impl IntoIterator<Item = TableRow>) -> Html {
    // Key/value tables stay left-aligned; numeric tables line their digits up.
    let align_numbers = class == "num" || class == "data";
    let mut s = format!("<div class=\"scroll\"><table class=\"{class}\"><thead><tr>");
    for h in headers {
        let _ = write!(s, "<th>{}</th>", escape(h));
    }
    s.push_str("</tr></thead><tbody>\n");
    for row in rows {
        if row.class.is_empty() {
            s.push_str("<tr>");
        } else {
            let _ = write!(s, "<tr class=\"{}\">", row.class);
        }
        for c in row.cells {
            if align_numbers && looks_numeric(&c.0) {
                let _ = write!(s, "<td class=\"n\">{}</td>", c.0);
            } else {
                let _ = write!(s, "<td>{}</td>", c.0);
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table></div>\n");
    Html(s)
}

/// Numbers, intervals and the missing-value dash are right-aligned so digits line up.
fn looks_numeric(cell: &str) -> bool {
    let t = cell.trim_start_matches('[');
    t.starts_with(|c: char| c.is_ascii_digit() || c == '–')
        || (t.starts_with('-') && t[1..].starts_with(|c: char| c.is_ascii_digit()))
}

/// A chart with its caption; `kind` becomes a CSS class so tests and readers can find each
/// chart type. A chart that could not be drawn leaves its caption and the reason.
pub fn figure(kind: &str, chart: anyhow::Result<String>, caption: &str) -> Html {
    let body = match chart {
        Ok(svg) => svg,
        Err(e) => format!(
            "<p class=\"warn\">Chart not drawn: {}</p>",
            escape(&format!("{e:#}"))
        ),
    };
    Html(format!(
        "<figure class=\"chart {kind}\">{body}<figcaption>{}</figcaption></figure>\n",
        escape(caption)
    ))
}

/// Number for a table cell; "–" for a missing (NaN or infinite) value.
pub fn num(v: f64, decimals: usize) -> Html {
    if v.is_finite() {
        Html(format!("{v:.decimals$}"))
    } else {
        Html("–".to_string())
    }
}

/// Number with `digits` significant digits (at most nine decimals), for per-request figures
/// that span from thousands to thousandths; "–" when missing.
pub fn sig(v: f64, digits: i32) -> Html {
    if !v.is_finite() {
        return Html("–".to_string());
    }
    if v == 0.0 {
        return Html("0".to_string());
    }
    let decimals = (digits - 1 - v.abs().log10().floor() as i32).clamp(0, 9) as usize;
    Html(format!("{v:.decimals$}"))
}

/// Fills `{{name}}` slots in one pass, so text substituted into one slot is never scanned for
/// further slots. An unknown or unfilled slot is an error: the template and code drifted.
pub fn fill(template: &str, slots: &BTreeMap<&str, Html>) -> anyhow::Result<String> {
    let mut out =
        String::with_capacity(template.len() + slots.values().map(|h| h.0.len()).sum::<usize>());
    let mut rest = template;
    let mut used = std::collections::BTreeSet::new();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow::anyhow!("report template: unclosed {{{{ slot"))?;
        let name = after[..end].trim();
        let value = slots
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("report template: no value for slot {name:?}"))?;
        out.push_str(&value.0);
        used.insert(name);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if let Some(unused) = slots.keys().find(|k| !used.contains(*k)) {
        anyhow::bail!("report template: slot {unused:?} is never used");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(Html::text("<b>").as_str(), "&lt;b&gt;");
    }

    #[test]
    fn fill_substitutes_once_and_refuses_unknown_slots() {
        let mut slots = BTreeMap::new();
        slots.insert("a", Html::text("{{b}}"));
        assert_eq!(fill("x{{ a }}y", &slots).unwrap(), "x{{b}}y");
        assert!(fill("{{c}}", &slots).is_err());
        assert!(fill("{{a", &slots).is_err());
        assert!(fill("nothing", &slots).is_err());
    }

    #[test]
    fn significant_digits() {
        assert_eq!(sig(4863.6, 3).0, "4864");
        assert_eq!(sig(2.1, 3).0, "2.10");
        assert_eq!(sig(0.000123456, 3).0, "0.000123");
        assert_eq!(sig(0.0, 3).0, "0");
        assert_eq!(sig(f64::NAN, 3).0, "–");
    }

    #[test]
    fn numeric_cells_are_recognised() {
        assert!(looks_numeric("12.5"));
        assert!(looks_numeric("[0.91, 1.10]"));
        assert!(looks_numeric("-3"));
        assert!(looks_numeric("–"));
        assert!(!looks_numeric("process"));
        assert!(!looks_numeric("-x"));
    }

    #[test]
    fn failed_chart_keeps_its_caption() {
        let h = figure("throughput", Err(anyhow::anyhow!("no <data>")), "cap");
        assert!(h.as_str().contains("no &lt;data&gt;"));
        assert!(h.as_str().contains("<figcaption>cap</figcaption>"));
    }
}
