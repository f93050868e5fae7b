//! Every view, at 80×24 and at 160×48, drawn on ratatui's `TestBackend` from the fixed
//! fixture and compared with its insta snapshot (`tests/snapshots/`); plus the dialogs, the
//! agent gone, and NO_COLOR drawing no colour at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use claudemesh_tui::event::{AgentEvent, Event};
use claudemesh_tui::fixture::standard;
use claudemesh_tui::state::State;
use claudemesh_tui::update::update;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

fn draw(s: &State) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(s.size.0, s.size.1)).unwrap();
    t.draw(|f| claudemesh_tui::ui::render(f, s)).unwrap();
    t
}

fn keys(s: &mut State, keys: &str) {
    for c in keys.chars() {
        let code = if c == '\n' { KeyCode::Enter } else { KeyCode::Char(c) };
        update(s, Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
    }
}

fn view(size: (u16, u16), k: &str) -> String {
    let mut s = standard(size);
    keys(&mut s, k);
    format!("{}", draw(&s).backend())
}

macro_rules! views {
    ($($name:ident: $keys:expr),* $(,)?) => {$(
        #[test]
        fn $name() {
            insta::assert_snapshot!(concat!(stringify!($name), "_80x24"), view((80, 24), $keys));
            insta::assert_snapshot!(concat!(stringify!($name), "_160x48"), view((160, 48), $keys));
        }
    )*};
}

views! {
    peers: "1j",
    members: "2jj",
    messages: "3",
    events: "4",
    meshes: "5",
    help: "3?",
    compose: "1jjmhello bob",
    thread_focused: "3l",
    confirm_remove: "2jjd",
    scope_one_mesh: "]",
}

#[test]
fn agent_gone() {
    let mut s = standard((80, 24));
    update(
        &mut s,
        Event::Agent(AgentEvent::Gone { error: "no agent is running".into(), retry_in_ms: 4_000 }),
    );
    insta::assert_snapshot!("agent_gone_80x24", format!("{}", draw(&s).backend()));
}

#[test]
fn no_color_draws_no_colour() {
    for k in ["1", "2", "3", "4", "5", "6", "6G\n", "6D", "3l", "1m", "7", "7a", "7d", "8", "8s"] {
        let mut s = standard((160, 48));
        s.color = false;
        keys(&mut s, k);
        let t = draw(&s);
        let buf = t.backend().buffer();
        for cell in buf.content() {
            assert_eq!(cell.fg, Color::Reset, "view {k}: a coloured cell {:?}", cell.symbol());
            assert_eq!(cell.bg, Color::Reset);
        }
    }
    // And with colours, there are some.
    let s = standard((160, 48));
    assert!(draw(&s).backend().buffer().content().iter().any(|c| c.fg != Color::Reset));
}

#[test]
fn never_white_or_black_text() {
    for k in ["1", "2", "3", "4", "5", "6", "6G\n", "6D", "3l", "1m", "3?"] {
        let mut s = standard((160, 48));
        keys(&mut s, k);
        for cell in draw(&s).backend().buffer().content() {
            for c in [cell.fg, cell.bg] {
                assert!(
                    !matches!(
                        c,
                        Color::White | Color::Black | Color::Gray | Color::Rgb(..) | Color::Indexed(_)
                    ),
                    "view {k}: {c:?} depends on the background"
                );
            }
        }
    }
}

#[test]
fn peer_text_cannot_reach_the_terminal() {
    let mut s = standard((160, 48));
    let mut evil = claudemesh_tui::fixture::peer(
        "team",
        8,
        1,
        "bob\u{1b}]52;c;ZXZpbA==\u{7}x",
        Default::default(),
        "sum\u{1b}[2Jmary\nnext",
    );
    evil.peer.session.cwd = Some("/tmp/\u{202e}gpj.exe".into());
    let seq = s.seq + 1;
    update(
        &mut s,
        Event::Agent(AgentEvent::Event {
            seq,
            event: Box::new(claudemesh_protocol::local::LocalEvent::Presence {
                mesh: "team".into(),
                event: claudemesh_protocol::frames::Event::PeerJoined(evil.peer),
            }),
        }),
    );
    keys(&mut s, "/bobx");
    let t = draw(&s);
    for cell in t.backend().buffer().content() {
        for c in cell.symbol().chars() {
            assert!(!c.is_control() && !claudemesh_protocol::text::is_bidi_control(c), "{c:?} drawn");
        }
    }
    let screen = format!("{}", t.backend());
    assert!(screen.contains("bobx"), "{screen}");
    assert!(screen.contains("summary next"), "{screen}");
}

#[test]
fn a_long_pasted_link_scrolls_and_its_error_shows() {
    let mut s = standard((100, 30));
    keys(&mut s, "5J");
    let link = format!("claudemesh://join/{}", "eyJ2IjoxLCJicm9rZXJfdXJsIjoid3M6".repeat(15));
    update(&mut s, Event::Paste(link));
    update(&mut s, Event::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)));
    let screen = format!("{}", draw(&s).backend());
    assert!(screen.contains("✖ not an invite"), "{screen}");
    assert!(screen.contains("› …"), "the field scrolled to its end: {screen}");
}

#[test]
fn an_invite_link_is_selectable_without_borders() {
    let mut s = standard((80, 24));
    let url = format!("claudemesh://join/{}", "a".repeat(150));
    s.modal = Some(claudemesh_tui::state::Modal::Notice {
        title: "Invite created".into(),
        lines: vec![url.clone()],
    });
    let screen = format!("{}", draw(&s).backend());
    let rows: Vec<&str> = screen.lines().filter(|l| l.contains("aaaa")).collect();
    assert!(rows.len() >= 2, "{screen}");
    for r in rows {
        assert!(!r.contains('│'), "a side border inside the link's rows: {r}");
    }
}

#[test]
fn a_long_message_wraps_under_its_label_and_its_end_shows() {
    let mut s = standard((80, 24));
    keys(&mut s, "1jjm");
    let body = "word ".repeat(60) + "THE-END";
    update(&mut s, Event::Paste(body));
    let screen = format!("{}", draw(&s).backend());
    assert!(screen.contains("THE-END"), "{screen}");
    assert!(screen.contains("enter send"), "the hints stay: {screen}");
    let wrapped: Vec<&str> = screen.lines().filter(|l| l.contains("word")).collect();
    assert!(wrapped.len() >= 3, "{screen}");
    for l in &wrapped[1..] {
        assert!(l.starts_with("\"│         "), "a wrapped row starts under the label: {l}");
    }
}
