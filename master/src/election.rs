//! Leader election among masters through etcd v3.
//!
//! Every candidate holds an etcd lease that it keeps alive. Winning is one
//! transaction: create the leader key `<prefix>leader` (value: the
//! candidate's MasterInfo JSON, attached to its lease) if it does not exist.
//! The key's create revision is the leadership *term*: it grows with every
//! new leader and never repeats, and [`Fence`] uses it to refuse registry
//! writes from a master whose term has ended. The others watch the key and
//! try again the moment it is deleted; everyone (candidates and plain
//! observers) publishes the current leader's info from the same watch.
//!
//! # Timing
//!
//! With the lease TTL `T` (default [`DEFAULT_TTL`], 5 s; etcd raises
//! anything below 2 s to 2 s):
//! - the leader renews its lease every `T/3`;
//! - a leader that is SIGKILLed stops renewing; etcd expires the lease at
//!   most `T` after the last renewal (its expiry check runs every 500 ms),
//!   deletes the key, and the waiting candidates see the delete at once and
//!   race one transaction: a new leader within about `T + 0.5 s` (5.5 s by
//!   default), usually sooner since the last renewal was up to `T/3` before
//!   the kill;
//! - a leader that resigns, or drops its [`Election`], revokes its lease:
//!   the next leader follows within one round trip;
//! - a leader that cannot renew (etcd unreachable, partitioned) steps down
//!   on its own when `T` minus a margin has passed since the last renewal
//!   it *sent* that succeeded, which is before etcd can have expired the
//!   lease, so two masters never both believe they lead (up to clock rate
//!   differences, which the margin covers). A leader whose key is deleted
//!   or replaced by anyone steps down when the watch reports it.
//!
//! Losing leadership is final for an [`Election`]: its state becomes
//! [`State::Lost`] and it stops campaigning. A master that led must not go on
//! serving from the in-memory state of its ended term; like a Mesos master
//! it should exit (a supervisor restarts it as a fresh candidate), or at
//! least drop its state and campaign again with a new `Election`.
//! A candidate that never led keeps campaigning through etcd outages.

use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, EventType, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use tokio::sync::watch;

use crate::registry::{EtcdConfig, Fence};

/// The lease TTL unless [`ElectionOptions::ttl`] says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

/// How long to wait before retrying after etcd failed a request.
const RETRY: Duration = Duration::from_millis(250);

/// At most one log line about a failing etcd per this interval.
const COMPLAIN_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ElectionOptions {
    /// The lease TTL (whole seconds; at least 2 s, etcd's minimum).
    pub ttl: Duration,
}

impl Default for ElectionOptions {
    fn default() -> Self {
        ElectionOptions { ttl: DEFAULT_TTL }
    }
}

/// The master that leads now, as its leader key says.
#[derive(Debug, Clone, PartialEq)]
pub struct Leader {
    /// The leader's MasterInfo JSON, as it campaigned with it.
    pub info: serde_json::Value,
    /// The create revision of the leader key: grows with every new leader.
    pub term: i64,
    /// The leader's etcd lease.
    pub lease: i64,
}

/// Where this candidate stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not (yet) the leader; campaigning (or only observing).
    Follower,
    /// The leader, for the term (the leader key's create revision).
    Leading { term: i64 },
    /// Was the leader and is not any more (or resigned); terminal.
    Lost { reason: String },
}

/// Why an election could not start or resign.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("election at {at}: cannot {what}: {source}")]
    Etcd {
        at: String,
        what: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("election at {at}: cannot {what}: etcd did not answer within {after:?}")]
    Timeout {
        at: String,
        what: String,
        after: Duration,
    },
    #[error("election at {at}: cannot start the etcd client's runtime: {source}")]
    Runtime {
        at: String,
        #[source]
        source: std::io::Error,
    },
    #[error("election at {at}: the lease TTL {ttl:?} is not a whole number of seconds >= 2")]
    BadTtl { at: String, ttl: Duration },
}

