//! The page's HTML (maud escapes every value it interpolates).

use maud::{DOCTYPE, Markup, html};

use super::last_write::LastWrite;
use crate::mutations::Todo;

/// Everything the page shows.
pub(crate) struct PageData<'a> {
    pub(crate) region: &'a str,
    pub(crate) instance: &'a str,
    pub(crate) primary_region: String,
    pub(crate) is_primary: bool,
    pub(crate) todos: &'a [Todo],
    /// There are more todos than the page shows.
    pub(crate) more: bool,
    pub(crate) last_write: Option<LastWrite>,
    /// An error to show above the form (the page is then answered with
    /// that error's status).
    pub(crate) error: Option<String>,
    /// What the title field held when the form failed, to type it again.
    pub(crate) title: Option<&'a str>,
}

const STYLE: &str = "
body { font: 16px/1.45 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #1d1d1f; }
h1 { margin-bottom: 0.2rem; }
.where { color: #555; margin-top: 0; }
.error { background: #fdecea; border: 1px solid #e0a19a; padding: 0.6rem 0.8rem; border-radius: 6px; }
#last-write { background: #eef6ee; border: 1px solid #a8cfa8; padding: 0.6rem 0.8rem; border-radius: 6px; }
#last-write.skipped { background: #fff7e0; border-color: #e4c76b; }
form.add { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; margin: 1rem 0; }
form.add input[name=title] { flex: 1 1 16rem; padding: 0.4rem; font-size: 1rem; }
ul#todos { list-style: none; padding: 0; }
ul#todos li { display: flex; gap: 0.5rem; align-items: center; padding: 0.35rem 0; border-bottom: 1px solid #eee; }
ul#todos li .title { flex: 1; overflow-wrap: anywhere; }
ul#todos li.done .title { text-decoration: line-through; color: #888; }
ul#todos form { margin: 0; }
footer { color: #666; font-size: 0.9rem; margin-top: 2rem; }
";

fn ms(v: f64) -> String {
    format!("{v:.1} ms")
}

fn last_write(last: &LastWrite, primary_region: &str) -> Markup {
    html! {
        @match (last.rpc_ms, last.wait_ms) {
            _ if last.late => section #last-write .skipped {
                strong { "Your last write committed on the primary" }
                " (" (ms(last.total_ms)) "), but this region's replica did not replay it "
                "within the wait, so the list below may not show it yet. It will appear "
                "shortly: do not send it again."
            },
            (Some(rpc), Some(wait)) => section #last-write {
                strong { "Your last write: " (ms(last.total_ms)) }
                " = RPC to " (primary_region) " " (ms(rpc))
                @if let Some(p) = last.primary_ms { " (" (ms(p)) " of it in the transaction on the primary)" }
                " + wait for this region's replica " (ms(wait)) ". "
                "The list below includes it: the page waited for the replica."
            },
            (Some(rpc), None) => section #last-write .skipped {
                strong { "Your last write: " (ms(last.total_ms)) }
                " = RPC to " (primary_region) " " (ms(rpc)) ", wait skipped. "
                "If it is missing below, that is a stale read: this region's replica "
                "had not replayed it yet when the page was read. Reload in a moment."
            },
            (None, _) => section #last-write {
                strong { "Your last write: " (ms(last.total_ms)) }
                " in this region, next to the primary: no RPC, no wait."
            },
        }
    }
}

/// The whole page.
pub(crate) fn page(data: &PageData<'_>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Todos · " (data.region) }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "Todos" }
                    p.where {
                        "Served by region " strong #region { (data.region) }
                        ", instance " code #instance { (data.instance) } ". "
                        "Primary region: " strong #primary-region { (data.primary_region) } ". "
                        @if data.is_primary {
                            "This instance writes next to the primary."
                        } @else {
                            "This instance reads its local replica and sends writes to "
                            (data.primary_region) "."
                        }
                    }
                }
                @if let Some(error) = &data.error {
                    p.error #error role="alert" { (error) }
                }
                @if let Some(last) = &data.last_write {
                    (last_write(last, &data.primary_region))
                }
                form.add method="post" action="/ui/todos" {
                    label for="title" { "New todo" }
                    input #title name="title" type="text" autofocus value=[data.title];
                    label {
                        input #skip-wait name="skip_wait" type="checkbox" value="on";
                        " skip the wait (see a stale read)"
                    }
                    button #add type="submit" { "Add" }
                }
                @if data.todos.is_empty() {
                    p #empty { "Nothing to do." }
                } @else {
                    ul #todos {
                        @for todo in data.todos {
                            li.done[todo.done] data-id=(todo.id) {
                                span.title { (todo.title) }
                                form method="post" action={ "/ui/todos/" (todo.id) "/toggle" } {
                                    input type="hidden" name="done" value=(!todo.done);
                                    button type="submit" { @if todo.done { "undo" } @else { "done" } }
                                }
                                form method="post" action={ "/ui/todos/" (todo.id) "/delete" } {
                                    button type="submit" { "delete" }
                                }
                            }
                        }
                    }
                }
                @if data.more {
                    p #more { "… and more: the page shows the first " (data.todos.len()) "." }
                }
                footer {
                    "Each write travels as one RPC to the primary region, then this page waits "
                    "until this region's replica has replayed it, so the list you land on "
                    "includes your write. Your browser carries the write's position in the "
                    code { "fly_lsn" } " cookie, so any region's page waits for it too. "
                    "Timings per write are also in the response's " code { "Server-Timing" }
                    " header (your browser's developer tools, Network tab)."
                }
            }
        }
    }
}
