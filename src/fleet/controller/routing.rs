//! Work routing between the controllers of one shared store (issue 16).
//!
//! With a shared store ([`FleetStore::is_shared`]), every task is a row before it is sent. A
//! task whose node holds a session here goes down it at once, its row claimed by this
//! controller; any other is stored unclaimed and announced (`NOTIFY`), and the claimer of the
//! controller that holds the node's session claims it for a lease and sends it. The
//! coordinator (the controller whose run dispatched it) waits for the row to be closed with a
//! result, woken by the listener (`LISTEN`) or by a slow poll, and counts the task as its own
//! in-flight dispatch whichever controller relays it, so its run's rate control holds.
//!
//! A result is stored in its row by whichever controller receives it and announced; the
//! coordinator reads it from there. Progress events ([`TaskEvent`]) reach the coordinator only
//! from a session it holds itself: a relayed task's events are not forwarded.
//!
//! Each controller has a random id per start and writes a heartbeat on the listener's own
//! connection. One whose heartbeat could not be written for [`STALL_AFTER`] stops taking work
//! (closes its agents' sessions, refuses new ones, and its API answers 503) until the
//! database is back; the others recover its runs after [`DEAD_AFTER`].
//!
//! **Architecture Invariant:** a task is sent by the controller that claimed it, a result is
//! stored once, and a result nobody waits for any more (its task abandoned) is recorded as a
//! late run, never dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};

use super::{Controller, DispatchError, LedgerError, Taken, TaskEvent, ThrottledLog};
use crate::fleet::wire::{ControllerMsg, Task, TaskResult};
use crate::store::{FleetStore, LedgerOp, Notice, RoutedClose, RoutedState, RoutedTask};

/// How long a claim holds a task before another controller may claim it, unless renewed.
pub(crate) const LEASE: Duration = Duration::from_secs(30);
/// How often the claimer looks without being woken.
const CLAIM_TICK: Duration = Duration::from_secs(1);
/// How often the claimer renews its leases (a third of [`LEASE`]: two renewals may fail).
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often a controller writes its heartbeat.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);
/// A controller that could not write its heartbeat for this long stops taking work.
pub(crate) const STALL_AFTER: Duration = Duration::from_secs(20);
/// A controller whose heartbeat is this old is dead: its running runs are recovered.
pub const DEAD_AFTER: Duration = Duration::from_secs(30);
/// How long a routed task may stay unclaimed before its node counts as offline everywhere.
const CLAIM_WAIT: Duration = Duration::from_secs(5);
/// The coordinator's safety net: it reads its tasks' rows this often without a notice.
const POLL: Duration = Duration::from_secs(5);

/// Milliseconds, as the store takes them.
fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A dispatch's wait for its routed task's result.
#[derive(Default)]
struct Waiter {
    /// Woken by a notice of the result, or by the result itself.
    notify: Notify,
    /// The result, when it came through a session of this controller: no read needed.
    answer: Mutex<Option<String>>,
}

impl Waiter {
    fn take(&self) -> Option<String> {
        self.answer.lock().ok()?.take()
    }
}

/// What the controller keeps for routing: the tasks its runs wait for, the progress events of
/// those sent down its own sessions, and its liveness.
pub(super) struct Routing {
    /// Per task this controller coordinates: what wakes its wait.
    waiting: Mutex<HashMap<String, Arc<Waiter>>>,
    /// Per task sent down a session here: its node and where its events go.
    events: Mutex<HashMap<String, (String, mpsc::UnboundedSender<TaskEvent>)>>,
    /// Wakes the claimer.
    claim: Notify,
    /// When the heartbeat was last written.
    last_beat: Mutex<Instant>,
    /// Whether the controller stopped taking work (see [`STALL_AFTER`]).
    stalled: AtomicBool,
    /// Whether the claimer and listener were started.
    started: AtomicBool,
}

