//! The cron scheduler: every stored schedule runs as an apalis cron source
//! ([`apalis_cron::CronScheduler`]) whose ticks enqueue one job each.
//!
//! Any number of schedulers (in workers or standalone, on any hosts) may run: a tick is
//! claimed in the backend together with the job it enqueues (`Store::fire_schedule`), so
//! exactly one job is enqueued per tick, with no leader election.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::error::BoxDynError;
use apalis_core::task::Task;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_cron::{CronScheduler, Tick};
use chrono_tz::Tz;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cron::{CronSchedule, MissedTicks, ParsedSchedule, MAX_CATCH_UP};
use crate::error::{CoreError, CoreResult};
use crate::job::NewJob;
use crate::queue::TaskQueueClient;
use crate::store::StoredSchedule;
use crate::time::now_ms;

/// How often a scheduler re-reads the stored schedules to pick up changes.
pub const DEFAULT_RELOAD: Duration = Duration::from_secs(2);

impl TaskQueueClient {
    /// Validates and stores a schedule (replacing one of the same name); refuses one
    /// that would never fire. Idempotent: safe to call at import time in every process.
    pub async fn save_schedule(&self, schedule: &CronSchedule) -> CoreResult<()> {
        schedule.validate(now_ms())?;
        let definition = serde_json::to_string(schedule)?;
        self.store
            .save_schedule(&schedule.name, &definition, now_ms())
            .await
    }

    /// Every stored schedule with its state and next tick.
    pub async fn schedules(&self) -> CoreResult<Vec<ScheduleInfo>> {
        let now = now_ms();
        let mut out = Vec::new();
        for stored in self.store.schedules().await? {
            let schedule: CronSchedule = serde_json::from_str(&stored.definition).map_err(|e| {
                CoreError::Backend(format!("corrupt schedule {:?}: {e}", stored.name))
            })?;
            let next_run_ms = match (schedule.enabled, schedule.parse()) {
                (true, Ok(parsed)) => parsed.next_after(now.max(stored.last_tick_ms)),
                _ => None,
            };
            out.push(ScheduleInfo {
                schedule,
                last_tick_ms: stored.last_tick_ms,
                updated_at_ms: stored.updated_at_ms,
                next_run_ms,
            });
        }
        Ok(out)
    }

    /// Removes a schedule; false if there was none.
    pub async fn remove_schedule(&self, name: &str) -> CoreResult<bool> {
        self.store.remove_schedule(name).await
    }
}

/// A schedule as `cron list` shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ScheduleInfo {
    /// The definition.
    pub schedule: CronSchedule,
    /// The last tick fired (or passed over), ms since epoch.
    pub last_tick_ms: i64,
    /// When the definition was last written.
    pub updated_at_ms: i64,
    /// The next tick, if the schedule is enabled.
    pub next_run_ms: Option<i64>,
}

/// A running scheduler.
pub struct SchedulerHandle {
    stop: watch::Sender<bool>,
    join: Option<JoinHandle<()>>,
}

impl SchedulerHandle {
    /// Asks the scheduler to stop (returns at once).
    pub fn request_stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops the scheduler and waits for it.
    pub async fn stop(&mut self) {
        self.request_stop();
        if let Some(join) = self.join.as_mut() {
            let _ = join.await;
            self.join = None;
        }
    }
}

/// Starts a scheduler for every schedule stored in `client`'s backend, on the current
/// tokio runtime. `reload` is how often changes to the stored schedules are picked up.
pub fn spawn_scheduler(client: &TaskQueueClient, reload: Duration) -> SchedulerHandle {
    let (stop, stop_rx) = watch::channel(false);
    let join = tokio::spawn(supervise(client.clone(), reload, stop_rx));
    SchedulerHandle {
        stop,
        join: Some(join),
    }
}

