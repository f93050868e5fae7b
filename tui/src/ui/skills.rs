//! The Skills view: the skills shared in the meshes in scope (name, description, tags, author,
//! when updated, and the mesh when several are shown), the selected one's summary under them,
//! and the reader (instructions and files, scrolled). Skills are peer text: every line is
//! cleaned of escapes and control characters before it is drawn.

use claudemesh_protocol::local::{SkillItem, SkillListItem};
use claudemesh_protocol::text;
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::layout::{self, Areas};
use super::theme::Theme;
use super::{CellText, TableSpec, clock, field_lines, pane, table};
use crate::rows;
use crate::state::{SkillRead, State, View};

/// What a line of the reader is, for its style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Title,
    Meta,
    /// A file's name, over its text.
    Heading,
    Text,
}

/// The author's name (from the reply, else the directory), else its short member id.
fn author(s: &State, mesh: &str, id: &str, name: Option<&str>) -> String {
    name.map(text::name)
        .or_else(|| s.member(mesh, id).map(|m| text::name(&m.member.display_name)))
        .unwrap_or_else(|| text::short_member_id(id).to_string())
}

pub(super) fn render(f: &mut Frame<'_>, s: &State, t: &Theme, a: &Areas) {
    let list = rows::skills(s);
    let many_meshes = s.scope.is_none() && s.meshes.len() > 1;
    let row = |i: usize, t: &Theme| -> Vec<CellText> {
        let x = list[i];
        let k = &x.skill;
        let tags: Vec<String> = k.tags.iter().map(|g| text::name(g)).collect();
        let mut cells = vec![
            (text::name(&k.name), t.bold()),
            (text::one_line(&k.description), Style::default()),
            (tags.join(" "), t.accent()),
            (author(s, &x.mesh, &k.author, x.author_name.as_deref()), Style::default()),
            (clock(s, k.updated_at), t.dim()),
        ];
        if many_meshes {
            cells.push((x.mesh.clone(), Style::default()));
        }
        cells
    };
    let wide = a.table.width >= 100;
    let mut header = vec!["NAME", "DESCRIPTION", "TAGS", "AUTHOR", "UPDATED"];
    let mut widths = vec![
        Constraint::Length(if wide { 20 } else { 14 }),
        Constraint::Fill(1),
        Constraint::Length(if wide { 18 } else { 10 }),
        Constraint::Length(if wide { 12 } else { 8 }),
        Constraint::Length(11),
    ];
    if many_meshes {
        header.push("MESH");
        widths.push(Constraint::Length(8));
    }
    let title = match s.filter(View::Skills) {
        "" => format!("Skills ({})", list.len()),
        q => format!("Skills ({}) matching \"{}\"", list.len(), text::one_line(q)),
    };
    let empty = match (&s.skills.error, s.agent_up(), s.skills.loaded) {
        (Some(_), _, _) => "the skills could not be listed (the error is in the Events view)",
        (None, false, _) => "waiting for the agent…",
        (None, true, false) => "asking the agent…",
        (None, true, true) => "no skill in this scope (s shares one from a file)",
    };
    let spec = TableSpec { block: pane(title, true, t), header: &header, widths: &widths, empty };
    table(f, a.table, spec, list.len(), s.cursor(View::Skills), t, row);
    detail(f, s, t, a.detail, list.get(s.cursor(View::Skills).selected).copied());
}

