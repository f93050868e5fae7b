//! The Vault and Skills views drawn on ratatui's `TestBackend` from the fixture: both tables at
//! 120×30 and 80×24, the vault's add form with a typed value that never reaches the screen
//! (nor the state's `Debug`), the delete confirmation, the skill reader scrolled, the share
//! form, and hostile skill text drawn harmless.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use claudemesh_protocol::local::{AgentCall, LocalEvent, SkillEvent};
use claudemesh_tui::effect::Effect;
use claudemesh_tui::event::{AgentEvent, Event};
use claudemesh_tui::fixture::{self, standard};
use claudemesh_tui::state::{Modal, State, View};
use claudemesh_tui::update::update;
use common::*;
use crossterm::event::{KeyCode, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use serde_json::json;

const SECRET: &str = "sk_live_9f8e7d6c5b4a";

/// The add form filled in: key, the secret typed, a description.
fn add_form_filled(size: (u16, u16)) -> State {
    let mut s = standard(size);
    typed(&mut s, "7a");
    typed(&mut s, "STRIPE_KEY");
    key(&mut s, KeyCode::Tab);
    typed(&mut s, SECRET);
    for _ in 0..4 {
        key(&mut s, KeyCode::Tab);
    }
    typed(&mut s, "payments API, live");
    // Back on the value: its cursor shows, the text still does not.
    for _ in 0..4 {
        key(&mut s, KeyCode::BackTab);
    }
    s
}

#[test]
fn vault_table_and_detail() {
    let mut s = standard((120, 30));
    typed(&mut s, "7j");
    insta::assert_snapshot!("vault_120x30", draw(&s));
    let mut s = standard((80, 24));
    typed(&mut s, "7");
    insta::assert_snapshot!("vault_80x24", draw(&s));
    // One mesh shown: no MESH column.
    typed(&mut s, "]");
    let screen = draw(&s);
    assert!(!screen.contains("MESH") && !screen.contains("NPM_TOKEN"), "{screen}");
}

#[test]
fn the_typed_value_is_masked_and_never_drawn() {
    for size in [(120, 30), (80, 24)] {
        let s = add_form_filled(size);
        let screen = draw(&s);
        assert!(!screen.contains(SECRET) && !screen.contains("9f8e7d"), "{screen}");
        assert!(screen.contains(&"•".repeat(SECRET.chars().count())), "{screen}");
        assert!(!format!("{s:?}").contains(SECRET), "the state's Debug shows the value");
        insta::assert_snapshot!(format!("vault_add_form_{}x{}", size.0, size.1), screen);
    }
    // Sent: the value leaves the form with the call; nothing of it stays in the state.
    let mut s = add_form_filled((120, 30));
    let fx = key(&mut s, KeyCode::Enter);
    let sent = fx.iter().find_map(|e| match e {
        Effect::Call { call: AgentCall::VaultSet(p), .. } => p.value.clone(),
        _ => None,
    });
    assert_eq!(sent.as_deref(), Some(SECRET));
    assert!(!format!("{fx:?}").contains(SECRET), "an effect's Debug shows the value");
    assert!(!format!("{s:?}").contains(SECRET));
    let screen = draw(&s);
    assert!(!screen.contains("••") && screen.contains("working…"), "{screen}");
    // Cancelled: gone too.
    let mut s = add_form_filled((120, 30));
    key(&mut s, KeyCode::Esc);
    assert!(s.modal.is_none() && !format!("{s:?}").contains(SECRET));
}

#[test]
fn vault_delete_asks_naming_key_and_mesh() {
    let mut s = standard((80, 24));
    typed(&mut s, "7jd");
    let screen = draw(&s);
    assert!(screen.contains("Delete GH_TOKEN from your vault on team?"), "{screen}");
    insta::assert_snapshot!("vault_confirm_delete_80x24", screen);
}

#[test]
fn skills_table_and_detail() {
    let mut s = standard((120, 30));
    typed(&mut s, "8j");
    insta::assert_snapshot!("skills_120x30", draw(&s));
    let mut s = standard((80, 24));
    typed(&mut s, "8");
    insta::assert_snapshot!("skills_80x24", draw(&s));
    typed(&mut s, "/rust");
    let screen = draw(&s);
    assert!(screen.contains("code-review") && !screen.contains("triage"), "{screen}");
}

#[test]
fn skill_reader_scrolls_through_instructions_and_files() {
    let mut s = standard((120, 30));
    typed(&mut s, "8j");
    let fx = key(&mut s, KeyCode::Enter);
    let mut item =
        fixture::skill("team", "code-review", "Code review checklist for Rust PRs", &["rust"], 0, 600_000);
    item.skill.skill.instructions =
        (1..=40).map(|i| format!("step {i}: do the thing")).collect::<Vec<_>>().join("\n");
    answer(&mut s, &fx, Ok(json!(item)));
    assert!(matches!(s.modal, Some(Modal::Skill(_))));
    insta::assert_snapshot!("skill_reader_120x30", draw(&s));
    typed(&mut s, "G");
    let screen = draw(&s);
    assert!(screen.contains("checklist.md") && screen.contains("- [ ] changelog"), "{screen}");
    assert!(!screen.contains("step 1:"), "{screen}");
    insta::assert_snapshot!("skill_reader_end_80x24", {
        s.size = (80, 24);
        typed(&mut s, "G");
        draw(&s)
    });
    key(&mut s, KeyCode::Esc);
    assert!(s.modal.is_none());
}

#[test]
fn skill_share_form() {
    let mut s = standard((120, 30));
    typed(&mut s, "8s");
    typed(&mut s, "~/skills/code-review");
    insta::assert_snapshot!("skill_share_form_120x30", draw(&s));
}

#[test]
fn hostile_skill_text_is_drawn_harmless() {
    let evil = "x\u{1b}]52;c;ZXZpbA==\u{7}y\u{1b}[2J\u{202e}z\r\tw";
    let mut s = standard((120, 30));
    let mut item = fixture::skill("team", "evil", evil, &[evil], 1, 0);
    item.author_name = Some(evil.into());
    item.skill.skill.instructions = format!("first {evil}\nsecond {evil}");
    item.skill.skill.files = [(format!("f{evil}"), evil.to_string())].into();
    let reply = json!({"skills": [fixture::summary(&item)]});
    let fx = typed(&mut s, "8");
    answer(&mut s, &fx, Ok(reply));
    let fx = key(&mut s, KeyCode::Enter);
    answer(&mut s, &fx, Ok(json!(item)));
    for screen in [draw(&s), {
        key(&mut s, KeyCode::Esc);
        draw(&s)
    }] {
        for c in screen.chars() {
            assert!(
                c == '\n' || (!c.is_control() && !claudemesh_protocol::text::is_bidi_control(c)),
                "{c:?} drawn"
            );
        }
        assert!(!screen.contains("52;c") && screen.contains("xyz"), "{screen}");
    }
}

#[test]
fn tabs_for_eight_views_fit_and_take_clicks() {
    for (w, h) in [(80, 24), (120, 30), (160, 48), (60, 20)] {
        let mut s = standard((w, h));
        for (i, v) in View::ALL.iter().enumerate() {
            let screen = draw(&s);
            let tabs = screen.lines().nth(1).unwrap().trim_matches('"');
            // Every view's number is on the tab line; a click on it switches there.
            let label = char::from(b'1' + i as u8);
            let col = tabs.chars().position(|c| c == label);
            let col = col.unwrap_or_else(|| panic!("{label} not in {tabs:?} at {w}"));
            update(
                &mut s,
                Event::Mouse(MouseEvent {
                    kind: MouseEventKind::Down(MouseButton::Left),
                    column: col as u16,
                    row: 1,
                    modifiers: KeyModifiers::NONE,
                }),
            );
            assert_eq!(s.view, *v, "a click on {label} at {w}x{h}: {tabs:?}");
            assert!(draw(&s).lines().nth(1).unwrap().contains(v.title()), "the current view's title shows");
        }
    }
}

#[test]
fn a_skill_removed_elsewhere_leaves_the_list() {
    let mut s = standard((120, 30));
    typed(&mut s, "8");
    let seq = s.seq + 1;
    let e = SkillEvent {
        mesh: "team".into(),
        name: "release".into(),
        action: claudemesh_protocol::frames::SkillAction::Removed,
    };
    update(&mut s, Event::Agent(AgentEvent::Event { seq, event: Box::new(LocalEvent::Skills(e)) }));
    let screen = draw(&s);
    assert!(!screen.contains("Cutting a release") && screen.contains("code-review"), "{screen}");
}

#[test]
fn help_lists_the_new_views_keys() {
    for (keys, want) in [("7?", "add a secret"), ("8?", "share a skill from a SKILL.md file")] {
        let mut s = standard((120, 40));
        typed(&mut s, keys);
        let screen = draw(&s);
        assert!(screen.contains(want) && screen.contains("1-8 / tab / shift-tab"), "{screen}");
    }
}