struct Running {
    definition: String,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

async fn supervise(client: TaskQueueClient, reload: Duration, mut stop_rx: watch::Receiver<bool>) {
    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        let step = async {
            match client.store.schedules().await {
                Ok(stored) => reconcile(&client, &mut running, stored).await,
                Err(e) => tracing::warn!(error = %e, "reading schedules failed; retrying"),
            }
        };
        // A stop is not held up by a store that does not answer.
        tokio::select! {
            _ = step => {}
            _ = stop_rx.wait_for(|s| *s) => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(reload) => {}
            _ = stop_rx.wait_for(|s| *s) => break,
        }
    }
    for (_, r) in running.iter() {
        let _ = r.stop.send(true);
    }
    for (name, r) in running.drain() {
        stop_within(&name, r.join, STOP_GRACE).await;
    }
}

/// How long a stopping scheduler lets a tick being enqueued finish before it abandons
/// it (the tick's transaction is rolled back; another scheduler or the next start fires
/// it, as the schedule's missed-tick policy says).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Waits up to `grace` for a schedule's task to end, then aborts it: a stop never hangs
/// on a store that stopped answering.
async fn stop_within(name: &str, mut join: JoinHandle<()>, grace: Duration) {
    if tokio::time::timeout(grace, &mut join).await.is_err() {
        tracing::warn!(schedule = %name, ?grace, "a tick was still being enqueued; abandoning it");
        join.abort();
    }
}