fn detail(f: &mut Frame<'_>, s: &State, t: &Theme, area: Rect, x: Option<&SkillListItem>) {
    if area.height == 0 {
        return;
    }
    let Some(x) = x else {
        let hint = Line::styled("s share a skill from a SKILL.md file or a directory holding one", t.dim());
        f.render_widget(Paragraph::new(hint).block(pane("Skill", false, t)), area);
        return;
    };
    let k = &x.skill;
    let w = area.width.saturating_sub(2);
    let mut lines = vec![Line::from(vec![
        Span::styled(text::name(&k.name), t.bold()),
        Span::raw(format!(
            "  on {} · by {} · updated {}",
            x.mesh,
            author(s, &x.mesh, &k.author, x.author_name.as_deref()),
            clock(s, k.updated_at)
        )),
    ])];
    lines.extend(field_lines("about", &text::one_line(&k.description), Style::default(), w, t));
    let tags: Vec<String> = k.tags.iter().map(|g| text::name(g)).collect();
    lines.extend(field_lines("tags", &tags.join(" "), t.accent(), w, t));
    lines.push(Line::styled("enter read · s share · d remove (author or admin) · / search", t.dim()));
    f.render_widget(Paragraph::new(lines).block(pane("Skill", false, t)), area);
}

/// Peer text as lines of at most `width` columns: escapes and controls removed, tabs as
/// spaces, trailing blank lines dropped.
fn cleaned(textish: &str, width: usize, kind: Kind, out: &mut Vec<(String, Kind)>) {
    let clean = text::terminal(textish).replace('\t', "    ");
    for l in super::messages::wrap(clean.trim_end(), width) {
        out.push((l, kind));
    }
}

/// The reader's lines at `width` columns: the skill's name, where and by whom, its tags and
/// description, its instructions, then each file under its name. `update` counts them to
/// bound the scroll; `render` draws them.
pub(crate) fn reader_text(s: &State, item: &SkillItem, width: usize) -> Vec<(String, Kind)> {
    let r = &item.skill;
    let k = &r.skill;
    let mut out = vec![(text::name(&k.name), Kind::Title)];
    let by = author(s, &item.mesh, &r.author, item.author_name.as_deref());
    cleaned(
        &format!("on {} · by {by} · updated {}", item.mesh, clock(s, r.updated_at)),
        width,
        Kind::Meta,
        &mut out,
    );
    if !k.tags.is_empty() {
        let tags: Vec<String> = k.tags.iter().map(|g| text::name(g)).collect();
        cleaned(&format!("tags: {}", tags.join(" ")), width, Kind::Meta, &mut out);
    }
    if !k.description.trim().is_empty() {
        cleaned(&text::one_line(&k.description), width, Kind::Meta, &mut out);
    }
    out.push((String::new(), Kind::Text));
    out.push(("── SKILL.md ──".into(), Kind::Heading));
    cleaned(&k.instructions, width, Kind::Text, &mut out);
    for (path, body) in &k.files {
        out.push((String::new(), Kind::Text));
        out.push((format!("── {} ──", text::one_line(path)), Kind::Heading));
        cleaned(body, width, Kind::Text, &mut out);
    }
    out
}

pub(super) fn reader(f: &mut Frame<'_>, s: &State, r: &SkillRead, t: &Theme) {
    let area = layout::reader(s);
    let (w, h) = layout::reader_page(s);
    let all = reader_text(s, &r.item, w);
    let scroll = r.scroll.min(all.len().saturating_sub(h));
    let mut lines: Vec<Line<'_>> = all
        .iter()
        .skip(scroll)
        .take(h)
        .map(|(l, kind)| {
            let style = match kind {
                Kind::Title => t.bold(),
                Kind::Meta => t.dim(),
                Kind::Heading => t.heading(),
                Kind::Text => Style::default(),
            };
            Line::styled(l.clone(), style)
        })
        .collect();
    lines.resize(h, Line::raw(""));
    let shown = (scroll + h).min(all.len());
    lines.push(Line::styled(
        format!("lines {}–{shown} of {} · j k pgup pgdn g G scroll · esc close", scroll + 1, all.len()),
        t.dim(),
    ));
    f.render_widget(Clear, area);
    let title = format!("Skill {}", text::name(&r.item.skill.skill.name));
    f.render_widget(Paragraph::new(lines).block(pane(title, true, t)), area);
}