impl Routing {
    pub(super) fn new() -> Routing {
        Routing {
            waiting: Mutex::new(HashMap::new()),
            events: Mutex::new(HashMap::new()),
            claim: Notify::new(),
            last_beat: Mutex::new(Instant::now()),
            stalled: AtomicBool::new(false),
            started: AtomicBool::new(false),
        }
    }

    fn wake(&self, id: &str) {
        if let Ok(waiting) = self.waiting.lock()
            && let Some(waiter) = waiting.get(id)
        {
            waiter.notify.notify_one();
        }
    }

    /// Hands a stored result to its dispatch, when it waits here.
    fn deliver(&self, id: &str, json: String) {
        if let Ok(waiting) = self.waiting.lock()
            && let Some(waiter) = waiting.get(id)
        {
            if let Ok(mut answer) = waiter.answer.lock() {
                *answer = Some(json);
            }
            waiter.notify.notify_one();
        }
    }

    /// Forgets a task's wait and events when dropped.
    fn forget(&self, id: &str) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.remove(id);
        }
        if let Ok(mut events) = self.events.lock() {
            events.remove(id);
        }
    }

    /// The events channel of task `id`, if it is `node`'s.
    pub(super) fn events_for(
        &self,
        node: &str,
        id: &str,
    ) -> Option<mpsc::UnboundedSender<TaskEvent>> {
        let events = self.events.lock().ok()?;
        let (owner, tx) = events.get(id)?;
        (owner == node).then(|| tx.clone())
    }
}

/// Removes a routed task's wait when the dispatch ends, however it ends.
struct WaitGuard<'a> {
    routing: &'a Routing,
    id: String,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.routing.forget(&self.id);
    }
}

impl Controller {
    /// This controller's id: random per start, named in the runs it coordinates and in its
    /// heartbeat row.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether its store is shared with other controllers, so tasks are routed through it.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Whether it stopped taking work because it could not write its heartbeat for
    /// [`STALL_AFTER`] (always false for a store that is not shared).
    pub fn is_stalled(&self) -> bool {
        self.routing.stalled.load(Ordering::Relaxed)
    }

    /// Starts the claimer and the listener (with the heartbeat), once; nothing when the
    /// store is not shared.
    pub(super) fn start_routing(self: &Arc<Self>) -> Result<(), super::ControllerError> {
        if !self.shared || self.routing.started.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let listener = self
            .with_store(|s| s.listen())?
            .map_err(|err| super::ControllerError::Setup(format!("store listener: {err}")))?;
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("steward-listen".to_string())
            .spawn(move || listen(weak, listener))
            .map_err(|err| super::ControllerError::Setup(format!("store listener: {err}")))?;
        tokio::spawn(claimer(Arc::clone(self)));
        tracing::info!(
            controller = %self.id,
            "controller {} routes work through the shared store",
            self.id
        );
        Ok(())
    }

