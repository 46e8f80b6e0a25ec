//! `top`'s full-screen view (ratatui): the sampling loop, what is shown,
//! the keys, and the stop of the selected task (`K`, through `lanco
//! stop`'s own path). The terminal itself is `term`'s.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lanco_proto::TaskName;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, TableState};
use ratatui::{Frame, Terminal};

use super::term::{Input, Key, Screen};
use super::view::{self, SortBy};
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::usage::{NamespaceUsage, UsageSampler};

/// The shortest refresh: `-d 0` would spin.
const MIN_DELAY: Duration = Duration::from_millis(100);
/// How many log lines are kept for the pane.
const LOG_LINES: usize = 50;

pub fn run(ns: &Namespace, delay: Duration) -> Result<u8> {
    let screen = Screen::enter()?;
    let term = |e: std::io::Error| Error::system("the terminal", e);
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout())).map_err(term)?;
    let mut app = App::new(ns.clone());
    let delay = delay.max(MIN_DELAY);
    let mut next = Instant::now();
    let mut dirty = true;
    loop {
        if Instant::now() >= next {
            app.refresh();
            next = Instant::now() + delay;
            dirty = true;
        }
        dirty |= app.poll_stop() | app.poll_stderr(&screen);
        if dirty {
            terminal.draw(|f| app.draw(f)).map_err(term)?;
            dirty = false;
        }
        match screen.wait(next.saturating_duration_since(Instant::now()))? {
            Input::Keys(keys) => {
                for k in keys {
                    if app.key(k) == Action::Quit {
                        return Ok(0);
                    }
                }
                dirty = true;
            }
            Input::Resized => dirty = true,
            Input::Ended(status) => return Ok(status),
            Input::Nothing => {}
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Action {
    Stay,
    Quit,
}

/// What the view shows and remembers between refreshes.
struct App {
    ns: Namespace,
    sampler: UsageSampler,
    usage: Option<NamespaceUsage>,
    sort: SortBy,
    /// The selected row, and the task in it (the selection follows the
    /// task when the rows move).
    sel: usize,
    sel_task: Option<(TaskName, u32)>,
    /// The first row shown.
    offset: usize,
    show_log: bool,
    log: Vec<String>,
    /// `K` asked about this task: waiting for y or n.
    prompt: Option<TaskName>,
    stopping: Option<(TaskName, JoinHandle<Result<u8>>)>,
    /// The last thing to tell (a stop's outcome, an error), and whether it
    /// is bad news.
    message: Option<(String, bool)>,
}

impl App {
    fn new(ns: Namespace) -> Self {
        App {
            ns,
            sampler: UsageSampler::new(),
            usage: None,
            sort: SortBy::Cpu,
            sel: 0,
            sel_task: None,
            offset: 0,
            show_log: true,
            log: Vec::new(),
            prompt: None,
            stopping: None,
            message: None,
        }
    }

    /// A new sample, sorted, the selection kept on its task.
    fn refresh(&mut self) {
        match self.sampler.sample(&self.ns) {
            Ok(u) => self.usage = Some(u),
            // The last figures stay; the error is told.
            Err(e) => self.message = Some((e.one_line(), true)),
        }
        self.resort();
    }

    fn resort(&mut self) {
        let Some(u) = &mut self.usage else { return };
        view::sort(&mut u.tasks, self.sort);
        if let Some((task, uid)) = &self.sel_task {
            if let Some(i) = u
                .tasks
                .iter()
                .position(|t| &t.task == task && t.uid == *uid)
            {
                self.sel = i;
            }
        }
        self.select(self.sel);
    }

    fn select(&mut self, i: usize) {
        let tasks = self.usage.as_ref().map_or(&[][..], |u| &u.tasks[..]);
        self.sel = i.min(tasks.len().saturating_sub(1));
        self.sel_task = tasks.get(self.sel).map(|t| (t.task.clone(), t.uid));
        self.read_log();
    }

    /// The selected task's last log lines, read as `lanco logs` does.
    fn read_log(&mut self) {
        self.log.clear();
        let Some((task, _)) = &self.sel_task else {
            return;
        };
        let text = match self.ns.open_log(task) {
            Ok(Some((_, f))) => match crate::tail::tail_lines(&f, LOG_LINES) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) => format!("(cannot read its log: {e})"),
            },
            Ok(None) => "(no log)".into(),
            Err(e) => format!("(cannot read its log: {})", e.one_line()),
        };
        self.log = text.lines().map(printable).collect();
    }

    fn key(&mut self, k: Key) -> Action {
        if k == Key::Interrupt {
            return Action::Quit;
        }
        if let Some(task) = self.prompt.take() {
            match k {
                Key::Char('y' | 'Y') => self.stop(task),
                _ => self.message = Some((format!("{task} left running"), false)),
            }
            return Action::Stay;
        }
        self.message = None;
        let n = self.usage.as_ref().map_or(0, |u| u.tasks.len());
        match k {
            Key::Char('q') => return Action::Quit,
            Key::Up | Key::Char('k') => self.select(self.sel.saturating_sub(1)),
            Key::Down | Key::Char('j') => self.select(self.sel + 1),
            Key::PageUp => self.select(self.sel.saturating_sub(10)),
            Key::PageDown => self.select(self.sel + 10),
            Key::Home | Key::Char('g') => self.select(0),
            Key::End | Key::Char('G') => self.select(n),
            Key::Char('s') => self.sort_by(SortBy::State),
            Key::Char('m') => self.sort_by(SortBy::Memory),
            Key::Char('c') => self.sort_by(SortBy::Cpu),
            Key::Char('n') => self.sort_by(SortBy::Name),
            Key::Char('l') => self.show_log = !self.show_log,
            Key::Char('K') => match (&self.stopping, &self.sel_task) {
                (Some((t, _)), _) => {
                    self.message = Some((format!("still stopping {t}"), true));
                }
                (None, Some((t, _))) => self.prompt = Some(t.clone()),
                (None, None) => {}
            },
            _ => {}
        }
        Action::Stay
    }

    fn sort_by(&mut self, by: SortBy) {
        self.sort = by;
        self.resort();
    }

    /// Stops `task` as `lanco NS stop TASK` does (a transition: refused
    /// while tasks that need it run), in a thread: the view goes on.
    fn stop(&mut self, task: TaskName) {
        let (ns, t) = (self.ns.clone(), task.clone());
        let spawned = std::thread::Builder::new()
            .name("stop".into())
            .spawn(move || super::super::stop::run(&ns, &t, None, false));
        match spawned {
            Ok(h) => {
                self.message = Some((format!("stopping {task}…"), false));
                self.stopping = Some((task, h));
            }
            Err(e) => self.message = Some((format!("cannot stop {task}: {e}"), true)),
        }
    }

    /// Whether a stop has ended (its outcome is then the message).
    fn poll_stop(&mut self) -> bool {
        if !self.stopping.as_ref().is_some_and(|(_, h)| h.is_finished()) {
            return false;
        }
        let Some((task, h)) = self.stopping.take() else {
            return false;
        };
        self.message = Some(match h.join() {
            Ok(Ok(_)) => (format!("task {task} stopped"), false),
            Ok(Err(e)) => (format!("cannot stop {task}: {}", e.one_line()), true),
            Err(_) => (format!("stopping {task} failed"), true),
        });
        true
    }

    /// Whether something was written to stderr (lanco's own messages, as
    /// a stop's) since the last look: its last line is the message.
    fn poll_stderr(&mut self, screen: &Screen) -> bool {
        match screen.captured() {
            Some(line) => {
                self.message = Some((line, false));
                true
            }
            None => false,
        }
    }

    fn draw(&mut self, f: &mut Frame) {
        let header = self.usage.as_ref().map(view::header).unwrap_or_default();
        let log_height = if self.show_log {
            (f.area().height / 3).clamp(3, 14)
        } else {
            0
        };
        let [top, table, log, status] = Layout::vertical([
            Constraint::Length(header.len().max(1) as u16 + 1),
            Constraint::Min(3),
            Constraint::Length(log_height),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let warn = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
        let lines: Vec<Line> = header
            .into_iter()
            .map(|(text, near)| match near {
                true => Line::styled(text, warn),
                false => Line::raw(text),
            })
            .collect();
        f.render_widget(Paragraph::new(lines), top);
        self.draw_table(f, table, warn);
        if self.show_log {
            let title = match &self.sel_task {
                Some((t, _)) => format!(" log: {t} (l hides) "),
                None => " log ".into(),
            };
            let inner = log_height.saturating_sub(2) as usize;
            let start = self.log.len().saturating_sub(inner);
            let lines: Vec<Line> = self.log[start..]
                .iter()
                .map(|l| Line::raw(l.as_str()))
                .collect();
            let block = Block::new().borders(Borders::ALL).title(title);
            f.render_widget(Paragraph::new(lines).block(block), log);
        }
        let status_line = match (&self.prompt, &self.message) {
            (Some(t), _) => Line::styled(
                format!("Stop task {t}? (y/n)"),
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ),
            (None, Some((m, true))) => Line::styled(m.as_str(), warn),
            (None, Some((m, false))) => Line::raw(m.as_str()),
            (None, None) => Line::styled(
                format!(
                    "↑↓/jk select · s/m/c/n sort (by {}) · l log · K stop · q quit",
                    self.sort.word()
                ),
                Style::new().add_modifier(Modifier::DIM),
            ),
        };
        f.render_widget(Paragraph::new(status_line), status);
    }

    /// The rows that fit (only those are formatted: a namespace may have
    /// thousands), scrolled to keep the selection in view.
    fn draw_table(&mut self, f: &mut Frame, area: Rect, warn: Style) {
        let tasks = self.usage.as_ref().map_or(&[][..], |u| &u.tasks[..]);
        let fit = usize::from(area.height.saturating_sub(1)).max(1);
        if self.sel < self.offset {
            self.offset = self.sel;
        } else if self.sel >= self.offset + fit {
            self.offset = self.sel + 1 - fit;
        }
        self.offset = self.offset.min(tasks.len().saturating_sub(fit));
        let shown = &tasks[self.offset..tasks.len().min(self.offset + fit)];
        let cells: Vec<[String; 11]> = shown.iter().map(view::cells).collect();
        let mut widths = view::widths(&cells);
        // Names and users as wide as the widest of all, so that the columns
        // stay put while scrolling.
        for t in tasks {
            widths[0] = widths[0].max(t.task.as_str().len());
            widths[2] = widths[2].max(t.user.len());
        }
        let widths = widths.map(|w| Constraint::Length(w.min(32) as u16));
        let align = |i: usize, s: String| match view::COLUMNS[i].1 {
            true => Line::raw(s).right_aligned(),
            false => Line::raw(s),
        };
        let rows = cells.into_iter().zip(shown).map(|(row, t)| {
            let row = Row::new(
                row.into_iter()
                    .enumerate()
                    .map(|(i, c)| align(i, c))
                    .collect::<Vec<_>>(),
            );
            if view::near_limit(t) {
                row.style(warn)
            } else {
                row
            }
        });
        let titles = Row::new(
            view::COLUMNS
                .iter()
                .enumerate()
                .map(|(i, (t, _))| align(i, t.to_string()))
                .collect::<Vec<_>>(),
        )
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED));
        let table = Table::new(rows, widths)
            .header(titles)
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
            .highlight_symbol("> ");
        let mut state = TableState::default()
            .with_selected((!tasks.is_empty()).then_some(self.sel - self.offset));
        f.render_stateful_widget(table, area, &mut state);
    }
}

/// A log line as the pane can show it: tabs as spaces, terminal escape
/// sequences and other control characters left out.
pub(super) fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\t' => out.push_str("    "),
            // CSI: ESC [ parameters, then one final byte in @..~.
            '\u{1b}' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_lines_are_made_printable() {
        assert_eq!(
            super::printable("\u{1b}[31mred\u{1b}[0m\tx\u{7}"),
            "red    x"
        );
    }
}