/// A campaign (or an observation) in progress; see the module docs.
///
/// Runs on its own small runtime, so it keeps the lease alive however busy
/// the master's runtime is. Dropping it resigns (revokes the lease, which
/// hands leadership over at once) without waiting long.
pub struct Election {
    at: String,
    leader_key: String,
    request_timeout: Duration,
    leader: watch::Receiver<Option<Leader>>,
    state: watch::Receiver<State>,
    stop: watch::Sender<bool>,
    done: std::sync::mpsc::Receiver<()>,
    runtime: crate::registry::BackgroundRuntime,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("at", &self.at)
            .field("state", &*self.state.borrow())
            .field("leader", &*self.leader.borrow())
            .finish()
    }
}

impl Election {
    /// Starts campaigning with `candidate_info` (this master's MasterInfo
    /// JSON, what followers hand out as the leader). Returns once etcd
    /// granted the lease; leadership comes later: see [`Election::state`].
    pub fn campaign(
        config: &EtcdConfig,
        candidate_info: serde_json::Value,
        options: ElectionOptions,
    ) -> Result<Election, ElectionError> {
        Election::start(config, Some(candidate_info), options)
    }

    /// Follows who leads without campaigning (for tools, agents).
    pub fn observe(config: &EtcdConfig) -> Result<Election, ElectionError> {
        Election::start(config, None, ElectionOptions::default())
    }

    fn start(
        config: &EtcdConfig,
        candidate: Option<serde_json::Value>,
        options: ElectionOptions,
    ) -> Result<Election, ElectionError> {
        let at = config.display();
        let ttl_secs = options.ttl.as_secs() as i64;
        if options.ttl.subsec_nanos() != 0 || ttl_secs < 2 {
            return Err(ElectionError::BadTtl {
                at,
                ttl: options.ttl,
            });
        }
        let runtime =
            crate::registry::BackgroundRuntime::new("berth-election").map_err(|source| {
                ElectionError::Runtime {
                    at: at.clone(),
                    source,
                }
            })?;
        let timeout = config.request_timeout;
        let etcd_err = |what: &str| {
            let at = at.clone();
            let what = what.to_string();
            move |source| ElectionError::Etcd { at, what, source }
        };
        let timed_out = |what: &str| ElectionError::Timeout {
            at: at.clone(),
            what: what.to_string(),
            after: timeout,
        };

        let endpoints = config.endpoints.clone();
        let connect_options = config.connect_options();
        let client = runtime
            .block(timeout, async move {
                Client::connect(endpoints, Some(connect_options)).await
            })
            .ok_or_else(|| timed_out("connect"))?
            .map_err(etcd_err("connect"))?;
        // Granting the first lease here makes a bad endpoint or a cluster
        // without quorum an error of `campaign` itself.
        let lease = if candidate.is_some() {
            let mut c = client.clone();
            let sent = Instant::now();
            let granted = runtime
                .block(timeout, async move { c.lease_grant(ttl_secs, None).await })
                .ok_or_else(|| timed_out("grant a lease"))?
                .map_err(etcd_err("grant a lease"))?;
            Some(Lease::granted(granted.id(), granted.ttl(), sent))
        } else {
            None
        };

        let leader_key = format!("{}leader", config.prefix);
        let (leader_tx, leader_rx) = watch::channel(None);
        let (state_tx, state_rx) = watch::channel(State::Follower);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        let task = Campaign {
            complained: None,
            client,
            key: leader_key.clone(),
            candidate,
            ttl_secs,
            leader: leader_tx,
            state: state_tx,
            stop: stop_rx,
            request_timeout: timeout,
        };
        runtime.handle().spawn(async move {
            task.run(lease).await;
            let _ = done_tx.send(());
        });
        Ok(Election {
            at,
            leader_key,
            request_timeout: timeout,
            leader: leader_rx,
            state: state_rx,
            stop: stop_tx,
            done: done_rx,
            runtime,
        })
    }

    /// The current leader as last seen (`None`: no leader right now).
    pub fn leader(&self) -> Option<Leader> {
        self.leader.borrow().clone()
    }

