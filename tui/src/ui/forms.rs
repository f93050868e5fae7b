//! The forms (deploy, a tool call generated from its schema, a vault entry, a skill share) and
//! the output dialog (a tool's result, a failed deploy): drawn from their state, env values
//! masked, a vault value shown only as one `•` per character, errors in red.

use claudemesh_protocol::text::one_line;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::dialogs::one_line_field;
use super::layout::centered;
use super::pane;
use super::theme::Theme;
use crate::state::form::{Input, mask_env};
use crate::state::{Field, Form};

/// Columns of the field labels.
const LABEL: usize = 12;

pub(super) fn form(f: &mut Frame<'_>, form: &Form, t: &Theme, body: Rect) {
    let w = body.width.min(90);
    let inner = w.saturating_sub(2) as usize;
    let mut lines: Vec<Line<'_>> = Vec::new();
    if form.fields.is_empty() {
        lines.push(Line::styled("this tool takes no arguments", t.dim()));
    }
    for (i, x) in form.fields.iter().enumerate() {
        let focused = i == form.focus && !form.busy;
        // Property names come from the service: cleaned like any peer text.
        let label = format!("{}{}", one_line(&x.name), if x.required { "*" } else { "" });
        let label = format!("{:<LABEL$}", super::fit(&label, LABEL - 1));
        let choices = x.choices();
        if !choices.is_empty() {
            let shown = if x.field.text.is_empty() { "(none)".to_string() } else { one_line(&x.field.text) };
            let style = if focused { t.selected() } else { Default::default() };
            lines.push(Line::from(vec![
                Span::styled(label, t.dim()),
                Span::styled(format!("‹ {shown} ›"), style),
                Span::styled(
                    format!("  {}", super::fit(&choices_text(&choices), inner.saturating_sub(LABEL + 8))),
                    t.dim(),
                ),
            ]));
        } else {
            let shown = match x.input {
                Input::Secret => Field { text: mask_env(&x.field.text), cursor: x.field.cursor },
                Input::Masked => {
                    Field { text: "•".repeat(x.field.text.chars().count()), cursor: x.field.cursor }
                }
                _ => x.field.clone(),
            };
            let mut line = one_line_field("", &shown, focused, inner.saturating_sub(LABEL), t);
            line.spans.insert(0, Span::styled(label, t.dim()));
            lines.push(line);
        }
        if i == form.focus && !x.hint.is_empty() {
            for l in super::messages::wrap(&x.hint, inner.saturating_sub(LABEL).max(8)) {
                lines.push(Line::from(vec![Span::raw(" ".repeat(LABEL)), Span::styled(l, t.dim())]));
            }
        }
    }
    if let Some(e) = &form.error {
        for l in super::messages::wrap(&format!("✖ {e}"), inner.max(8)) {
            lines.push(Line::styled(l, t.bad()));
        }
    }
    let keys = if form.busy {
        "working…"
    } else {
        "tab/↑↓ field · space/←→ choice · enter send · esc cancel · * required"
    };
    lines.push(Line::styled(keys, t.dim()));
    let area = centered(body, w, lines.len() as u16 + 2);
    f.render_widget(Clear, area);
    f.render_widget(Paragraph::new(lines).block(pane(form.title.clone(), true, t)), area);
}

fn choices_text(c: &[String]) -> String {
    c.iter()
        .map(|x| if x.is_empty() { "(none)".to_string() } else { one_line(x) })
        .collect::<Vec<_>>()
        .join(" · ")
}

pub(super) fn output(f: &mut Frame<'_>, title: &str, lines: &[String], error: bool, t: &Theme, body: Rect) {
    let w = body.width.min(100);
    let inner = w.saturating_sub(2).max(1) as usize;
    let style = if error { t.bad() } else { Default::default() };
    let mut text: Vec<Line<'_>> = lines.iter().map(|l| Line::styled(l.clone(), style)).collect();
    text.push(Line::raw(""));
    text.push(Line::styled("esc close · shift+drag selects text", t.dim()));
    let h: usize = text.iter().map(|l| l.width().max(1).div_ceil(inner)).sum::<usize>() + 2;
    let area = centered(body, w, h as u16);
    f.render_widget(Clear, area);
    let block = pane(title.to_string(), true, t);
    let block = if error { block.border_style(t.bad()) } else { block };
    f.render_widget(Paragraph::new(text).block(block).wrap(Wrap { trim: false }), area);
}