    /// [`Controller::dispatch_task`] on a shared store: the task is a row, sent down this
    /// controller's session of the node when it has one, claimed by the controller that holds
    /// it otherwise; the wait ends when the row holds a result.
    pub(super) async fn dispatch_routed(
        self: &Arc<Self>,
        run_id: &str,
        task: Task,
        node: &str,
        wait: Duration,
        events: Option<mpsc::UnboundedSender<TaskEvent>>,
    ) -> Result<TaskResult, DispatchError> {
        if self.is_stalled() {
            return Err(DispatchError::Unreachable {
                node: node.to_string(),
                reason: "this controller cannot reach its database".to_string(),
            });
        }
        let id = task.id.clone();
        let not_stored = |reason: String| DispatchError::NotStored {
            node: node.to_string(),
            source: LedgerError::Write(reason),
        };
        let payload = serde_json::to_string(&task).map_err(|err| not_stored(err.to_string()))?;
        let session_tx = self
            .sessions
            .lock()
            .map_err(|_| DispatchError::SessionsPoisoned)?
            .get(node)
            .map(|session| session.tx.clone());
        let routed = RoutedTask {
            id: id.clone(),
            node: node.to_string(),
            run_id: run_id.to_string(),
            issued_at: crate::engine::record::timestamp(),
            payload,
        };
        // Waiting before the row exists: another controller may claim the task, and its
        // result be announced, before this one hears that the row was committed.
        let waiter = Arc::new(Waiter::default());
        if let Ok(mut waiting) = self.routing.waiting.lock() {
            waiting.insert(id.clone(), Arc::clone(&waiter));
        }
        let _guard = WaitGuard {
            routing: &self.routing,
            id: id.clone(),
        };
        // Through the ledger: the tasks of a wave share one transaction and one notice.
        self.ledger(LedgerOp::Route {
            task: routed,
            held_by: session_tx.as_ref().map(|_| self.id.clone()),
            window_ms: ms(super::TASK_START_WINDOW),
            lease_ms: ms(LEASE),
        })
        .await
        .map_err(|source| DispatchError::NotStored {
            node: node.to_string(),
            source,
        })?;

        if let Some(tx) = session_tx {
            if let (Some(events), Ok(mut map)) = (events, self.routing.events.lock()) {
                map.insert(id.clone(), (node.to_string(), events));
            }
            if tx.try_send(ControllerMsg::Task(task)).is_err() {
                let _ = self.ledger(LedgerOp::Withdraw { id: id.clone() }).await;
                return Err(DispatchError::WentOffline(node.to_string()));
            }
        }
        let routed_at = Instant::now();
        let deadline = routed_at + wait;
        // Nothing to read before the first wake: the row was just written.
        let mut read = false;
        loop {
            if let Some(json) = waiter.take() {
                return answer(node, &json);
            }
            if read {
                let task_id = id.clone();
                let state = self
                    .store(move |s| s.routed_state(&task_id))
                    .await
                    .map_err(|err| err.to_string())
                    .and_then(|r| r.map_err(|err| err.to_string()));
                match state {
                    Ok(RoutedState::Answered(json)) => return answer(node, &json),
                    Ok(RoutedState::Gone) => return Err(DispatchError::Dropped(node.to_string())),
                    Ok(RoutedState::Waiting { claimed: false, .. })
                        if routed_at.elapsed() >= CLAIM_WAIT =>
                    {
                        // No controller holds the node's connection: it is offline everywhere.
                        let task_id = id.clone();
                        if let Ok(Ok(true)) =
                            self.store(move |s| s.withdraw_unclaimed(&task_id)).await
                        {
                            return Err(DispatchError::Offline(node.to_string()));
                        }
                    }
                    Ok(RoutedState::Waiting { expired: true, .. }) => {
                        return match self.abandon(&id).await {
                            Some(json) => answer(node, &json),
                            None => Err(DispatchError::Unreachable {
                                node: node.to_string(),
                                reason: "its connection was lost, and no controller it reconnected to took the task before it expired".to_string(),
                            }),
                        };
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(node, task = %id, "reading the task's row: {err}"),
                }
            }
            read = true;
            let now = Instant::now();
            if now >= deadline {
                return match self.abandon(&id).await {
                    Some(json) => answer(node, &json),
                    None => Err(DispatchError::NoResult {
                        node: node.to_string(),
                        secs: wait.as_secs(),
                    }),
                };
            }
            tokio::select! {
                () = waiter.notify.notified() => {}
                () = tokio::time::sleep(POLL.min(deadline - now)) => {}
            }
        }
    }

    /// Gives up on a routed task: its result if it came meanwhile.
    async fn abandon(self: &Arc<Self>, id: &str) -> Option<String> {
        let task_id = id.to_string();
        match self.store(move |s| s.abandon_task(&task_id)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => {
                tracing::error!(task = %id, "abandoning the task: {err}");
                None
            }
            Err(err) => {
                tracing::error!(task = %id, "abandoning the task: {err}");
                None
            }
        }
    }

    /// [`Controller::result`] on a shared store: stores the result in the task's row and
    /// announces it to its coordinator, or records it as late when nobody waits for it any
    /// more; a result stored before is acknowledged again.
    pub(super) async fn result_routed(
        self: &Arc<Self>,
        node: &str,
        task_id: &str,
        result: TaskResult,
    ) -> Taken {
        let json = match serde_json::to_string(&result) {
            Ok(json) => json,
            Err(err) => {
                tracing::error!(node, task = task_id, "result not taken: {err}");
                return Taken::Refused;
            }
        };
        // The common case through the ledger (the results of a wave share a transaction and
        // a notice); the others (closed, abandoned, never issued) are told apart by the store.
        let answered = self
            .ledger(LedgerOp::Answer {
                id: task_id.to_string(),
                node: node.to_string(),
                result: json.clone(),
                at: crate::engine::record::timestamp(),
            })
            .await;
        let closed = match answered {
            Ok(true) => Ok(RoutedClose::Stored),
            Ok(false) => {
                let (owner, task, stored) = (node.to_string(), task_id.to_string(), json.clone());
                self.store_write(move |s, _| s.close_routed(&task, &owner, &stored))
                    .await
                    .map_err(|err| err.to_string())
                    .and_then(|r| r.map_err(|err| err.to_string()))
            }
            Err(err) => Err(err.to_string()),
        };
        match closed {
            Ok(RoutedClose::Stored) => {
                self.routing.deliver(task_id, json);
                Taken::Ack
            }
            Ok(RoutedClose::Closed) => Taken::Ack,
            Ok(RoutedClose::NotIssued) => super::refused(node, task_id),
            Ok(RoutedClose::Abandoned) => self.record_abandoned(node, task_id, result, json).await,
            Err(err) => {
                tracing::error!(
                    node,
                    task = task_id,
                    "the result could not be stored, so it is not acknowledged: {err}"
                );
                Taken::NotStored
            }
        }
    }

    /// A result for a task nobody waits for: recorded as a late run, then its task closed.
    async fn record_abandoned(
        self: &Arc<Self>,
        node: &str,
        task_id: &str,
        result: TaskResult,
        json: String,
    ) -> Taken {
        let record_late = Arc::clone(&self.late_results);
        let (owner, task) = (node.to_string(), task_id.to_string());
        let late = self
            .store_write(move |s, _| record_late(s, &owner, &task, &result))
            .await
            .map_err(|err| err.to_string())
            .and_then(|r| r.map_err(|err| err.to_string()));
        if let Err(err) = late {
            tracing::error!(
                node,
                task = task_id,
                "the late result could not be recorded (not acknowledged): {err}"
            );
            return Taken::NotStored;
        }
        let closed = self
            .ledger(LedgerOp::Close {
                id: task_id.to_string(),
                node: node.to_string(),
                result: json,
                at: crate::engine::record::timestamp(),
            })
            .await;
        match closed {
            Ok(_) => Taken::Ack,
            Err(err) => {
                tracing::error!(node, task = task_id, "closing the task: {err}");
                Taken::NotStored
            }
        }
    }

    /// A node's session here began: the claimer looks for its tasks.
    pub(super) fn session_started(&self) {
        if self.shared {
            self.routing.claim.notify_one();
        }
    }

    /// A node's session here ended: the leases this controller holds on its tasks end, so
    /// the controller it reconnects to sends them.
    pub(super) async fn session_ended(self: &Arc<Self>, node: &str) {
        if !self.shared {
            return;
        }
        let (id, owner) = (self.id.clone(), node.to_string());
        match self.store(move |s| s.release_tasks(&id, &owner)).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(node, "releasing its tasks: {err}"),
            Err(err) => tracing::warn!(node, "releasing its tasks: {err}"),
        }
    }