    /// Changes of the leader (works in any runtime, or with `borrow` alone).
    pub fn watch_leader(&self) -> watch::Receiver<Option<Leader>> {
        self.leader.clone()
    }

    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// Changes of this candidate's state: becoming leader, losing it.
    pub fn watch_state(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    pub fn is_leader(&self) -> bool {
        matches!(*self.state.borrow(), State::Leading { .. })
    }

    /// The fence for registry writes while this candidate leads.
    pub fn fence(&self) -> Option<Fence> {
        match *self.state.borrow() {
            State::Leading { term } => Some(Fence {
                key: self.leader_key.clone(),
                term,
            }),
            _ => None,
        }
    }

    /// The full etcd key of the leader.
    pub fn leader_key(&self) -> &str {
        &self.leader_key
    }

    /// Blocks until `pred` holds for the state or `timeout` passes; the
    /// last state seen.
    pub fn wait_state(&self, timeout: Duration, pred: impl Fn(&State) -> bool) -> State {
        let deadline = Instant::now() + timeout;
        loop {
            let mut rx = self.state.clone();
            let now = rx.borrow_and_update().clone();
            if pred(&now) || Instant::now() >= deadline {
                return now;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            // A change after the borrow above wakes `changed` at once.
            match self
                .runtime
                .block(remaining, async move { rx.changed().await.is_ok() })
            {
                Some(true) => {}
                // Timed out, or the campaign ended (no more changes).
                _ => return self.state(),
            }
        }
    }

    /// Stops campaigning and revokes the lease (a leader hands over at
    /// once); waits for it up to the request timeout.
    pub fn resign(self) -> Result<(), ElectionError> {
        let _ = self.stop.send(true);
        self.done
            .recv_timeout(self.request_timeout + Duration::from_secs(1))
            .map_err(|_| ElectionError::Timeout {
                at: self.at.clone(),
                what: "resign".to_string(),
                after: self.request_timeout,
            })
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        // Best effort: let the task revoke the lease, but never hold up the
        // dropping thread for long (it may be a runtime's worker).
        if self.stop.send(true).is_ok() {
            let _ = self.done.recv_timeout(Duration::from_secs(1));
        }
    }
}

/// A candidate's lease.
#[derive(Debug, Clone, Copy)]
struct Lease {
    id: i64,
    ttl: Duration,
    /// When the request of the last grant or renewal that succeeded was
    /// sent: etcd expires the lease `ttl` after it received that request,
    /// so not before `renewed + ttl`.
    renewed: Instant,
}

impl Lease {
    fn granted(id: i64, ttl_secs: i64, sent: Instant) -> Lease {
        Lease {
            id,
            ttl: Duration::from_secs(ttl_secs.max(2) as u64),
            renewed: sent,
        }
    }
}

/// The campaign task's state.
struct Campaign {
    /// When the last complaint about etcd was logged: an outage is logged
    /// once every [`COMPLAIN_EVERY`], not on every retry.
    complained: Option<Instant>,
    client: Client,
    key: String,
    candidate: Option<serde_json::Value>,
    ttl_secs: i64,
    leader: watch::Sender<Option<Leader>>,
    state: watch::Sender<State>,
    stop: watch::Receiver<bool>,
    request_timeout: Duration,
}

/// The outcome of one attempt to win.
enum Attempt {
    /// Created the leader key: the term.
    Won(i64),
    /// Someone else leads (or, for an observer, whoever does), as of
    /// `revision`.
    Follow {
        current: Option<KeyValue>,
        revision: i64,
    },
}

/// What ended a wait for the leader key.
enum Woke {
    /// The key was deleted (or the watch broke): try again.
    Retry,
    Stop,
}

fn leader_of(kv: &KeyValue) -> Leader {
    Leader {
        // A value that is not JSON is shown as a string rather than hidden.
        info: serde_json::from_slice(kv.value()).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(kv.value()).into_owned())
        }),
        term: kv.create_revision(),
        lease: kv.lease(),
    }
}

