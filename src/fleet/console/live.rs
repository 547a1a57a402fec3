//! A running run's live progress: `GET /runs/{id}/events`, server-sent events read from the
//! store's ledger of the run's tasks (so any controller of a shared store can show a run
//! another coordinates), and `/console.js`, the page's script that shows them.
//!
//! The stream polls the store once a second and sends a `progress` event when something
//! moved (each task's node and whether its result arrived), then one `done` event when the
//! run is no longer running, and ends; the script then loads the finished page once.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::error_page;
use crate::fleet::controller::Controller;
use crate::store::{RunProgress, RunStatus};

/// How often the stream reads the run's progress.
const POLL: Duration = Duration::from_secs(1);

/// The longest a stream lasts; the script reconnects (EventSource does by itself).
const LONGEST: Duration = Duration::from_secs(30 * 60);

/// The script of a running run's page. Served from this origin (the content security policy
/// allows no inline script).
pub const SCRIPT: &str = r#""use strict";
// steward console: a running run's live progress (server-sent events).
(function () {
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var source = new EventSource(live.getAttribute("data-events"));
  source.addEventListener("progress", function (event) {
    var progress = JSON.parse(event.data);
    document.getElementById("live-count").textContent =
      progress.answered + " of " + progress.nodes.length + " nodes answered";
    var list = document.getElementById("live-nodes");
    while (list.firstChild) { list.removeChild(list.firstChild); }
    progress.nodes.forEach(function (node) {
      var item = document.createElement("li");
      item.textContent = node.node + ": " + (node.answered ? "answered" : "waiting");
      item.className = node.answered ? "ok" : "pending";
      list.appendChild(item);
    });
  });
  source.addEventListener("done", function () {
    source.close();
    window.location.reload();
  });
})();
"#;

/// `GET /console.js`.
pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

/// What a `progress` event says.
#[derive(Debug, PartialEq, Serialize)]
struct Progress {
    status: &'static str,
    answered: usize,
    nodes: Vec<NodeProgress>,
}

#[derive(Debug, PartialEq, Serialize)]
struct NodeProgress {
    node: String,
    answered: bool,
}

impl From<&RunProgress> for Progress {
    fn from(progress: &RunProgress) -> Progress {
        // A node may have had several tasks (a plan round, then the apply): the last counts.
        let mut nodes: Vec<NodeProgress> = Vec::new();
        for task in &progress.tasks {
            let answered = task.closed_at.is_some();
            match nodes.iter_mut().find(|n| n.node == task.node) {
                Some(node) => node.answered = answered,
                None => nodes.push(NodeProgress {
                    node: task.node.clone(),
                    answered,
                }),
            }
        }
        Progress {
            status: progress.status.as_str(),
            answered: nodes.iter().filter(|n| n.answered).count(),
            nodes,
        }
    }
}

/// `GET /runs/{id}/events`: the run's progress as server-sent events.
pub async fn events(State(controller): State<Arc<Controller>>, Path(id): Path<String>) -> Response {
    let wanted = id.clone();
    match controller.store(move |s| s.run_progress(&wanted)).await {
        Ok(Ok(Some(_))) => {}
        Ok(Ok(None)) => return error_page(StatusCode::NOT_FOUND, &format!("no run `{id}`")),
        Ok(Err(err)) => {
            return error_page(StatusCode::SERVICE_UNAVAILABLE, &format!("error: {err}"));
        }
        Err(err) => {
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("error: {err}"));
        }
    }
    let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(4);
    tokio::spawn(follow(controller, id, tx));
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Sends the run's progress while it runs, then `done`; stops when the page goes away.
async fn follow(
    controller: Arc<Controller>,
    id: String,
    tx: mpsc::Sender<Result<SseEvent, Infallible>>,
) {
    let started = tokio::time::Instant::now();
    let mut last: Option<Progress> = None;
    while started.elapsed() < LONGEST {
        let wanted = id.clone();
        let progress = match controller.store(move |s| s.run_progress(&wanted)).await {
            Ok(Ok(Some(progress))) => progress,
            Ok(Ok(None)) => return,
            Ok(Err(err)) => {
                tracing::debug!(run = %id, "live progress: {err}");
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(_) => return,
        };
        if progress.status != RunStatus::Running {
            let _ = tx
                .send(Ok(SseEvent::default()
                    .event("done")
                    .data(progress.status.as_str())))
                .await;
            return;
        }
        let now = Progress::from(&progress);
        if last.as_ref() != Some(&now) {
            let data = serde_json::to_string(&now).unwrap_or_else(|_| "{}".to_string());
            if tx
                .send(Ok(SseEvent::default().event("progress").data(data)))
                .await
                .is_err()
            {
                return;
            }
            last = Some(now);
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TaskProgress;

    #[test]
    fn a_nodes_last_task_says_whether_it_answered() {
        let task = |node: &str, closed: bool| TaskProgress {
            node: node.into(),
            issued_at: "t".into(),
            closed_at: closed.then(|| "t".into()),
        };
        let progress = RunProgress {
            status: RunStatus::Running,
            tasks: vec![task("web", true), task("db", true), task("web", false)],
        };
        let shown = Progress::from(&progress);
        assert_eq!(shown.answered, 1);
        assert_eq!(
            shown.nodes,
            [
                NodeProgress {
                    node: "web".into(),
                    answered: false
                },
                NodeProgress {
                    node: "db".into(),
                    answered: true
                }
            ]
        );
    }
}