async fn reconcile(
    client: &TaskQueueClient,
    running: &mut HashMap<String, Running>,
    stored: Vec<StoredSchedule>,
) {
    let wanted: HashMap<&str, &StoredSchedule> =
        stored.iter().map(|s| (s.name.as_str(), s)).collect();
    let stale: Vec<String> = running
        .iter()
        .filter(|(name, r)| {
            wanted
                .get(name.as_str())
                .is_none_or(|s| s.definition != r.definition)
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in stale {
        if let Some(r) = running.remove(&name) {
            let _ = r.stop.send(true);
            stop_within(&name, r.join, STOP_GRACE).await;
        }
    }
    for s in stored {
        if running.contains_key(&s.name) {
            continue;
        }
        let schedule: CronSchedule = match serde_json::from_str(&s.definition) {
            Ok(schedule) => schedule,
            Err(e) => {
                tracing::error!(schedule = %s.name, error = %e, "ignoring corrupt schedule");
                continue;
            }
        };
        let (stop, stop_rx) = watch::channel(false);
        let join = if schedule.enabled {
            match schedule.parse() {
                Ok(parsed) => tokio::spawn(run_schedule(
                    client.clone(),
                    Arc::new(schedule),
                    parsed,
                    s.last_tick_ms,
                    stop_rx,
                )),
                Err(e) => {
                    tracing::error!(schedule = %s.name, error = %e, "ignoring invalid schedule");
                    tokio::spawn(async {})
                }
            }
        } else {
            tokio::spawn(async {})
        };
        running.insert(
            s.name,
            Running {
                definition: s.definition,
                stop,
                join,
            },
        );
    }
}

async fn run_schedule(
    client: TaskQueueClient,
    schedule: Arc<CronSchedule>,
    parsed: ParsedSchedule,
    last_tick_ms: i64,
    mut stop_rx: watch::Receiver<bool>,
) {
    catch_up(&client, &schedule, &parsed, last_tick_ms, now_ms()).await;
    let backend = CronScheduler::new(parsed.schedule.clone()).with_timezone(parsed.tz);
    let worker = WorkerBuilder::new(format!("cron:{}", schedule.name))
        .backend(backend)
        .build(FireTick {
            client: client.clone(),
            schedule: schedule.clone(),
        });
    let for_worker = stop_rx.clone();
    let stopped = worker.run_with_ctx(move |ctx| {
        let mut rx = for_worker.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
            ctx.stop()
        }
    });
    if let Err(e) = stopped.await {
        tracing::error!(schedule = %schedule.name, error = %e, "cron source stopped with an error");
    }
    // A schedule with no further ticks ends early: wait for the stop like the others.
    let _ = stop_rx.wait_for(|s| *s).await;
}

/// Applies the missed-tick policy for ticks between the last one fired and now.
async fn catch_up(
    client: &TaskQueueClient,
    schedule: &CronSchedule,
    parsed: &ParsedSchedule,
    last_tick_ms: i64,
    now_ms: i64,
) {
    let missed = parsed.ticks_between(last_tick_ms, now_ms, MAX_CATCH_UP);
    let Some(&latest) = missed.last() else {
        return;
    };
    let result = match schedule.missed {
        MissedTicks::Latest => fire(client, schedule, latest).await.map(|_| ()),
        MissedTicks::Skip => client
            .store
            .fire_schedule(&schedule.name, latest, None)
            .await
            .map(|_| ()),
        MissedTicks::All => {
            let mut result = Ok(());
            for tick in missed {
                if let Err(e) = fire(client, schedule, tick).await {
                    result = Err(e);
                    break;
                }
            }
            result
        }
    };
    if let Err(e) = result {
        tracing::warn!(schedule = %schedule.name, error = %e, "catching up missed ticks failed");
    }
}

/// Enqueues the job of tick `tick_ms`, unless another scheduler already did.
async fn fire(
    client: &TaskQueueClient,
    schedule: &CronSchedule,
    tick_ms: i64,
) -> CoreResult<Option<String>> {
    let mut options = schedule.options.clone();
    options.unique_key = Some(format!("cron:{}:{tick_ms}", schedule.name));
    let job = NewJob {
        task: schedule.task.clone(),
        args: schedule.args.clone(),
        kwargs: schedule.kwargs.clone(),
        options,
    };
    let row = client.resolve(job, now_ms())?;
    let series = crate::metrics::series(&row.task, &row.queue);
    let fired = client
        .store
        .fire_schedule(&schedule.name, tick_ms, Some(row))
        .await?;
    if let Some(job) = &fired {
        if job.created {
            series.enqueued(1);
        }
        tracing::debug!(schedule = %schedule.name, tick_ms, job_id = %job.id, "schedule fired");
        client.enqueued.notify_one();
    }
    Ok(fired.map(|e| e.id))
}

/// The tower service the apalis cron worker calls on every tick.
#[derive(Clone)]
struct FireTick {
    client: TaskQueueClient,
    schedule: Arc<CronSchedule>,
}

impl tower::Service<Task<Tick<Tz>>> for FireTick {
    type Response = ();
    type Error = BoxDynError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxDynError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<Tick<Tz>>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tick_ms = task.args.get_timestamp() as i64 * 1000;
            if let Err(e) = fire(&this.client, &this.schedule, tick_ms).await {
                tracing::warn!(schedule = %this.schedule.name, tick_ms, error = %e, "enqueueing a tick failed");
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TaskQueueConfig;

    fn schedule(name: &str, missed: MissedTicks) -> CronSchedule {
        CronSchedule {
            name: name.into(),
            expression: "*/2 * * * * *".into(),
            task: "report".into(),
            args: serde_json::json!([]),
            kwargs: serde_json::json!({}),
            timezone: "UTC".into(),
            enabled: true,
            missed,
            options: Default::default(),
        }
    }

    async fn missed_jobs(missed: MissedTicks) -> u64 {
        let client = TaskQueueClient::connect(TaskQueueConfig {
            url: "memory://".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let s = schedule("s", missed);
        // Created 10 s ago, and no scheduler ran since: 5 ticks were missed. One clock
        // reading for the whole test: a 2-second tick passing between the two catch-ups
        // below must not count as a new missed tick.
        let now = now_ms();
        let ten_s_ago = now - 10_000;
        client
            .store
            .save_schedule(&s.name, &serde_json::to_string(&s).unwrap(), ten_s_ago)
            .await
            .unwrap();
        catch_up(&client, &s, &s.parse().unwrap(), ten_s_ago, now).await;
        // Running the catch-up again (a second scheduler starting) adds nothing.
        let last = client.store.schedules().await.unwrap()[0].last_tick_ms;
        catch_up(&client, &s, &s.parse().unwrap(), ten_s_ago, now).await;
        assert_eq!(
            client.store.schedules().await.unwrap()[0].last_tick_ms,
            last
        );
        client.counts(None).await.unwrap().pending
    }

    #[tokio::test]
    async fn missed_tick_policies() {
        assert_eq!(missed_jobs(MissedTicks::Latest).await, 1);
        assert_eq!(missed_jobs(MissedTicks::Skip).await, 0);
        let all = missed_jobs(MissedTicks::All).await;
        assert!((4..=5).contains(&all), "{all}");
    }
}