impl Campaign {
    async fn run(mut self, mut lease: Option<Lease>) {
        loop {
            if *self.stop.borrow() {
                break;
            }
            // A follower's lease may have expired during an etcd outage;
            // it only matters once we try to win, so renew it lazily.
            if self.candidate.is_some() && lease.is_none() {
                lease = self.grant().await;
                if lease.is_none() {
                    if self.pause(RETRY).await {
                        break;
                    }
                    continue;
                }
            }
            match self.try_win(lease.map(|l| l.id)).await {
                Err(e) => {
                    self.complain(&format!("{e}; retrying"));
                    // The lease may be the problem (it expired while etcd
                    // was unreachable): then start with a fresh one.
                    if let Some(l) = &mut lease {
                        if !self.renew_once(l).await {
                            lease = None;
                        }
                    }
                    if self.pause(RETRY).await {
                        break;
                    }
                }
                Ok(Attempt::Won(term)) => {
                    let mut won = lease.expect("only a candidate with a lease wins");
                    // Renew before leading so that the term starts with a
                    // full TTL ahead (if this fails, the last renewal's time
                    // stays, which only makes the step-down earlier).
                    self.renew_once(&mut won).await;
                    let reason = self.lead(won, term).await;
                    // Step down first: revoking may hang as long as etcd
                    // does not answer.
                    self.leader.send_if_modified(|l| {
                        if l.as_ref().is_some_and(|l| l.term == term) {
                            *l = None;
                            true
                        } else {
                            false
                        }
                    });
                    let _ = self.state.send(State::Lost { reason });
                    // Lets the next leader in at once when etcd is there.
                    self.revoke(won.id).await;
                    return;
                }
                Ok(Attempt::Follow { current, revision }) => {
                    if let Some(current) = &current {
                        self.leader.send_if_modified(|l| {
                            let new = Some(leader_of(current));
                            if *l != new {
                                *l = new;
                                true
                            } else {
                                false
                            }
                        });
                    } else {
                        self.leader.send_if_modified(|l| l.take().is_some());
                    }
                    // Keep a follower's lease alive too, so that it is
                    // ready the moment the key goes.
                    if let Some(l) = &mut lease {
                        if !self.renew_once(l).await {
                            lease = None;
                        }
                    }
                    match self.wait_for_change(revision, lease.map(|l| l.ttl)).await {
                        Woke::Retry => {}
                        Woke::Stop => break,
                    }
                }
            }
        }
        if let Some(l) = lease {
            self.revoke(l.id).await;
        }
    }

    fn complain(&mut self, what: &str) {
        if self
            .complained
            .is_none_or(|t| t.elapsed() >= COMPLAIN_EVERY)
        {
            self.complained = Some(Instant::now());
            eprintln!("berth election {}: {what}", self.key);
        }
    }

