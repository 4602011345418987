//! The store contract: one test per documented rule of a `Store` / `ScheduleStore` /
//! `OpsStore` / `LimitStore`
//! method, generated for every backend (`sqlite::claim_…`, `postgres::claim_…`, …),
//! each checking what the method's doc comment promises.
//!
//! Server backends use `SPIKARD_TASKS_TEST_POSTGRES`, `SPIKARD_TASKS_TEST_MYSQL` and
//! `SPIKARD_TASKS_TEST_REDIS` (or the local defaults); a test whose server does not
//! answer returns early with a note, unless `SPIKARD_TASKS_REQUIRE_BACKENDS=1`.
//! Every test has its own queue; tests of operations that see every job of a database
//! (rescue, purge, maintenance) get a database of their own (see `Fixture::private`).

#[path = "store_contract/cancel.rs"]
mod cancel;
#[path = "store_contract/claim.rs"]
mod claim;
#[path = "store_contract/complete.rs"]
mod complete;
#[path = "store_contract/enqueue.rs"]
mod enqueue;
#[path = "store_contract/lease.rs"]
mod lease;
#[path = "store_contract/limits.rs"]
mod limits;
#[path = "store_contract/lock.rs"]
mod lock;
#[path = "store_contract/maintenance.rs"]
mod maintenance;
#[path = "store_contract/ops.rs"]
mod ops;
#[path = "store_contract/progress.rs"]
mod progress;
#[path = "store_contract/rescue.rs"]
mod rescue;
#[path = "store_contract/schedules.rs"]
mod schedules;
#[path = "store_contract/state_counts.rs"]
mod state_counts;
#[path = "store_contract/support.rs"]
mod support;
#[path = "store_contract/trace_context.rs"]
mod trace_context;

/// Every case, by name.
mod cases {
    pub use super::cancel::*;
    pub use super::claim::*;
    pub use super::complete::*;
    pub use super::enqueue::*;
    pub use super::lease::*;
    pub use super::limits::*;
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]
    pub use super::lock::*;
    pub use super::maintenance::*;
    pub use super::ops::*;
    pub use super::progress::*;
    pub use super::rescue::*;
    pub use super::schedules::*;
    pub use super::state_counts::*;
    pub use super::trace_context::*;
}

/// One `#[tokio::test]` per case, for the backend `$kind`.
macro_rules! tests {
    ($kind:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                super::cases::$case($kind).await
            }
        )*
    };
}