    /// Checks the heartbeat's age and stops or resumes taking work.
    fn check_liveness(&self) {
        let age = self
            .routing
            .last_beat
            .lock()
            .map(|at| at.elapsed())
            .unwrap_or(Duration::MAX);
        let stalled = age > STALL_AFTER;
        if stalled == self.routing.stalled.swap(stalled, Ordering::SeqCst) {
            return;
        }
        if stalled {
            tracing::error!(
                controller = %self.id,
                "no heartbeat written for {}s: the database is out of reach, so this controller stops taking work (agents' sessions closed, API 503) until it is back",
                age.as_secs()
            );
            for node in self.online() {
                self.disconnect(&node);
            }
        } else {
            tracing::info!(controller = %self.id, "the database is back: taking work again");
        }
    }
}

/// The stored result of a routed task.
fn answer(node: &str, json: &str) -> Result<TaskResult, DispatchError> {
    serde_json::from_str(json).map_err(|err| DispatchError::Unreachable {
        node: node.to_string(),
        reason: format!("its stored result cannot be read: {err}"),
    })
}

/// Claims the tasks of the nodes connected here and sends them down their sessions; renews
/// the leases it holds; watches the heartbeat's age.
async fn claimer(controller: Arc<Controller>) {
    let mut errors = ThrottledLog::default();
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            () = controller.routing.claim.notified() => {}
            () = tokio::time::sleep(CLAIM_TICK) => {}
        }
        controller.check_liveness();
        if controller.is_stalled() {
            continue;
        }
        let nodes: Vec<String> = controller.online().into_iter().collect();
        if nodes.is_empty() {
            continue;
        }
        let id = controller.id.clone();
        // Leases are renewed on the tick, not on every wake (a wave wakes the claimer often,
        // and renewing rewrites every open task's row).
        let renew = renewed.elapsed() >= RENEW_EVERY;
        if renew {
            renewed = Instant::now();
        }
        let claimed = controller
            .store(move |s: &mut dyn FleetStore| {
                if renew {
                    s.renew_leases(&id, &nodes, ms(LEASE))?;
                }
                s.claim_tasks(&id, &nodes, ms(LEASE))
            })
            .await
            .map_err(|err| err.to_string())
            .and_then(|r| r.map_err(|err| err.to_string()));
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(err) => {
                errors.log(&format!("claiming tasks: {err}"));
                continue;
            }
        };
        for task in claimed {
            let sent = match serde_json::from_str::<Task>(&task.payload) {
                Ok(wire_task) => controller
                    .sessions
                    .lock()
                    .ok()
                    .and_then(|s| s.get(&task.node).map(|session| session.tx.clone()))
                    .is_some_and(|tx| tx.try_send(ControllerMsg::Task(wire_task)).is_ok()),
                Err(err) => {
                    tracing::error!(task = %task.id, "a routed task cannot be read: {err}");
                    false
                }
            };
            if sent {
                tracing::debug!(node = %task.node, task = %task.id, "sent a routed task");
            } else {
                controller.session_ended(&task.node).await;
            }
        }
    }
}