    /// Sleeps `d` unless told to stop; true if told to stop.
    async fn pause(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => *self.stop.borrow(),
            _ = self.stop.changed() => true,
        }
    }

    async fn grant(&mut self) -> Option<Lease> {
        let mut c = self.client.clone();
        let sent = Instant::now();
        match tokio::time::timeout(self.request_timeout, c.lease_grant(self.ttl_secs, None)).await {
            Ok(Ok(granted)) => Some(Lease::granted(granted.id(), granted.ttl(), sent)),
            Ok(Err(e)) => {
                self.complain(&format!("cannot grant a lease: {e}; retrying"));
                None
            }
            Err(_) => None,
        }
    }

    async fn revoke(&mut self, id: i64) {
        let mut c = self.client.clone();
        let _ = tokio::time::timeout(self.request_timeout, c.lease_revoke(id)).await;
    }

    /// One keep-alive round trip; false if the lease is gone (or etcd did
    /// not answer).
    async fn renew_once(&mut self, lease: &mut Lease) -> bool {
        let mut c = self.client.clone();
        let sent = Instant::now();
        // Opening the keep-alive stream renews once and fails for a lease
        // that no longer exists.
        let renewed = tokio::time::timeout(self.request_timeout, c.lease_keep_alive(lease.id))
            .await
            .is_ok_and(|r| r.is_ok());
        if renewed {
            lease.renewed = sent;
        }
        renewed
    }

    /// Creates the leader key if it does not exist (a candidate with a
    /// lease), else reads it.
    async fn try_win(&mut self, lease: Option<i64>) -> Result<Attempt, etcd_client::Error> {
        let key = self.key.as_str();
        let txn = match (&self.candidate, lease) {
            (Some(info), Some(id)) => Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key,
                    info.to_string(),
                    Some(PutOptions::new().with_lease(id)),
                )])
                .or_else([TxnOp::get(key, None)]),
            // An observer only reads: a comparison that never holds.
            _ => Txn::new()
                .when([Compare::create_revision(key, CompareOp::Less, 0)])
                .or_else([TxnOp::get(key, None)]),
        };
        let mut c = self.client.clone();
        let resp = match tokio::time::timeout(self.request_timeout, c.txn(txn)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(etcd_client::Error::Internal(format!(
                    "no answer within {:?}",
                    self.request_timeout
                )))
            }
        };
        let revision = resp.header().map_or(0, |h| h.revision());
        if resp.succeeded() {
            // The put happened at this revision: the key's create revision.
            return Ok(Attempt::Won(revision));
        }
        let current = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().cloned(),
            _ => None,
        });
        Ok(Attempt::Follow { current, revision })
    }

    /// Waits for the leader key to change after `revision`; publishes new
    /// values on the way. A candidate also keeps its lease alive meanwhile.
    async fn wait_for_change(&mut self, revision: i64, ttl: Option<Duration>) -> Woke {
        let mut watch_client = self.client.clone();
        let options = WatchOptions::new().with_start_revision(revision + 1);
        let mut stream = match tokio::time::timeout(
            self.request_timeout,
            watch_client.watch(self.key.as_str(), Some(options)),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            _ => {
                return if self.pause(RETRY).await {
                    Woke::Stop
                } else {
                    Woke::Retry
                }
            }
        };
        // A follower renews at the same pace as the leader; if a renewal
        // fails, going round the loop grants a fresh lease.
        let renew_every = ttl.map_or(Duration::from_secs(3600), |t| t / 3);
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
        loop {
            tokio::select! {
                _ = self.stop.changed() => return Woke::Stop,
                _ = renew.tick(), if ttl.is_some() => {
                    // Retrying re-renews as part of the loop.
                    return Woke::Retry;
                }
                message = stream.message() => match message {
                    Ok(Some(resp)) => {
                        if resp.canceled() {
                            return Woke::Retry;
                        }
                        for event in resp.events() {
                            match (event.event_type(), event.kv()) {
                                (EventType::Delete, _) => {
                                    self.leader.send_if_modified(|l| l.take().is_some());
                                    return Woke::Retry;
                                }
                                (EventType::Put, Some(kv)) => {
                                    let new = Some(leader_of(kv));
                                    self.leader.send_if_modified(|l| {
                                        if *l != new { *l = new; true } else { false }
                                    });
                                }
                                _ => {}
                            }
                        }
                    }
                    // The stream ended or broke (etcd restarted): read again.
                    _ => return Woke::Retry,
                }
            }
        }
    }

    /// Leads until the lease or the key is lost, or told to stop; why it
    /// ended.
    async fn lead(&mut self, won: Lease, term: i64) -> String {
        let (lease, ttl) = (won.id, won.ttl);
        let _ = self.leader.send(Some(Leader {
            info: self.candidate.clone().unwrap_or_default(),
            term,
            lease,
        }));
        let _ = self.state.send(State::Leading { term });

        // Step down this long after the send of the last renewal that
        // succeeded: etcd counts the TTL from when it received that renewal,
        // which is later, so we are out before the key can go. The margin
        // covers the time until the master notices and clock rates.
        let margin = (ttl / 10).max(Duration::from_millis(300));
        let mut deadline = won.renewed + ttl - margin;

        let mut watch_client = self.client.clone();
        let mut last_seen = term;
        let mut watch = None;
        // The first watch starts right after the key's creation.
        let mut reopen = false;
        let mut keeper = None;
        // Renewals at TTL/3 leave two more chances before the deadline.
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + ttl / 3, ttl / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if Instant::now() >= deadline {
                return format!(
                    "the lease could not be renewed within its TTL ({}s): etcd unreachable?",
                    ttl.as_secs()
                );
            }
            if watch.is_none() {
                let bound = self
                    .request_timeout
                    .min(deadline.saturating_duration_since(Instant::now()));
                if reopen {
                    // The watch broke (etcd restarted, or it was cancelled):
                    // read the key again first. Changes while no watch ran
                    // show up here, and watching from the fresh revision
                    // cannot hit a compacted one (which would cancel the
                    // watch again at once, over and over).
                    let key = self.key.clone();
                    if let Ok(Ok(resp)) =
                        tokio::time::timeout(bound, watch_client.get(key, None)).await
                    {
                        match resp.kvs().first() {
                            Some(kv) if kv.create_revision() == term => {
                                last_seen = resp.header().map_or(last_seen, |h| h.revision());
                            }
                            Some(kv) => {
                                return format!(
                                    "the leader key was replaced at revision {}",
                                    kv.create_revision()
                                )
                            }
                            None => {
                                return "the leader key was deleted (lease expired or revoked)"
                                    .to_string()
                            }
                        }
                    }
                }
                let options = WatchOptions::new().with_start_revision(last_seen + 1);
                if let Ok(Ok(stream)) = tokio::time::timeout(
                    bound,
                    watch_client.watch(self.key.as_str(), Some(options)),
                )
                .await
                {
                    watch = Some(stream);
                }
                reopen = true;
            }
            let until_deadline = tokio::time::Instant::from_std(deadline);
            tokio::select! {
                _ = self.stop.changed() => return "resigned".to_string(),
                _ = tokio::time::sleep_until(until_deadline) => {}
                _ = renew.tick() => {
                    let sent = Instant::now();
                    // Bounded by the deadline too: in a partition the
                    // request would otherwise hold the step-down back by up
                    // to the request timeout.
                    let bound = deadline.saturating_duration_since(sent);
                    match self.renew(lease, &mut keeper, bound).await {
                        Renewal::Renewed(granted) => {
                            deadline = sent + granted.max(ttl) - margin;
                        }
                        Renewal::Expired => {
                            return "the lease expired (etcd revoked it or it timed out)".to_string();
                        }
                        Renewal::Failed => {}
                    }
                }
                message = async { watch.as_mut().expect("checked").message().await }, if watch.is_some() => {
                    match message {
                        Ok(Some(resp)) => {
                            if resp.canceled() {
                                watch = None;
                            }
                            for event in resp.events() {
                                let Some(kv) = event.kv() else { continue };
                                last_seen = last_seen.max(kv.mod_revision());
                                match event.event_type() {
                                    EventType::Delete => {
                                        return "the leader key was deleted (lease expired or revoked)".to_string();
                                    }
                                    EventType::Put if kv.create_revision() != term => {
                                        return format!(
                                            "the leader key was replaced at revision {}",
                                            kv.create_revision()
                                        );
                                    }
                                    EventType::Put => {}
                                }
                            }
                        }
                        _ => watch = None,
                    }
                }
            }
        }
    }

    /// Sends one renewal on the keep-alive stream (opening it if needed)
    /// and waits for the answer.
    async fn renew(
        &mut self,
        lease: i64,
        keeper: &mut Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)>,
        bound: Duration,
    ) -> Renewal {
        let mut c = self.client.clone();
        let timeout = self.request_timeout.min(bound);
        let attempt = async {
            if keeper.is_none() {
                match c.lease_keep_alive(lease).await {
                    Ok(pair) => *keeper = Some(pair),
                    // Opening the stream renews once and reports a missing
                    // lease as this error.
                    Err(etcd_client::Error::LeaseKeepAliveError(_)) => return Renewal::Expired,
                    Err(_) => return Renewal::Failed,
                }
            }
            let (k, stream) = keeper.as_mut().expect("just opened");
            if k.keep_alive().await.is_err() {
                return Renewal::Failed;
            }
            match stream.message().await {
                Ok(Some(r)) if r.ttl() > 0 => Renewal::Renewed(Duration::from_secs(r.ttl() as u64)),
                Ok(Some(_)) => Renewal::Expired,
                _ => Renewal::Failed,
            }
        };
        let result = tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or(Renewal::Failed);
        if matches!(result, Renewal::Failed) {
            // A broken stream is reopened on the next tick.
            *keeper = None;
        }
        result
    }
}

enum Renewal {
    Renewed(Duration),
    Expired,
    Failed,
}