/// The contract every backend keeps.
macro_rules! store_contract {
    ($kind:expr) => {
        tests!($kind;
            // enqueue, get
            enqueue_stores_pending_jobs_and_returns_their_ids,
            enqueue_of_no_rows_inserts_nothing,
            enqueue_returns_the_unfinished_job_holding_a_unique_key,
            enqueue_frees_a_unique_key_once_its_job_finished,
            enqueue_is_all_or_nothing,
            get_reads_a_job_or_none_for_an_unknown_id,
            // cancel, counts
            cancel_finishes_a_pending_scheduled_or_retrying_job,
            cancel_asks_a_running_job_to_stop,
            cancel_returns_false_for_finished_and_unknown_jobs,
            counts_reports_each_state_of_one_queue,
            // claim
            claim_runs_the_job_counting_the_attempt_without_a_start,
            claim_takes_highest_priority_then_oldest_run_at,
            claim_never_takes_a_job_whose_run_at_is_ahead,
            claim_returns_at_most_limit_jobs,
            claim_takes_only_from_the_given_queues,
            concurrent_claims_never_return_the_same_job,
            concurrent_enqueues_and_claims_never_fail,
            claim_counts_the_next_attempt_of_a_retrying_job,
            claim_carries_the_jobs_enqueue_time,
            // set_progress
            set_progress_writes_only_onto_a_running_job,
            set_progress_is_kept_when_the_job_finishes,
            set_progress_is_kept_over_a_retry_until_the_next_report,
            // trace contexts
            trace_context_is_stored_and_read_by_get_and_every_claim,
            // mark_started, heartbeat, release
            mark_started_records_starts_of_jobs_the_worker_holds,
            heartbeat_returns_running_jobs_whose_cancel_was_requested,
            heartbeat_renews_only_listed_jobs_the_worker_holds,
            release_gives_jobs_back_without_counting_the_attempt,
            release_touches_only_the_workers_listed_jobs,
            // complete
            complete_succeeded_stores_result_and_start,
            complete_retry_schedules_the_next_attempt,
            complete_failed_finishes_with_an_error_entry,
            complete_cancelled_finishes_with_the_reason,
            complete_writes_only_attempts_the_worker_holds,
            // rescue_expired
            rescue_expired_counts_started_attempts_as_lost,
            rescue_expired_fails_a_started_job_without_attempts_left,
            rescue_expired_gives_unstarted_attempts_back,
            rescue_expired_counts_a_second_unstarted_loss_of_one_attempt,
            rescue_expired_leaves_live_leases_alone,
            rescue_expired_rescues_at_most_limit_jobs,
            // purge_finished, maintain
            purge_finished_deletes_only_jobs_finished_before_the_cutoff,
            purge_finished_deletes_at_most_limit_jobs,
            maintain_rescues_then_purges,
            maintain_runs_each_time_it_is_called,
            maintain_works_through_more_than_one_batch,
            maintain_calls_at_the_same_time_rescue_each_job_once,
            // save_schedule, schedules, remove_schedule, fire_schedule
            save_schedule_creates_at_now_and_keeps_the_last_tick_on_replace,
            schedules_lists_every_schedule_by_name,
            remove_schedule_reports_whether_one_existed,
            fire_schedule_enqueues_one_job_per_newer_tick,
            fire_schedule_returns_the_unfinished_job_of_a_unique_key,
            fire_schedule_without_a_job_claims_the_tick,
            fire_schedule_claims_no_tick_when_its_job_cannot_be_inserted,
            // operations: stats, list_jobs, retry/cancel/purge batches, pause, workers
            stats_counts_each_state_per_queue,
            stats_reports_the_oldest_ready_job,
            stats_counts_jobs_finished_in_the_last_minute,
            stats_lists_a_paused_queue_without_jobs,
            list_jobs_orders_newest_first_then_by_id,
            list_jobs_filters_by_status_task_queue_and_time,
            list_jobs_pages_by_cursor_without_repeats_or_gaps,
            retry_batch_puts_failed_and_cancelled_jobs_back,
            retry_batch_clears_the_cancel_request,
            retry_batch_skips_a_job_whose_unique_key_is_held,
            retry_batch_respects_filter_and_limit,
            cancel_batch_cancels_waiting_jobs_and_asks_running_ones,
            cancel_batch_respects_the_status_filter,
            purge_batch_deletes_matching_finished_jobs_before_the_cutoff,
            purge_batch_respects_task_and_time,
            set_paused_is_persisted_and_idempotent,
            register_worker_lists_it_until_removed,
            beat_worker_keeps_a_worker_listed,
            workers_deletes_rows_gone_for_an_hour,
            // the counts of stats and counts through every transition
            counts_stay_exact_through_every_transition,
            counts_stay_exact_under_concurrent_completions,
            // flow control: set_limit, limits, claim_limited
            set_limit_stores_replaces_and_removes_limits,
            limits_with_usage_count_running_jobs,
            max_running_caps_a_task_without_blocking_the_others,
            queue_max_running_and_local_room_bound_a_queue,
            task_and_queue_limits_hold_together,
            rate_limit_spaces_the_starts,
            limited_claim_follows_priority,
            limited_claim_ignores_removed_limits_and_takes_due_jobs,
            concurrent_limited_claims_never_exceed_the_cap,
        );
    };
}

/// What the SQL backends promise: tables of earlier versions are brought up to date.
macro_rules! sql_contract {
    ($kind:expr) => {
        tests!(
            $kind;
            opening_a_table_of_an_earlier_version_adds_the_progress_column,
            opening_a_table_of_an_earlier_version_adds_the_trace_context_column,
        );
    };
}

/// What the SQL backends with a counts table (SQLite, PostgreSQL) promise: it is set up,
/// with the jobs already there counted once, by however many stores open the database.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! counted_contract {
    ($kind:expr) => {
        tests!(
            $kind;
            opening_a_database_without_counts_counts_its_jobs_once,
            opening_a_database_with_the_first_count_triggers_replaces_them,
            two_stores_set_up_a_fresh_database_at_once,
        );
    };
}

/// What only backends with several writers promise: a maintenance lock.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]
macro_rules! server_contract {
    ($kind:expr) => {
        tests!($kind; maintain_returns_none_while_another_worker_holds_the_lock);
    };
}

#[cfg(feature = "sqlite")]
mod sqlite {
    store_contract!(crate::support::Kind::Sqlite);
    sql_contract!(crate::support::Kind::Sqlite);
    counted_contract!(crate::support::Kind::Sqlite);
}

#[cfg(feature = "sqlite")]
mod memory {
    store_contract!(crate::support::Kind::Memory);
}

#[cfg(feature = "postgres")]
mod postgres {
    store_contract!(crate::support::Kind::Postgres);
    sql_contract!(crate::support::Kind::Postgres);
    counted_contract!(crate::support::Kind::Postgres);
    server_contract!(crate::support::Kind::Postgres);
}

#[cfg(feature = "mysql")]
mod mysql {
    store_contract!(crate::support::Kind::MySql);
    sql_contract!(crate::support::Kind::MySql);
    server_contract!(crate::support::Kind::MySql);
}

#[cfg(feature = "redis")]
mod redis {
    store_contract!(crate::support::Kind::Redis);
    server_contract!(crate::support::Kind::Redis);
}
