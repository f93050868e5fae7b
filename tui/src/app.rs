//! The dashboard's loop, generic over ratatui's `Backend` so tests drive it on a `TestBackend`:
//! draw, wait for the next event, apply every event that is ready (`update`), hand the effects
//! to whoever performs them, draw again. Also the terminal's input task (keys, mouse, paste,
//! resizes), the tick and the signal task, which feed the same channel.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossterm::event::{Event as Term, EventStream};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::effect::Effect;
use crate::event::Event;
use crate::state::State;
use crate::update::update;

/// Most events applied before the screen is drawn again (a flood still gets frames).
const MAX_BATCH: usize = 512;

/// Whoever performs effects: the real runner, or a test's recorder.
pub trait Outside {
    fn perform(&mut self, e: Effect);
}

/// Runs until an effect says quit or the event channel closes.
pub async fn run<B: Backend, O: Outside>(
    terminal: &mut Terminal<B>,
    s: &mut State,
    rx: &mut mpsc::Receiver<Event>,
    out: &mut O,
) -> Result<(), B::Error> {
    loop {
        terminal.draw(|f| crate::ui::render(f, s))?;
        let Some(first) = rx.recv().await else { return Ok(()) };
        let mut quit = apply(s, first, out);
        for _ in 0..MAX_BATCH {
            if quit {
                break;
            }
            match rx.try_recv() {
                Ok(ev) => quit = apply(s, ev, out),
                Err(_) => break,
            }
        }
        if quit {
            return Ok(());
        }
    }
}

fn apply<O: Outside>(s: &mut State, ev: Event, out: &mut O) -> bool {
    let mut quit = false;
    for e in update(s, ev) {
        match e {
            Effect::Quit => quit = true,
            other => out.perform(other),
        }
    }
    quit
}

/// Unix ms now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Feeds terminal input, a tick each second, and SIGTERM/SIGHUP/SIGINT into `tx`.
pub fn spawn_inputs(
    tx: mpsc::Sender<Event>,
    cancel: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) {
    let (t1, c1) = (tx.clone(), cancel.clone());
    tasks.spawn(async move {
        let mut stream = EventStream::new();
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                () = c1.cancelled() => return,
            };
            let ev = match next {
                Some(Ok(Term::Key(k))) => Event::Key(k),
                Some(Ok(Term::Mouse(m))) => Event::Mouse(m),
                Some(Ok(Term::Paste(p))) => Event::Paste(p),
                Some(Ok(Term::Resize(w, h))) => Event::Resize(w, h),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Event::Signal,
            };
            if t1.send(ev).await.is_err() {
                return;
            }
        }
    });
    let (t2, c2) = (tx.clone(), cancel.clone());
    tasks.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = c2.cancelled() => return,
            }
            if t2.send(Event::Tick(now_ms())).await.is_err() {
                return;
            }
        }
    });
    tasks.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup), Ok(mut int)) =
            (signal(SignalKind::terminate()), signal(SignalKind::hangup()), signal(SignalKind::interrupt()))
        else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = hup.recv() => {}
            _ = int.recv() => {}
            () = cancel.cancelled() => return,
        }
        let _ = tx.send(Event::Signal).await;
    });
}