/// The listener's thread: heartbeats, and notices passed on to the claimer and to waiting
/// dispatches. It ends when the controller is dropped.
fn listen(controller: Weak<Controller>, mut listener: Box<dyn crate::store::StoreListener>) {
    let mut errors = ThrottledLog::default();
    let mut last_attempt: Option<Instant> = None;
    loop {
        let Some(ctl) = controller.upgrade() else {
            return;
        };
        if last_attempt.is_none_or(|at| at.elapsed() >= HEARTBEAT_EVERY) {
            last_attempt = Some(Instant::now());
            match listener.heartbeat(&ctl.id) {
                Ok(()) => {
                    if let Ok(mut at) = ctl.routing.last_beat.lock() {
                        *at = Instant::now();
                    }
                }
                Err(err) => errors.log(&format!("writing the heartbeat: {err}")),
            }
        }
        drop(ctl);
        match listener.wait(CLAIM_TICK) {
            Ok(notices) => {
                let Some(ctl) = controller.upgrade() else {
                    return;
                };
                let online = ctl.online();
                for notice in notices {
                    match notice {
                        Notice::Task { node } if online.contains(&node) => {
                            ctl.routing.claim.notify_one();
                        }
                        Notice::Task { .. } => {}
                        Notice::Result { id } => ctl.routing.wake(&id),
                    }
                }
            }
            Err(err) => {
                errors.log(&format!("listening for routed work: {err}"));
                std::thread::sleep(CLAIM_TICK);
            }
        }
    }
}
