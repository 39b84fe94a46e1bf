-- teguh: durable execution and a job queue on PostgreSQL alone.
--
-- One re-runnable file. Apply it in a single transaction (the Python client
-- does; with psql use `psql --single-transaction -f teguh.sql`). Re-applying
-- it over an installed database keeps every row and upgrades the functions.
--
-- Locking rules (see docs/engine.md):
-- * Row locks on existing rows are taken in the order e_ -> p_ -> r_ -> w_ -> t_.
-- * Sweeps (expired leases, due sleepers, cancellation deadlines) never wait:
--   they lock with SKIP LOCKED and leave busy rows to a later sweep, so they can
--   not take part in a deadlock whatever order they touch rows in. (One
--   exception: a child task's end waits for its parent's rows; see section
--   "Composition" for why that cannot deadlock.)
-- * New p_, r_, w_ and c_ rows of a task are inserted while its t_ row is
--   locked, or while its r_ row is locked by the run writing them (checkpoints).
-- * Every insert into p_ is `on conflict (task_id) do nothing`.
-- * A batch's teguh.batches row is locked only at commit, by the deferred
--   trigger of teguh.batch_ends, after every other lock of the transaction and
--   in batch_id order; nothing waits for a row after it (section "Batches").
-- * The install lock, advisory key 7420581234, transaction scoped: this file
--   takes it first, and create_queue (for a new queue) and drop_queue take it
--   to serialise DDL. Nothing at run time takes it.
-- * The limits lock of a queue, advisory keys (1952804200, hashtext(q)),
--   transaction scoped: the claim of a queue with flow-control limits takes
--   it (waiting) after its sweeps and before it locks any p_ or t_ row, then
--   never waits for a row while it holds it, except its rows of
--   teguh.rate_limits, which only holders of this lock write. So limited
--   claims of a queue run one at a time and cannot deadlock (docs/flow-control.md).
--
-- How the comments above the functions read. "Locks:" names the row locks a
-- function takes on existing rows, in the order it takes them ("waits": it
-- waits for a busy row; "skip locked": it passes over one), and any advisory
-- lock or table lock stronger than the ROW EXCLUSIVE that every insert,
-- update and delete takes (which conflicts only with DDL). Plain reads lock
-- nothing, and every lock is held until the caller's transaction ends.
-- "Notifies:" names the pg_notify channels: teguh_<q> with a constant word
-- (spawn, retry, event, wake) when work became claimable, and teguh_done with
-- '<q>:<task_id>' when a task spawned with notify_done reached its end.
-- Completions, failures and cancels also send teguh_watch '<q>', but only
-- while a dashboard watches the queue (section "Dashboard").
--
-- Sections, in order:
--   Tables                                 teguh.queues, teguh.task_types, teguh.settings; the per-queue tables
--   Clock, ids, version                    version, current_time, portable_uuidv7
--   Validation and errors                  _check_* helpers, _raise_lease_error, _retry_delay
--   Per-queue tables                       _ensure_queue_tables: t_, p_, r_, c_, e_, w_ of a queue
--   Per-queue hot path                     template of _claim_<q>, _done_<q>, _spawn_<q>, _due_<q>
--   Queue registry                         create_queue, drop_queue, list_queues
--   Internal transitions                   _make_ready, _suspend, _cancel, _fail
--   Sweeps                                 _recover_expired, _wake_due, _enforce_deadlines
--   Spawning                               spawn_task, spawn_tasks
--   Claiming                               claim_runs, claim_task
--   Ending and suspending runs             complete_run(s), fail_run, schedule_run, sleep_run
--   Checkpoints                            set_task_checkpoint_state, get_task_checkpoint_state(s)
--   Events                                 await_event, emit_event_first, emit_event
--   Cancel, retry, leases                  cancel_task, retry_task, extend_claim(s)
--   Queue options, task types, pause       set_queue_options, register_task_types, pause_queue, ...
--   Reading, timers, maintenance           reads, next_due, ticker, cleanup, start, stop
--   Section: schedules                     teguh.schedules; put_schedules, fire_schedule, ... (periodic tasks)
--   Section: composition                   child_waits, spawn_children, await_children, cancel cascade, progress
--   Topics                                 teguh.topic_bindings, bind_topics, unbind_topic, publish
--   Batches                                teguh.batches, spawn_batch, get_batch, list_batches, batch_results
--   Operations (read side)                 attempt history a_<q>, workers registry, get_task, list_tasks, queue_stats
--   Section: observability                 _on_failure_spawn, queue_depth
--   Dashboard                              watched_queues, watch_queues, _notify_watch (teguh_watch)
--   Section: children listing              list_children (a task's children across queues)
--   Section: Per-queue step path           template of _step_<q>, _steps_<q>; set_task_checkpoint_states
--   Section: deadline cascade              _cancel_cascade (the engine's cancels cascade to children)
--   Upgrade the tables of queues ...       re-runs the per-queue DDL and hot path per queue
--   Server-side size limit                 _check_payload, set_max_payload_bytes
--   Privileges and roles                   grant_producer, grant_worker, grant_admin, revoke_all

select pg_advisory_xact_lock(7420581234);

-- Not `create schema if not exists`: that needs CREATE on the database even
-- when the schema exists, and a role that owns only the schema must be able
-- to install and upgrade (docs/roles.md).
do $schema$
begin
  if not exists (select 1 from pg_namespace where nspname = 'teguh') then
    create schema teguh;
  end if;
end
$schema$;

-- ---------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------
-- The shared tables are created here. A queue's own tables are created by
-- teguh._ensure_queue_tables (section "Per-queue tables"), which create_queue
-- runs for a new queue and every install re-runs for each registered queue
-- (section "Upgrade the tables of queues ..."), so columns and indexes added
-- by a newer release reach old queues. Columns: docs/sql-interface.md.

-- The queue registry: one row per queue with its cleanup policy (the
-- defaults of cleanup_tasks and cleanup_all_queues). Every public function
-- that takes a queue checks it here first (teguh._check_queue).
create table if not exists teguh.queues (
  queue_name text primary key,
  created_at timestamptz not null default clock_timestamp(),
  cleanup_ttl interval not null default interval '30 days',
  cleanup_limit int not null default 1000
);

-- Columns added to teguh.queues after 0.1, each only when missing: ALTER
-- TABLE takes its ACCESS EXCLUSIVE lock before looking, and every spawn and
-- claim reads this table. Existing queues get the defaults.
--   default_max_attempts  max_attempts of a task spawned without one (0:
--                         unlimited); set_queue_options changes it
--   paused                pause_queue: the claim hands out nothing
--   paused_task_types     the names of the queue's paused task types (null
--                         when none): one read tells the claim what to skip
--   has_task_types        a worker registered task types here: spawns look
--                         their defaults up (never reset)
--   has_limits            a task type of the queue has a limit, or a task was
--                         spawned with a concurrency_key: the claim takes the
--                         limited path (docs/flow-control.md; never reset)
do $queue_columns$
declare
  col record;
begin
  for col in select * from (values
      ('default_max_attempts', 'int not null default 25 check (default_max_attempts >= 0)'),
      ('paused', 'boolean not null default false'),
      ('paused_task_types', 'text[]'),
      ('has_task_types', 'boolean not null default false'),
      ('has_limits', 'boolean not null default false')) as c(name, definition)
  loop
    if not exists (select 1 from pg_attribute
                    where attrelid = 'teguh.queues'::regclass and attname = col.name and not attisdropped) then
      execute format('alter table teguh.queues add column %I ', col.name) || col.definition;
    end if;
  end loop;
end
$queue_columns$;

-- Task types: what the workers of a queue registered for each handler
-- (register_task_types), so that every producer (Python, CLI, SQL) spawns
-- with the handler's defaults. defaults holds spawn options (max_attempts,
-- retry_strategy, cancellation, priority) applied to a spawn that does not
-- give them; concurrency, key_concurrency and rate_limit are the flow-control
-- limits the claim enforces (docs/flow-control.md). Rows are upserted by every starting worker (the last
-- writer wins) and deleted with their queue.
create table if not exists teguh.task_types (
  queue_name text not null,
  task_name text not null,
  defaults jsonb not null default '{}',
  concurrency int,
  key_concurrency int,
  rate_limit text,
  version text,
  paused boolean not null default false,
  registered_at timestamptz not null,
  updated_at timestamptz not null,
  primary key (queue_name, task_name)
);
-- on_failure (docs/hooks.md): {"task_name", "queue"} of the task spawned when
-- a task of this type fails for good; null for most types.
do $task_type_on_failure$
begin
  if not exists (select 1 from pg_attribute
                  where attrelid = 'teguh.task_types'::regclass and attname = 'on_failure' and not attisdropped) then
    alter table teguh.task_types add column on_failure jsonb;
  end if;
end
$task_type_on_failure$;

-- Rate limit buckets: one row per (queue, task type, rate_limit_key; '' for
-- none), a token bucket the limited claim draws one token from per task it
-- starts. A type with rate_limit '<n>/<unit>' refills n tokens per unit and
-- holds at most ceil(n / 10), so starts never exceed n per unit by more than
-- 10 % over any stretch of ten units. blocked_until is set when a claim
-- passed over a task for want of a token: when the next token is due;
-- next_due reports it so idle workers wake then. Rows are written only
-- under the queue's limits lock, and deleted with their queue.
create table if not exists teguh.rate_limits (
  queue_name text not null,
  task_name text not null,
  rate_key text not null,
  tokens double precision not null,
  updated_at timestamptz not null,
  blocked_until timestamptz,
  primary key (queue_name, task_name, rate_key)
);

-- Settings of the schema owner, name -> value. Holds max_payload_bytes
-- (section "Server-side size limit"); no row means the default.
create table if not exists teguh.settings (
  name text primary key,
  value bigint not null
);

-- The tables of queue <q>, created by teguh._ensure_queue_tables(q):
--   t_<q>  tasks: name, params, options, state, attempts, times, result, last
--          failure; from spawn until cleanup. Fill factor 30, and no index
--          on a column that claim or completion changes, so both are HOT
--          updates.
--   p_<q>  dispatch: one row per task claimable now; inserted when the task
--          becomes ready, deleted by its claim, never updated.
--   r_<q>  leases: one row per run in flight, from its claim until the run
--          ends or suspends; claim_expires_at drives lease recovery.
--   c_<q>  checkpoints: (task, step name) -> state, of kind step, sleep or
--          event; first committed write wins.
--   e_<q>  events: name -> payload, first emit wins; a SQL-NULL payload is a
--          placeholder for an event awaited before it was emitted.
--   w_<q>  waits: a task suspended on an event, with its step and timeout.
-- Row locks on them are taken in the order e_ -> p_ -> r_ -> w_ -> t_ (see
-- the header). Queue names are at most 55 bytes, so every table, index and
-- channel name derived from one fits PostgreSQL's 63-byte identifiers.

-- Signatures that changed before 1.0 are dropped here, so `create or replace`
-- below never leaves an ambiguous overload behind (or fails: it cannot change
-- a function's result columns). Each is dropped only while it still has its
-- old shape, so a re-install does not drop it again, and the roles that could
-- execute it are remembered (for this transaction) and granted it again
-- right after it is re-created.

-- get_task_info(q, task_id) gained wake_at, awaited_event and wait_step (before 0.2).
do $changed$
declare
  fn regprocedure := to_regprocedure('teguh.get_task_info(text, uuid)');
begin
  if fn is not null
     and not exists (select 1 from pg_proc where oid = fn and 'wait_step' = any(proargnames)) then
    perform set_config('teguh._regrant_get_task_info',
                       (select coalesce(proacl::text, '') from pg_proc where oid = fn), true);
    execute format('drop function %s', fn);
  end if;
end
$changed$;

-- A function whose result columns changed cannot be replaced, only dropped;
-- the roles granted EXECUTE on it keep their grant: the old function is
-- replaced by a stub of the new shape carrying the old ACL, which the
-- `create or replace` below then fills in (replacing keeps the ACL).
-- 0.2: get_task_result returns snoozes.
do $changed$
declare
  acl aclitem[];
  grantee oid;
begin
  if exists (select 1 from pg_proc
              where oid = to_regprocedure('teguh.get_task_result(text, uuid)')
                and not 'snoozes' = any(proargnames)) then
    select proacl into acl from pg_proc where oid = to_regprocedure('teguh.get_task_result(text, uuid)');
    drop function teguh.get_task_result(text, uuid);
    create function teguh.get_task_result(q text, p_task_id uuid)
    returns table(task_id uuid, state text, attempts int, result jsonb, failure_reason jsonb,
                  cancelled_at timestamptz, finished_at timestamptz, snoozes int)
    language sql as 'select null::uuid, null, null::int, null::jsonb, null::jsonb, null::timestamptz, null::timestamptz, null::int where false';
    -- a new function is executable by PUBLIC until the privileges block below
    revoke execute on function teguh.get_task_result(text, uuid) from public;
    for grantee in select distinct a.grantee from aclexplode(acl) a
                    where a.privilege_type = 'EXECUTE' and a.grantee <> 0 loop
      execute format('grant execute on function teguh.get_task_result(text, uuid) to %I',
                     (select rolname from pg_roles where oid = grantee));
    end loop;
  end if;
end
$changed$;

-- claim_runs gained queue_wait and lease_expired (docs/metrics.md): the same stub
-- pattern, so the roles granted it keep their grant.
do $changed$
declare
  acl aclitem[];
  grantee oid;
begin
  if exists (select 1 from pg_proc
              where oid = to_regprocedure('teguh.claim_runs(text, text, int, int)')
                and not 'lease_expired' = any(proargnames)) then
    select proacl into acl from pg_proc where oid = to_regprocedure('teguh.claim_runs(text, text, int, int)');
    drop function teguh.claim_runs(text, text, int, int);
    create function teguh.claim_runs(q text, worker_id text, claim_timeout int default 30, qty int default 1)
    returns table(run_id uuid, task_id uuid, attempt int, task_name text, params jsonb, retry_strategy jsonb,
                  max_attempts int, headers jsonb, wake_event text, event_payload jsonb, checkpoints jsonb,
                  queue_wait double precision, lease_expired jsonb)
    language sql as 'select null::uuid, null::uuid, null::int, null, null::jsonb, null::jsonb, null::int,
                     null::jsonb, null, null::jsonb, null::jsonb, null::float8, null::jsonb where false';
    revoke execute on function teguh.claim_runs(text, text, int, int) from public;
    for grantee in select distinct a.grantee from aclexplode(acl) a
                    where a.privilege_type = 'EXECUTE' and a.grantee <> 0 loop
      execute format('grant execute on function teguh.claim_runs(text, text, int, int) to %I',
                     (select rolname from pg_roles where oid = grantee));
    end loop;
  end if;
end
$changed$;

drop function if exists teguh._spawn(text, jsonb);
drop function if exists teguh._spawn(text, jsonb, int, boolean);  -- batches added batch_id

-- cancel_task(q, task_id) gained `children boolean default true` (section
-- "Composition"); its grants are given back after it is re-created.
do $changed$
declare
  fn regprocedure := to_regprocedure('teguh.cancel_task(text, uuid)');
begin
  if fn is not null then
    perform set_config('teguh._regrant_cancel_task',
                       (select coalesce(proacl::text, '') from pg_proc where oid = fn), true);
    execute format('drop function %s', fn);
  end if;
end
$changed$;

-- ---------------------------------------------------------------------------
-- Clock, ids, version
-- ---------------------------------------------------------------------------

-- version(): the schema version, e.g. '0.1.0'; the Python client refuses to
-- work against a different major version.
-- Locks: none. Notifies: nobody (nor does current_time()).
create or replace function teguh.version() returns text
language sql immutable as $$ select '0.1.0' $$;

-- The only "now" of the engine: tests pin it with `set teguh.fake_now = ...`.
create or replace function teguh.current_time() returns timestamptz
language sql volatile as $$
  select coalesce(nullif(current_setting('teguh.fake_now', true), '')::timestamptz, clock_timestamp())
$$;

-- A UUIDv7 (RFC 9562, "fixed-length dedicated counter" method): 48-bit
-- milliseconds from teguh.current_time(), version 7, rand_a zero, RFC 4122
-- variant, a 38-bit counter, then 24 random bits. Ids sort by creation time,
-- and ids of the same millisecond sort in the order they were made, also
-- across sessions: the counter is a sequence, whose nextval is ordered
-- database-wide (a per-backend counter would leave racing producers random
-- within a millisecond). The claim orders equal priorities by id, so this
-- is what makes tasks claimed in spawn order, the items of one spawn_tasks
-- call included (they are numbered in array order). The counter wraps after
-- 2^38 ids; only ids of the one millisecond that straddles the wrap could
-- then sort out of order. The random bytes come from gen_random_uuid(), or
-- from pgcrypto's gen_random_bytes when pgcrypto is installed.
create sequence if not exists teguh._uuidv7_counter as bigint;

-- _uuidv7_from(rand): the id with its three random bytes given (the layout
-- above); portable_uuidv7 draws them per id, a plain spawn_tasks batch once
-- for all its items (_random_triples): one gen_random_uuid() per four items
-- instead of one per item, where the random bytes cost more than the rest of
-- an id. Both inline into the statement that calls them.
create or replace function teguh._uuidv7_from(rand bytea) returns uuid
language sql volatile as $$
  select encode(
    -- milliseconds, then version nibble 0111 and a zero rand_a
    int8send((floor(extract(epoch from teguh.current_time()) * 1000)::bigint << 16) | 28672)
    -- variant bits 10, then the low 38 bits of the counter (5 bytes)
    || substring(int8send((nextval('teguh._uuidv7_counter') & 274877906943) | 549755813888) from 4 for 5)
    || rand,
    'hex')::uuid
$$;

create or replace function teguh.portable_uuidv7() returns uuid
language sql volatile as $$
  select teguh._uuidv7_from(substring(uuid_send(gen_random_uuid()) from 14 for 3))
$$;

-- _random_triples(n): at least 3n random bytes (item i takes bytes 3i-2 to 3i), from
-- gen_random_uuid(), whose bytes 1-6 and 10-15 are random (7 and 9 carry
-- its version and variant); from pgcrypto's gen_random_bytes when pgcrypto
-- is installed (below).
create or replace function teguh._random_triples(n int) returns bytea
language sql volatile as $$
  select coalesce(string_agg(substring(s.b from 1 for 6) || substring(s.b from 10 for 6), ''::bytea), ''::bytea)
    from (select uuid_send(gen_random_uuid()) as b from generate_series(1, (n + 3) / 4)) s
$$;

do $install$
declare
  crypto_schema name;
begin
  select n.nspname into crypto_schema
    from pg_extension e join pg_namespace n on n.oid = e.extnamespace
   where e.extname = 'pgcrypto';
  if crypto_schema is not null then
    execute format($f$
      create or replace function teguh.portable_uuidv7() returns uuid
      language sql volatile as $body$
        select teguh._uuidv7_from(%I.gen_random_bytes(3))
      $body$$f$, crypto_schema);
    -- gen_random_bytes gives at most 1024 bytes a call
    execute format($f$
      create or replace function teguh._random_triples(n int) returns bytea
      language sql volatile as $body$
        select coalesce(string_agg(%I.gen_random_bytes(least(1020, 3 * n - g)), ''::bytea), ''::bytea)
          from generate_series(0, 3 * n - 1, 1020) g
      $body$$f$, crypto_schema);
  end if;
end
$install$;

drop function if exists teguh._random_bytes();
drop function if exists teguh._drop_state_check(text);  -- its name in an unreleased build

-- ---------------------------------------------------------------------------
-- Validation and errors
-- ---------------------------------------------------------------------------

-- Raises TG001 unless q is a valid queue name (checked before any SQL is built from it).
create or replace function teguh._check_queue_name(q text) returns void
language plpgsql immutable as $$
begin
  if q is null or q !~ '^[a-z][a-z0-9_]*$' or octet_length(q) > 55 then
    raise exception 'invalid queue name %: a queue name starts with a lowercase letter, '
      'holds only lowercase letters, digits and underscores, and is at most 55 bytes',
      coalesce(quote_literal(q), 'NULL')
      using errcode = 'TG001';
  end if;
end
$$;

-- Raises TG001 for an invalid name, TG002 for a queue not in teguh.queues.
create or replace function teguh._check_queue(q text) returns void
language plpgsql stable as $$
begin
  perform teguh._check_queue_name(q);
  if not exists (select 1 from teguh.queues where queue_name = q) then
    raise exception 'queue "%" not found', q
      using errcode = 'TG002', hint = format('create it with teguh.create_queue(%L)', q);
  end if;
end
$$;

-- Names end up in btree keys (about 2.7 kB at most) and notifications, so they
-- are capped well below both limits. Blank means ASCII whitespace only: `\s`
-- follows the database's locale (U+2028 is a space under glibc, not under C),
-- and the client must draw the same line whatever the locale.
create or replace function teguh._check_name(what text, val text) returns void
language plpgsql immutable as $$
begin
  if val is null or val ~ '^[ \t\n\r\f\v]*$' then
    raise exception '% must not be blank', what using errcode = 'TG004';
  end if;
  if octet_length(val) > 1024 then
    raise exception '% is too long: % bytes, at most 1024', what, octet_length(val)
      using errcode = 'TG004';
  end if;
end
$$;

-- CASE, not AND: SQL does not promise to evaluate AND left to right.
create or replace function teguh._is_int(j jsonb) returns boolean
language sql immutable as $$
  select case when jsonb_typeof(j) = 'number'
              then (j #>> '{}')::numeric = trunc((j #>> '{}')::numeric)
                   and (j #>> '{}')::numeric between -2147483648 and 2147483647
              else false end
$$;

-- True for a JSON number of seconds in [0, 100 years).
create or replace function teguh._is_seconds(j jsonb) returns boolean
language sql immutable as $$
  select case when jsonb_typeof(j) = 'number'
              then (j #>> '{}')::numeric >= 0 and (j #>> '{}')::numeric < 3153600000
              else false end
$$;

-- Raises TG004 unless rs is null or a valid retry strategy (docs/sql-interface.md).
create or replace function teguh._check_retry_strategy(rs jsonb) returns void
language plpgsql immutable as $$
declare
  bad text;
begin
  if rs is null or jsonb_typeof(rs) = 'null' then
    return;
  end if;
  if jsonb_typeof(rs) <> 'object' then
    raise exception 'retry_strategy must be an object, not %', jsonb_typeof(rs) using errcode = 'TG004';
  end if;
  select string_agg(k, ', ') into bad from jsonb_object_keys(rs) k
   where k not in ('kind', 'base_seconds', 'factor', 'max_seconds', 'jitter');
  if bad is not null then
    raise exception 'retry_strategy has unknown keys: %', bad using errcode = 'TG004';
  end if;
  if coalesce(rs->>'kind', '') not in ('fixed', 'exponential', 'none') then
    raise exception 'retry_strategy kind must be fixed, exponential or none, not %',
      coalesce(rs->>'kind', 'missing') using errcode = 'TG004';
  end if;
  if rs ? 'base_seconds' and jsonb_typeof(rs->'base_seconds') <> 'null'
     and not teguh._is_seconds(rs->'base_seconds') then
    raise exception 'retry_strategy base_seconds must be a number >= 0' using errcode = 'TG004';
  end if;
  if rs ? 'max_seconds' and jsonb_typeof(rs->'max_seconds') <> 'null'
     and not teguh._is_seconds(rs->'max_seconds') then
    raise exception 'retry_strategy max_seconds must be a number >= 0' using errcode = 'TG004';
  end if;
  if rs ? 'factor' and jsonb_typeof(rs->'factor') <> 'null'
     and (case when jsonb_typeof(rs->'factor') = 'number'
               then (rs->>'factor')::numeric <= 0 or (rs->>'factor')::numeric > 1000
               else true end) then
    raise exception 'retry_strategy factor must be a number > 0 (and at most 1000)' using errcode = 'TG004';
  end if;
  if rs ? 'jitter' and jsonb_typeof(rs->'jitter') <> 'null'
     and (case when jsonb_typeof(rs->'jitter') = 'number'
               then (rs->>'jitter')::numeric < 0 or (rs->>'jitter')::numeric > 1
               else true end) then
    raise exception 'retry_strategy jitter must be a number between 0 and 1' using errcode = 'TG004';
  end if;
end
$$;

-- Checks one spawn item (task_name, params and options in one flat object).
create or replace function teguh._check_spawn_item(item jsonb, pos bigint) returns void
language plpgsql stable as $$
declare
  bad text;
  what text := case when pos is null then 'spawn options' else format('spawn item %s', pos) end;
begin
  if item is null or jsonb_typeof(item) <> 'object' then
    raise exception '% must be a JSON object', what using errcode = 'TG004';
  end if;
  select string_agg(k, ', ') into bad from jsonb_object_keys(item) k
   where k not in ('task_name', 'params', 'headers', 'retry_strategy', 'max_attempts', 'cancellation',
                   'idempotency_key', 'available_at', 'notify_done', 'priority', 'concurrency_key',
                   'rate_limit_key');
  if bad is not null then
    raise exception '% has unknown keys: %', what, bad using errcode = 'TG004';
  end if;
  perform teguh._check_name('task name', item->>'task_name');
  if jsonb_typeof(item->'headers') not in ('object', 'null') then
    raise exception '% headers must be an object', what using errcode = 'TG004';
  end if;
  perform teguh._check_retry_strategy(item->'retry_strategy');
  if jsonb_typeof(item->'max_attempts') <> 'null'
     and not (teguh._is_int(item->'max_attempts') and (item->>'max_attempts')::int >= 0) then
    raise exception '% max_attempts must be an integer >= 1, or 0 for unlimited (null: the default), not %',
      what, item->'max_attempts' using errcode = 'TG004';
  end if;
  if jsonb_typeof(item->'cancellation') <> 'null' then
    if jsonb_typeof(item->'cancellation') <> 'object' then
      raise exception '% cancellation must be an object', what using errcode = 'TG004';
    end if;
    select string_agg(k, ', ') into bad from jsonb_object_keys(item->'cancellation') k
     where k not in ('max_delay', 'max_duration');
    if bad is not null then
      raise exception '% cancellation has unknown keys: %', what, bad using errcode = 'TG004';
    end if;
    if (item->'cancellation' ? 'max_delay' and jsonb_typeof(item->'cancellation'->'max_delay') <> 'null'
        and not teguh._is_seconds(item->'cancellation'->'max_delay'))
       or (item->'cancellation' ? 'max_duration' and jsonb_typeof(item->'cancellation'->'max_duration') <> 'null'
        and not teguh._is_seconds(item->'cancellation'->'max_duration')) then
      raise exception '% cancellation max_delay and max_duration must be numbers of seconds >= 0', what
        using errcode = 'TG004';
    end if;
  end if;
  if jsonb_typeof(item->'idempotency_key') <> 'null' then
    if jsonb_typeof(item->'idempotency_key') <> 'string' then
      raise exception '% idempotency_key must be a string', what using errcode = 'TG004';
    end if;
    perform teguh._check_name('idempotency key', item->>'idempotency_key');
  end if;
  if jsonb_typeof(item->'concurrency_key') <> 'null' then
    if jsonb_typeof(item->'concurrency_key') <> 'string' then
      raise exception '% concurrency_key must be a string', what using errcode = 'TG004';
    end if;
    perform teguh._check_name('concurrency_key', item->>'concurrency_key');
  end if;
  if jsonb_typeof(item->'rate_limit_key') <> 'null' then
    if jsonb_typeof(item->'rate_limit_key') <> 'string' then
      raise exception '% rate_limit_key must be a string', what using errcode = 'TG004';
    end if;
    perform teguh._check_name('rate_limit_key', item->>'rate_limit_key');
  end if;
  if jsonb_typeof(item->'available_at') <> 'null' then
    begin
      perform (item->>'available_at')::timestamptz;
    exception when others then
      raise exception '% available_at is not a timestamp: %', what, item->>'available_at'
        using errcode = 'TG004';
    end;
  end if;
  if jsonb_typeof(item->'notify_done') not in ('boolean', 'null') then
    raise exception '% notify_done must be a boolean', what using errcode = 'TG004';
  end if;
  if jsonb_typeof(item->'priority') <> 'null'
     and not (teguh._is_int(item->'priority') and abs((item->>'priority')::int) <= 32767) then
    raise exception '% priority must be an integer between -32767 and 32767', what using errcode = 'TG004';
  end if;
end
$$;

-- The spawn options a task type supplies: item with each of d's keys that
-- item does not give (absent or JSON null) taken from d. d null: item.
create or replace function teguh._with_defaults(item jsonb, d jsonb) returns jsonb
language sql immutable as $$
  select case when d is null or d = '{}'::jsonb then item
              else item || coalesce((select jsonb_object_agg(e.key, e.value) from jsonb_each(d) e
                                      where coalesce(jsonb_typeof(item->e.key), 'null') = 'null'), '{}'::jsonb)
         end
$$;

-- True when spawn options o give every option a task type may default, so
-- the spawn need not look its task type up.
create or replace function teguh._gives_all_defaults(o jsonb) returns boolean
language sql immutable as $$
  select coalesce(jsonb_typeof(o->'max_attempts'), 'null') <> 'null'
     and coalesce(jsonb_typeof(o->'retry_strategy'), 'null') <> 'null'
     and coalesce(jsonb_typeof(o->'cancellation'), 'null') <> 'null'
     and coalesce(jsonb_typeof(o->'priority'), 'null') <> 'null'
$$;

-- Raised by run-scoped calls that find no lease for their run.
create or replace function teguh._raise_lease_error(q text, p_run_id uuid) returns void
language plpgsql as $$
declare
  cancelled_task uuid;
begin
  if p_run_id is not null then
    execute format('select task_id from teguh.%I where cancelled_run_id = $1', 't_' || q)
      into cancelled_task using p_run_id;
  end if;
  if cancelled_task is not null then
    raise exception 'task % in queue "%" has been cancelled (run %)', cancelled_task, q, p_run_id
      using errcode = 'AB001';
  end if;
  raise exception 'run % no longer holds its task in queue "%"', p_run_id, q
    using errcode = 'AB002',
          hint = 'its lease expired and another run took over, or the run already ended';
end
$$;

-- Seconds to wait before the attempt after `attempt` under retry strategy rs
-- (at most 100 years). With rs.jitter = j (0 to 1; missing: 0) the strategy's
-- delay d, already capped by max_seconds, becomes a random value in
-- [d, d * (1 + j)], so tasks that failed together do not retry together.
-- Volatile: it draws random().
create or replace function teguh._retry_delay(rs jsonb, attempt int) returns double precision
language sql volatile as $$
  select least(
    case coalesce(rs->>'kind', 'none')
      when 'fixed' then coalesce((rs->>'base_seconds')::float8, 60)
      when 'exponential' then least(
        coalesce((rs->>'base_seconds')::float8, 30)
          * power(coalesce((rs->>'factor')::float8, 2), least(greatest(attempt - 1, 0), 60)),
        coalesce((rs->>'max_seconds')::float8, 'infinity'::float8),
        3153600000)
      else 0
    end * (1 + random() * coalesce((rs->>'jitter')::float8, 0)),
    3153600000)
$$;

-- ---------------------------------------------------------------------------
-- Per-queue tables (see section "Tables")
-- ---------------------------------------------------------------------------

-- Creates an index unless it exists. `create index if not exists` is not
-- enough: it locks the table in SHARE mode before it looks, which blocks (and
-- can deadlock with) running workers on every re-install.
create or replace function teguh._ensure_index(definition text, index_name text, table_name text)
returns void
language plpgsql as $$
begin
  if to_regclass(format('teguh.%I', index_name)) is null then
    execute format('create index if not exists %I on teguh.%I ', index_name, table_name) || definition;
  end if;
end
$$;

-- Drops every check constraint of table teguh.<tbl> (see _ensure_queue_tables);
-- none: no statement, no lock.
create or replace function teguh._drop_check_constraints(tbl text) returns void
language plpgsql as $$
declare
  c name;
begin
  for c in select conname from pg_constraint
            where conrelid = format('teguh.%I', tbl)::regclass and contype = 'c' loop
    execute format('alter table teguh.%I drop constraint %I', tbl, c);
  end loop;
end
$$;

-- Creates (or upgrades) a queue's tables. Index names stay within 63 bytes for
-- the longest (55-byte) queue name.
-- Locks: none on a queue whose tables are up to date (it only reads the
--   catalog). Otherwise ACCESS EXCLUSIVE on t_<q> for an upgrade (alter
--   table, drop index) and SHARE on a table while building a missing index.
--   Callers hold the install lock.
create or replace function teguh._ensure_queue_tables(q text) returns void
language plpgsql as $$
begin
  execute format($ddl$
    create table if not exists teguh.%1$I (
      task_id uuid primary key,
      task_name text not null,
      params jsonb not null,
      headers jsonb,
      retry_strategy jsonb,
      max_attempts int,
      cancellation jsonb,
      idempotency_key text,
      priority int not null default 0,
      state text not null,
      attempts int not null default 1,
      enqueued_at timestamptz not null,
      first_started_at timestamptz,
      finished_at timestamptz,
      available_at timestamptz,
      wake_event text,
      last_run_id uuid,
      result jsonb,
      failure_reason jsonb,
      cancelled_at timestamptz,
      notify_done boolean not null default false,
      deadline_at timestamptz,
      cancelled_run_id uuid,
      snoozes int not null default 0,
      concurrency_key text,
      rate_limit_key text
    ) with (fillfactor = 30)$ddl$, 't_' || q);
  -- Upgrades of tables made before 0.2. Claim and completion rewrite a task's
  -- row in place (a HOT update, pruned without VACUUM) only when no indexed
  -- column changes: so the indexes below avoid state, last_run_id and
  -- finished_at, and the fill factor leaves room on the page for new versions:
  -- at 30 a page holds three versions of every row it was filled with, so a
  -- claim and a completion stay HOT even when no prune could run between them
  -- (at 40, one update in a hundred had to move to another page under load).
  if not exists (select 1 from pg_attribute
                  where attrelid = format('teguh.%I', 't_' || q)::regclass
                    and attname = 'cancelled_run_id' and not attisdropped) then
    execute format('alter table teguh.%I add column cancelled_run_id uuid', 't_' || q);
    execute format('update teguh.%I set cancelled_run_id = last_run_id where state = ''cancelled''', 't_' || q);
  end if;
  -- Tables made before 0.3 check state against the six states. Only the
  -- engine's functions write t_<q> (no role has a privilege on it), and
  -- PostgreSQL rebuilt the check from its stored text for every insert and
  -- update statement: a tenth of a spawn's server time, and as much again on
  -- every claim and completion. Dropping it takes a brief ACCESS EXCLUSIVE
  -- lock, once.
  perform teguh._drop_check_constraints('t_' || q);
  -- 0.2: snooze_run counts snoozes (a constant default: no table rewrite)
  if not exists (select 1 from pg_attribute
                  where attrelid = format('teguh.%I', 't_' || q)::regclass
                    and attname = 'snoozes' and not attisdropped) then
    execute format('alter table teguh.%I add column snoozes int not null default 0', 't_' || q);
  end if;
  -- 0.2: flow control (nullable, no default: a catalog change only). r_
  -- holds the slot of a limited run: its task_name and concurrency_key are
  -- set by the limited claim for a run that counts against a concurrency
  -- limit, and null otherwise (docs/flow-control.md).
  if not exists (select 1 from pg_attribute
                  where attrelid = format('teguh.%I', 't_' || q)::regclass
                    and attname = 'concurrency_key' and not attisdropped) then
    execute format('alter table teguh.%I add column concurrency_key text, add column rate_limit_key text',
                   't_' || q);
  end if;
  -- batches: the item's batch (teguh.batches), null for a plain task; a
  -- partial index, so plain tasks add no index entry (docs/composition.md)
  if not exists (select 1 from pg_attribute
                  where attrelid = format('teguh.%I', 't_' || q)::regclass
                    and attname = 'batch_id' and not attisdropped) then
    execute format('alter table teguh.%I add column batch_id uuid', 't_' || q);
  end if;
  perform teguh._ensure_index('(batch_id, task_id) where batch_id is not null',
                 't_' || q || '_bi', 't_' || q);
  if not exists (select 1 from pg_class
                  where oid = format('teguh.%I', 't_' || q)::regclass
                    and 'fillfactor=30' = any(coalesce(reloptions, '{}'))) then
    execute format('alter table teguh.%I set (fillfactor = 30)', 't_' || q);
  end if;
  if to_regclass(format('teguh.%I', 't_' || q || '_fi')) is not null then
    execute format('drop index if exists teguh.%I, teguh.%I, teguh.%I, teguh.%I',
                   't_' || q || '_ai', 't_' || q || '_di', 't_' || q || '_fi', 't_' || q || '_ci');
  end if;
  -- partial: most tasks have no key, and an index entry per spawn would be waste
  if to_regclass(format('teguh.%I', 't_' || q || '_ik')) is null then
    execute format('create unique index %I on teguh.%I (idempotency_key) where idempotency_key is not null',
                   't_' || q || '_ik', 't_' || q);
  end if;
  -- due sleepers and delayed tasks: every transition out of pending or
  -- sleeping clears available_at, so it is set only on them
  perform teguh._ensure_index('(available_at) where available_at is not null',
                 't_' || q || '_av', 't_' || q);
  -- cancellation deadlines: cleared when the task finishes
  perform teguh._ensure_index('(deadline_at) where deadline_at is not null',
                 't_' || q || '_dl', 't_' || q);
  -- tells AB001 from AB002 without a scan; set only by a cancel
  perform teguh._ensure_index('(cancelled_run_id) where cancelled_run_id is not null',
                 't_' || q || '_cr', 't_' || q);

  -- composition (docs/composition.md): a child's parent (set by spawn_children,
  -- null for plain tasks, so the guarded hooks in the terminal transitions
  -- cost nothing), and the last progress a run reported. Nullable, no
  -- default: a catalog change only. The partial index finds a parent's
  -- children (cancel cascades); plain tasks have no entry in it.
  if not exists (select 1 from pg_attribute
                  where attrelid = format('teguh.%I', 't_' || q)::regclass
                    and attname = 'parent_task_id' and not attisdropped) then
    execute format('alter table teguh.%I add column parent_task_id uuid, add column parent_queue text, '
                   'add column progress jsonb', 't_' || q);
  end if;
  perform teguh._ensure_index('(parent_task_id) where parent_task_id is not null',
                 't_' || q || '_pa', 't_' || q);

  -- dispatch: insert and delete only
  execute format($ddl$
    create table if not exists teguh.%I (
      task_id uuid primary key,
      attempt int not null,
      priority int not null default 0,
      available_at timestamptz not null,
      wake_event text,
      event_payload jsonb
    ) with (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000)$ddl$, 'p_' || q);
  perform teguh._ensure_index('(priority desc, available_at, task_id)',
                 'p_' || q || '_oi', 'p_' || q);

  -- leases of in-flight runs
  execute format($ddl$
    create table if not exists teguh.%1$I (
      run_id uuid primary key,
      task_id uuid not null,
      attempt int not null,
      claimed_by text not null,
      claimed_at timestamptz not null,
      claim_expires_at timestamptz,
      heartbeats int not null default 0,
      task_name text,
      concurrency_key text,
      constraint %2$I unique (task_id)
    ) with (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000)$ddl$,
    'r_' || q, 'r_' || q || '_ti');
  if not exists (select 1 from pg_attribute
                  where attrelid = format('teguh.%I', 'r_' || q)::regclass
                    and attname = 'task_name' and not attisdropped) then
    execute format('alter table teguh.%I add column task_name text, add column concurrency_key text', 'r_' || q);
  end if;
  perform teguh._ensure_index('(claim_expires_at) '
                 'where claim_expires_at is not null', 'r_' || q || '_ei', 'r_' || q);

  -- step checkpoints
  execute format($ddl$
    create table if not exists teguh.%I (
      task_id uuid not null,
      checkpoint_name text not null,
      state jsonb,
      status text not null default 'committed' check (status in ('committed', 'timed_out')),
      kind text not null default 'step' check (kind in ('step', 'sleep', 'event')),
      owner_run_id uuid,
      updated_at timestamptz not null,
      primary key (task_id, checkpoint_name)
    )$ddl$, 'c_' || q);

  -- events: SQL-NULL payload is a placeholder for "not emitted yet"
  execute format($ddl$
    create table if not exists teguh.%I (
      event_name text primary key,
      payload jsonb,
      emitted_at timestamptz,
      created_at timestamptz not null
    )$ddl$, 'e_' || q);
  perform teguh._ensure_index('((coalesce(emitted_at, created_at)))',
                 'e_' || q || '_ai', 'e_' || q);

  -- waits: tasks suspended on an event
  execute format($ddl$
    create table if not exists teguh.%I (
      task_id uuid primary key,
      run_id uuid not null,
      step_name text not null,
      event_name text not null,
      timeout_at timestamptz,
      created_at timestamptz not null
    )$ddl$, 'w_' || q);
  perform teguh._ensure_index('(event_name)', 'w_' || q || '_ei', 'w_' || q);
  perform teguh._ensure_ops_tables(q);  -- section "Operations (read side)"
end
$$;

-- ---------------------------------------------------------------------------
-- Per-queue hot path
-- ---------------------------------------------------------------------------

-- The plan cache mode of the hot path's statements driven by n ids (=
-- any(array)): generic plans up to 64 ids, where a custom plan would be
-- planned again on every call and planning costs more than running; custom
-- plans above, where the generic plan's probe of the whole array per row
-- (quadratic in n) costs more than planning. See _claim_<q>.
create or replace function teguh._plan_mode(n int) returns text
language sql immutable as $$
  select case when coalesce(n, 0) <= 64 then 'force_generic_plan' else 'force_custom_plan' end
$$;

-- The calls made for every task (spawn, claim, complete, next_due) run as
-- functions of their own queue, written with static SQL: PL/pgSQL caches
-- their plans for the session, where dynamic SQL would be planned on every
-- call. create_queue (and every install, for existing queues) generates them
-- from this template; the public functions check their arguments and call
-- them. Placeholders: %1$I _claim_<q>, %2$I _done_<q>, %3$I t_<q>,
-- %4$I r_<q>, %5$I p_<q>, %6$I c_<q>, %7$L the queue name, %8$L its channel,
-- %9$I _due_<q>, %10$I _spawn_<q>.
-- Each generated function is described in the template, above its own text
-- (comments there must not hold a percent sign: the template goes through
-- format()). They are internal: never granted, and create_queue revokes
-- PUBLIC's execute on them (teguh._lock_down_queue).
create or replace function teguh._hot_path_sql(q text) returns text
language sql immutable as $outer$
  select format($tmpl$
-- _claim_<q>(worker_id, claim_timeout, qty, paused, skip, limits): the work
-- of claim_runs, which checks the arguments and reads the queue's pause
-- state and limits flag. Runs the sweeps whose index says something is due,
-- then claims up to qty ready tasks: returns one row per run, with the
-- task's committed checkpoints. A paused queue claims nothing (the sweeps
-- still run); skip, the names of paused task types, is null when none is
-- paused, which keeps the common claim a walk of the dispatch index alone.
-- With limits (teguh.queues.has_limits) the tasks are picked one by one
-- instead, passing over those whose type or concurrency key has no free slot
-- or whose rate bucket has no token (docs/flow-control.md): a run holding a
-- slot gets its task_name (and concurrency_key) in its r_ row, which is what
-- the next claim counts.
-- Locks: never waits for a row. The sweeps' locks (skip locked), then p_ rows
--   (skip locked, index p_<q>_oi), then their t_ rows (skip locked); deletes
--   those p_ rows, updates the t_ rows, inserts one r_ row per task. With
--   limits: after the sweeps, the queue's limits lock (advisory, waits; see
--   the header), then per task its p_ row and t_ row (skip locked) and its
--   teguh.rate_limits row (waits, by the upsert; only holders of the limits
--   lock write it).
-- Notifies: teguh_<q> 'wake' when the sweeps readied more than it claimed,
--   plus what the sweeps send (teguh_<q> 'retry', teguh_done).
create or replace function teguh.%1$I(p_worker_id text, p_claim_timeout int, p_qty int,
                                       p_paused boolean, p_skip text[], p_limits boolean)
returns table(run_id uuid, task_id uuid, attempt int, task_name text, params jsonb, retry_strategy jsonb,
              max_attempts int, headers jsonb, wake_event text, event_payload jsonb, checkpoints jsonb,
              queue_wait double precision, lease_expired jsonb)
language plpgsql as $body$
#variable_conflict use_column
declare
  now_ts timestamptz := teguh.current_time();
  recovered record;
  woken int := 0;
  claimed int;
  v_ids uuid[];
  v_resumed uuid[];
  v_slots uuid[];
  v_limits jsonb;
  v_type_run jsonb;
  v_key_run jsonb;
  v_skip text[];
  v_full text[] := '{}';
  v_lim jsonb;
  v_conc int;
  v_enc text;
  v_n int;
  v_unit double precision;
  v_cap double precision;
  v_rkey text;
  v_took boolean;
  v_plans text;
  cand record;
begin
  -- A claim lost in a crash only makes its tasks claimable again, and any
  -- later durable commit (a checkpoint, a completion) flushes it first:
  -- waiting for the disk here buys nothing.
  perform set_config('synchronous_commit', 'off', true);

  -- The sweeps, entered only when their index says something is due. The
  -- probes take no parameter, so their cached plans cannot go generic-wrong.
  if (select min(r.claim_expires_at) from teguh.%4$I r where r.claim_expires_at is not null) <= now_ts then
    select * into recovered from teguh._recover_expired(%7$L, p_qty, now_ts);
    woken := recovered.made_ready;
  end if;
  if (select min(t.available_at) from teguh.%3$I t where t.available_at is not null) <= now_ts then
    woken := woken + teguh._wake_due(%7$L, p_qty, now_ts);
  end if;
  if (select min(t.deadline_at) from teguh.%3$I t where t.deadline_at is not null) <= now_ts then
    perform teguh._enforce_deadlines(%7$L, p_qty, now_ts);
  end if;

  if p_paused then
    return;
  end if;
  -- Pick through index p_<q>_oi. The picked ids then drive every other
  -- statement as `= any(array)`, which the planner sizes at a handful of
  -- rows: primary-key probes, whatever the batch size.
  if p_limits then
    -- One limited claim of the queue at a time (the header's limits lock):
    -- each counts the slots the previous one took, since every statement
    -- below reads with a snapshot taken after the lock was granted.
    perform pg_advisory_xact_lock(1952804200, hashtext(%7$L));
    select coalesce(jsonb_object_agg(tt.task_name, jsonb_build_object(
             'c', tt.concurrency, 'k', tt.key_concurrency, 'n', split_part(tt.rate_limit, '/', 1)::int,
             'u', case split_part(tt.rate_limit, '/', 2) when 's' then 1 when 'm' then 60 else 3600 end)),
           '{}'::jsonb)
      into v_limits
      from teguh.task_types tt
     where tt.queue_name = %7$L
       and (tt.concurrency is not null or tt.key_concurrency is not null or tt.rate_limit is not null);
    -- the slots held: runs in flight whose claim gave them one
    select coalesce(jsonb_object_agg(x.task_name, x.n), '{}'::jsonb) into v_type_run
      from (select r.task_name, count(*) as n from teguh.%4$I r where r.task_name is not null group by 1) x;
    select coalesce(jsonb_object_agg(length(x.task_name) || ':' || x.task_name || x.concurrency_key, x.n),
                    '{}'::jsonb) into v_key_run
      from (select r.task_name, r.concurrency_key, count(*) as n from teguh.%4$I r
             where r.concurrency_key is not null group by 1, 2) x;
    -- types with no free slot are passed over by the walk itself
    select coalesce(array_agg(l.key), '{}') into v_skip
      from jsonb_each(v_limits) l
     where (l.value->>'c')::int <= coalesce((v_type_run->>l.key)::int, 0);
    v_skip := v_skip || coalesce(p_skip, '{}');
    -- a bucket whose next token is due no longer blocks anyone
    update teguh.rate_limits rl set blocked_until = null
     where rl.queue_name = %7$L and rl.blocked_until <= now_ts;
    v_ids := '{}';
    v_slots := '{}';
    for cand in
      select p.task_id, t.task_name, t.concurrency_key, t.rate_limit_key
        from teguh.%5$I p join teguh.%3$I t on t.task_id = p.task_id
       where t.task_name <> all(v_skip)
       order by p.priority desc, p.available_at, p.task_id
    loop
      v_lim := v_limits->cand.task_name;
      v_conc := (v_lim->>'c')::int;
      if v_conc is not null and coalesce((v_type_run->>cand.task_name)::int, 0) >= v_conc then
        continue;
      end if;
      if cand.concurrency_key is not null then
        v_enc := length(cand.task_name) || ':' || cand.task_name || cand.concurrency_key;
        if coalesce((v_key_run->>v_enc)::int, 0) >= coalesce((v_lim->>'k')::int, 1) then
          continue;
        end if;
      end if;
      v_n := (v_lim->>'n')::int;
      if v_n is not null then
        v_rkey := coalesce(cand.rate_limit_key, '');
        continue when length(cand.task_name) || ':' || cand.task_name || v_rkey = any(v_full);
      end if;
      -- without waiting: a sweep or a cancel may hold them
      perform 1 from teguh.%5$I p where p.task_id = cand.task_id for update skip locked;
      continue when not found;
      perform 1 from teguh.%3$I t where t.task_id = cand.task_id for update skip locked;
      continue when not found;
      if v_n is not null then
        -- take a token: a new bucket starts full (ceil(n / 10) tokens), and
        -- refills n per unit
        v_unit := (v_lim->>'u')::double precision;
        v_cap := ceil(v_n / 10.0);
        insert into teguh.rate_limits as rl (queue_name, task_name, rate_key, tokens, updated_at)
        values (%7$L, cand.task_name, v_rkey, v_cap - 1, now_ts)
        on conflict (queue_name, task_name, rate_key) do update
           set tokens = least(v_cap, rl.tokens + extract(epoch from now_ts - rl.updated_at) * v_n / v_unit) - 1,
               updated_at = now_ts, blocked_until = null
         where least(v_cap, rl.tokens + extract(epoch from now_ts - rl.updated_at) * v_n / v_unit) >= 1;
        v_took := found;
        if not v_took then
          -- empty: idle workers wake when the next token is due (next_due)
          update teguh.rate_limits rl
             set blocked_until = now_ts + make_interval(secs => greatest(
                   (1 - least(v_cap, rl.tokens + extract(epoch from now_ts - rl.updated_at) * v_n / v_unit))
                     * v_unit / v_n, 0.001))
           where rl.queue_name = %7$L and rl.task_name = cand.task_name and rl.rate_key = v_rkey;
          v_full := v_full || (length(cand.task_name) || ':' || cand.task_name || v_rkey);
          continue;
        end if;
      end if;
      v_ids := v_ids || cand.task_id;
      if v_conc is not null or cand.concurrency_key is not null then
        v_slots := v_slots || cand.task_id;
        v_type_run := v_type_run
          || jsonb_build_object(cand.task_name, coalesce((v_type_run->>cand.task_name)::int, 0) + 1);
        if cand.concurrency_key is not null then
          v_key_run := v_key_run || jsonb_build_object(v_enc, coalesce((v_key_run->>v_enc)::int, 0) + 1);
        end if;
      end if;
      exit when cardinality(v_ids) >= p_qty;
    end loop;
    if cardinality(v_ids) = 0 then
      return;
    end if;
    v_resumed := v_ids;  -- checkpoints read for every task, as before
  elsif p_skip is null then
    select array_agg(x.task_id) into v_ids
      from (select p.task_id from teguh.%5$I p
             order by p.priority desc, p.available_at, p.task_id
             limit p_qty
               for update skip locked) x;
  else
    -- paused task types: the same walk, passing over their tasks (each
    -- claim steps over them again, so a long pause of a busy type costs)
    select array_agg(x.task_id) into v_ids
      from (select p.task_id from teguh.%5$I p join teguh.%3$I t on t.task_id = p.task_id
             where t.task_name <> all(p_skip)
             order by p.priority desc, p.available_at, p.task_id
             limit p_qty
               for update of p skip locked) x;
  end if;
  if v_ids is null then
    return;
  end if;
  -- Every statement from here on is driven by the picked ids (= any(array)).
  -- Left to choose, the plan cache plans them again on every call whose
  -- batch is smaller than the ten elements a generic plan assumes (most
  -- claims below saturation), and planning the claim costs more than running
  -- it; but the generic plan probes the whole array once per row, so it
  -- grows with the square of the batch, and a custom plan is the cheaper one
  -- for a large batch. Hence the choice by size (the same in _done_<q>). The
  -- pick above keeps its custom plan: its LIMIT makes it a walk of the index.
  v_plans := current_setting('plan_cache_mode');
  perform set_config('plan_cache_mode', teguh._plan_mode(cardinality(v_ids)), true);
  -- Their task rows, without waiting: a sweep in another transaction may
  -- hold one (FOR UPDATE keeps the lock on a row it rechecked and skipped),
  -- and waiting for it while holding our own locks can deadlock. A task
  -- skipped here keeps its p_ row for the next claim. (The limited walk
  -- locked them already.)
  if not p_limits then
    -- A keyed task is never handed out here: the spawn that made the first
    -- one turned the queue's has_limits on, but a claim that read the flag
    -- just before would otherwise start it unchecked. It keeps its p_ row,
    -- and the spawn's notification brings a claim that takes the limited path.
    -- v_resumed: the tasks that ran before. Only a run writes checkpoints,
    -- so a first claim (first_started_at null, the common case) has none,
    -- and the claim below skips its c_ probe.
    select array_agg(x.task_id), array_agg(x.task_id) filter (where x.ran) into v_ids, v_resumed
      from (select t.task_id, t.first_started_at is not null as ran from teguh.%3$I t
             where t.task_id = any(v_ids) and t.concurrency_key is null
               for update skip locked) x;
    if v_ids is null then
      perform set_config('plan_cache_mode', v_plans, true);
      return;
    end if;
  end if;

  return query
    with del as (
      delete from teguh.%5$I p
       where p.task_id = any(v_ids)
      returning p.task_id, p.attempt, p.wake_event, p.event_payload, p.priority, p.available_at,
                teguh.portable_uuidv7() as run_id
    ), upd as (
      update teguh.%3$I t
         set state = 'running', attempts = del.attempt, last_run_id = del.run_id,
             first_started_at = coalesce(t.first_started_at, now_ts), available_at = null, wake_event = null,
             deadline_at = case when t.first_started_at is null
                                then now_ts + make_interval(secs => (t.cancellation->>'max_duration')::float8)
                                else t.deadline_at end
        from del
       where t.task_id = any(v_ids) and t.task_id = del.task_id and t.state = 'pending'
         and (t.deadline_at is null or t.deadline_at > now_ts)
      returning del.run_id, t.task_id, del.attempt, t.task_name, t.params, t.retry_strategy,
                t.max_attempts, t.headers, del.wake_event, del.event_payload,
                del.priority, del.available_at, t.concurrency_key,
                -- a takeover: the previous attempt's lease expired (its reason, small, built by
                -- _recover_expired); null for a first attempt without reading failure_reason
                case when del.attempt > 1 then
                  case when t.failure_reason->>'type' = '$ClaimTimeout' then t.failure_reason end
                end as lease_expired
    ), ins as (
      -- v_slots is null but with limits: the common insert writes no slot
      insert into teguh.%4$I (run_id, task_id, attempt, claimed_by, claimed_at, claim_expires_at,
                              task_name, concurrency_key)
      select upd.run_id, upd.task_id, upd.attempt, p_worker_id, now_ts,
             case when p_claim_timeout > 0 then now_ts + make_interval(secs => p_claim_timeout) end,
             case when upd.task_id = any(v_slots) then upd.task_name end,
             case when upd.task_id = any(v_slots) then upd.concurrency_key end
        from upd
    )
    select upd.run_id, upd.task_id, upd.attempt, upd.task_name, upd.params, upd.retry_strategy,
           upd.max_attempts, upd.headers, upd.wake_event, upd.event_payload,
           case when upd.task_id = any(v_resumed) then
             coalesce((select jsonb_object_agg(c.checkpoint_name, c.state)
                         from teguh.%6$I c
                        where c.task_id = upd.task_id and c.status = 'committed' and c.kind <> 'sleep'),
                      '{}'::jsonb)
           else '{}'::jsonb end,
           extract(epoch from now_ts - upd.available_at)::double precision, upd.lease_expired
      from upd
     order by upd.priority desc, upd.available_at, upd.task_id;

  get diagnostics claimed = row_count;
  perform set_config('plan_cache_mode', v_plans, true);
  -- the sweeps may have readied more than this claim took: wake the others
  if woken > 0 and claimed >= p_qty then
    perform pg_notify(%8$L, 'wake');
  end if;
end
$body$;

-- _done_<q>(run_ids, results): the work of complete_runs. Completes every
-- run that still holds its lease; returns ok, cancelled or lost per run id.
-- Locks: the runs' r_ rows (waits, by their delete), then their t_ rows
--   (waits, by the update): r_ -> t_.
-- Notifies: teguh_done for each completed task spawned with notify_done;
--   teguh_<q> 'wake' when a run held a concurrency slot (its r_ row has a
--   task_name), so idle workers claim the task waiting for it.
-- Its statements run with generic plans for a small batch and custom ones
-- for a large one, for the reasons given in _claim_<q>.
create or replace function teguh.%2$I(p_run_ids uuid[], p_results jsonb[])
returns table(run_id uuid, outcome text)
language plpgsql as $body$
#variable_conflict use_column
declare
  now_ts timestamptz := teguh.current_time();
  v_runs uuid[];
  v_tasks uuid[];
  v_done uuid[];
  v_kids uuid[];
  v_slot boolean;
  v_batches uuid[];
  v_plans text := current_setting('plan_cache_mode');
begin
  perform set_config('plan_cache_mode', teguh._plan_mode(cardinality(p_run_ids)), true);
  -- lease rows first, then task rows: r_ -> t_; every statement probes by key
  with ended as (
    delete from teguh.%4$I r where r.run_id = any(p_run_ids) returning r.run_id, r.task_id, r.task_name
  )
  select array_agg(ended.run_id), array_agg(ended.task_id), bool_or(ended.task_name is not null)
    into v_runs, v_tasks, v_slot from ended;
  if v_slot then
    perform pg_notify(%8$L, 'wake');
  end if;

  if v_runs is not null then
    with input as (
      select distinct on (x.run_id) x.run_id, x.result
        from unnest(p_run_ids, p_results) as x(run_id, result)
       order by x.run_id
    ), ended as (
      select e.run_id, e.task_id from unnest(v_runs, v_tasks) as e(run_id, task_id)
    ), done as (
      update teguh.%3$I t
         set state = 'completed', result = input.result, finished_at = now_ts, available_at = null,
             wake_event = null, deadline_at = null
        from ended join input on input.run_id = ended.run_id
       where t.task_id = any(v_tasks) and t.task_id = ended.task_id
      returning t.task_id, t.notify_done, t.parent_task_id, t.batch_id
    )
    select array_agg(done.task_id) filter (where done.notify_done),
           array_agg(done.task_id) filter (where done.parent_task_id is not null),
           array_agg(done.batch_id) filter (where done.batch_id is not null)
      into v_done, v_kids, v_batches from done;
    -- batch items only: counted at commit (section "Batches")
    if v_batches is not null then
      perform teguh._batch_items_ended(v_batches, 'completed');
    end if;
    if v_done is not null then
      perform pg_notify('teguh_done', %7$L || ':' || d::text) from unnest(v_done) as d;
    end if;
    if v_kids is not null then
      perform teguh._children_ended(%7$L, v_kids, now_ts);
    end if;
    perform teguh._notify_watch(%7$L);
  end if;

  return query
    select x.run_id,
           case when x.run_id = any(v_runs) then 'ok'
                when exists (select 1 from teguh.%3$I t where t.cancelled_run_id = x.run_id) then 'cancelled'
                else 'lost' end
      from (select distinct y.run_id from unnest(p_run_ids) as y(run_id) where y.run_id is not null) x;
  perform set_config('plan_cache_mode', v_plans, true);
end
$body$;

-- One task, the common case: no validation loop, no dynamic SQL, and a plain
-- insert unless an idempotency key can conflict.
-- _spawn_<q>(task_name, params, options, default_max, types): the work of
-- spawn_task, which reads the queue's default_max_attempts (0: unlimited,
-- stored as null) and whether it has task types. With task types, options
-- not given are taken from the task's type (teguh.task_types), unless the
-- spawn gives all of them. Returns the new task's id, or null when the
-- idempotency key names a task already (spawn_task reads that one): a
-- scalar, since a function returning a table costs spawn_task's dynamic
-- call a function scan and two result sets more.
-- Locks: none on existing rows; inserts the t_ row and, when the task is
--   ready now, its p_ row. An idempotency key held by an uncommitted spawn
--   makes the insert wait for that transaction.
-- Notifies: teguh_<q> 'spawn' when the task is ready now.
create or replace function teguh.%10$I(p_task_name text, p_params jsonb, p_options jsonb,
                                        p_default_max int, p_types boolean)
returns uuid
language plpgsql as $body$
#variable_conflict use_column
declare
  now_ts timestamptz;
  v_id uuid;
  v_later timestamptz;
  v_priority int := 0;
  v_max int;
begin
  -- The common spawn (no options, no task types, a valid name) in two
  -- statements and no other expression: each expression and statement of a
  -- function is set up again in every transaction, so the fewer the cheaper.
  if p_options = '{}'::jsonb and not p_types and p_task_name !~ '^\s*$' and octet_length(p_task_name) <= 1024 then
    insert into teguh.%3$I as t (task_id, task_name, params, max_attempts, state, attempts, enqueued_at)
    values (teguh.portable_uuidv7(), p_task_name, coalesce(p_params, 'null'::jsonb), nullif(p_default_max, 0),
            'pending', 1, teguh.current_time())
    returning t.task_id, t.enqueued_at into v_id, now_ts;
    insert into teguh.%5$I (task_id, attempt, priority, available_at) values (v_id, 1, 0, now_ts);
    perform pg_notify(%8$L, 'spawn');
    return v_id;
  end if;
  now_ts := teguh.current_time();
  v_id := teguh.portable_uuidv7();
  v_max := nullif(p_default_max, 0);
  if p_types and not teguh._gives_all_defaults(p_options) then
    p_options := teguh._with_defaults(p_options,
      (select tt.defaults from teguh.task_types tt where tt.queue_name = %7$L and tt.task_name = p_task_name));
  end if;
  if p_options = '{}'::jsonb then
    if p_task_name is null or p_task_name ~ '^\s*$' or octet_length(p_task_name) > 1024 then
      perform teguh._check_name('task name', p_task_name);
    end if;
    insert into teguh.%3$I (task_id, task_name, params, max_attempts, state, attempts, enqueued_at)
    values (v_id, p_task_name, coalesce(p_params, 'null'::jsonb), v_max, 'pending', 1, now_ts);
  else
    perform teguh._check_spawn_item(p_options || jsonb_build_object('task_name', p_task_name), null);
    v_priority := coalesce((p_options->>'priority')::int, 0);
    if (p_options->>'available_at')::timestamptz > now_ts then
      v_later := (p_options->>'available_at')::timestamptz;
    end if;
    insert into teguh.%3$I as t
      (task_id, task_name, params, headers, retry_strategy, max_attempts, cancellation, idempotency_key,
       priority, state, attempts, enqueued_at, available_at, notify_done, deadline_at, concurrency_key,
       rate_limit_key)
    values (v_id, p_task_name, coalesce(p_params, 'null'::jsonb), nullif(p_options->'headers', 'null'::jsonb),
            nullif(p_options->'retry_strategy', 'null'::jsonb),
            case when jsonb_typeof(p_options->'max_attempts') = 'number'
                 then nullif((p_options->>'max_attempts')::int, 0) else v_max end,
            nullif(p_options->'cancellation', 'null'::jsonb), p_options->>'idempotency_key', v_priority,
            'pending', 1, now_ts, v_later, coalesce((p_options->>'notify_done')::boolean, false),
            now_ts + make_interval(secs => (p_options->'cancellation'->>'max_delay')::float8),
            p_options->>'concurrency_key', p_options->>'rate_limit_key')
    on conflict (idempotency_key) where idempotency_key is not null do nothing;
    if not found then
      return null;  -- the key is taken: spawn_task reads its task
    end if;
  end if;
  if v_later is null then
    insert into teguh.%5$I (task_id, attempt, priority, available_at) values (v_id, 1, v_priority, now_ts);
    perform pg_notify(%8$L, 'spawn');
  end if;
  return v_id;
end
$body$;

-- _due_<q>(): the work of next_due (every idle worker's poll): the least of
-- three partial indexes' minimums. PL/pgSQL keeps its plan for the session;
-- as a SQL function it was inlined into next_due's dynamic call and planned
-- again on every poll. Locks: none.
create or replace function teguh.%9$I() returns timestamptz
language plpgsql stable as $body$
begin
  return least(
    (select min(t.available_at) from teguh.%3$I t where t.available_at is not null),
    (select min(t.deadline_at) from teguh.%3$I t where t.deadline_at is not null),
    (select min(r.claim_expires_at) from teguh.%4$I r where r.claim_expires_at is not null));
end
$body$;
$tmpl$,
    '_claim_' || q, '_done_' || q, 't_' || q, 'r_' || q, 'p_' || q, 'c_' || q, q, 'teguh_' || q,
    '_due_' || q, '_spawn_' || q)
$outer$;

-- ---------------------------------------------------------------------------
-- Queue registry
-- ---------------------------------------------------------------------------

-- create_queue(q): registers queue q, creates its six tables and generates
-- its functions. A queue that exists is left alone, with no lock taken.
-- Raises TG001 for an invalid name.
-- Locks: for a new queue, the install lock (advisory 7420581234), then a new
--   teguh.queues row and new tables.
-- Notifies: nobody.
create or replace function teguh.create_queue(q text) returns void
language plpgsql as $$
begin
  perform teguh._check_queue_name(q);
  -- An existing queue is left alone: DDL on its tables would lock them
  -- against running workers (every worker creates its queue at start).
  if exists (select 1 from teguh.queues where queue_name = q) then
    return;
  end if;
  -- concurrent `create table if not exists` can collide in pg_type
  perform pg_advisory_xact_lock(7420581234);
  insert into teguh.queues (queue_name) values (q) on conflict do nothing;
  perform teguh._ensure_queue_tables(q);
  execute teguh._hot_path_sql(q);
  execute teguh._step_path_sql(q);
  perform teguh._lock_down_queue(q);
  perform teguh._rebuild_tasks_view();
  perform teguh._rebuild_spawn_dispatch();
end
$$;

-- The view teguh.tasks: every queue's tasks, with a queue_name column, for
-- read-only tools (the Django admin). A UNION ALL of one branch per queue, so
-- a filter on queue_name prunes the other branches and `order by task_id desc
-- limit n` merges the primary keys. Rebuilt under the install lock whenever
-- the set of queues changes (and on every install), since a view cannot list
-- tables that do not exist yet. Columns are named, not `t.*`: tables of older
-- queues got columns added in a different order. Upgrades that change a
-- column of t_ tables must drop the view first (the upgrade block does).
create or replace function teguh._rebuild_tasks_view() returns void
language plpgsql as $$
declare
  cols constant text := 'task_id, task_name, params, headers, retry_strategy, max_attempts, cancellation, '
    'idempotency_key, priority, state, attempts, enqueued_at, first_started_at, finished_at, available_at, '
    'wake_event, last_run_id, result, failure_reason, cancelled_at, notify_done, deadline_at, cancelled_run_id, '
    'snoozes';
  body text;
begin
  select string_agg(format('select %L::text as queue_name, %s from teguh.%I', q.queue_name, cols, 't_' || q.queue_name),
                    ' union all ' order by q.queue_name)
    into body
    from teguh.queues q
   where to_regclass(format('teguh.%I', 't_' || q.queue_name)) is not null;
  drop view if exists teguh.tasks;
  -- no queue: an empty view with the same columns (typed from a template row)
  execute 'create view teguh.tasks as ' || coalesce(body, format(
    'select null::text as queue_name, %s from (select null::uuid as task_id, null::text as task_name, '
    'null::jsonb as params, null::jsonb as headers, null::jsonb as retry_strategy, null::int as max_attempts, '
    'null::jsonb as cancellation, null::text as idempotency_key, null::int as priority, null::text as state, '
    'null::int as attempts, null::timestamptz as enqueued_at, null::timestamptz as first_started_at, '
    'null::timestamptz as finished_at, null::timestamptz as available_at, null::text as wake_event, '
    'null::uuid as last_run_id, null::jsonb as result, null::jsonb as failure_reason, '
    'null::timestamptz as cancelled_at, null::boolean as notify_done, null::timestamptz as deadline_at, '
    'null::uuid as cancelled_run_id, null::int as snoozes) x where false', cols));
  execute 'revoke all on teguh.tasks from public';
end
$$;

-- The static dispatch to each queue's _spawn_<q>. spawn_task called it with
-- dynamic SQL, parsed and planned on every call: about a quarter of a plain
-- spawn's server time. teguh._spawn_dispatch names every queue's function in
-- a tree of IF statements over the sorted queue names (a handful of
-- comparisons for thousands of queues), so each branch is a call PL/pgSQL
-- plans once per session. Rebuilt under the install lock whenever the set of
-- queues changes (and on every install), like the view above; a queue it
-- does not name takes the dynamic call, so a stale copy is only slower.

-- The IF tree over names[lo..hi]: `return <call>` for the queue q names, where
-- call is a format() string whose %I takes fn_prefix || the queue's name.
create or replace function teguh._dispatch_tree(names text[], lo int, hi int, fn_prefix text, call text)
returns text
language plpgsql immutable as $$
declare
  mid int;
  body text := '';
  i int;
begin
  if hi - lo < 4 then  -- a leaf: a few equality tests in a row
    for i in lo .. hi loop
      body := body || format('if q = %L then return %s; end if; ', names[i], format(call, fn_prefix || names[i]));
    end loop;
    return body;
  end if;
  mid := (lo + hi) / 2;
  return format('if q <= %L collate "C" then %s else %s end if; ',
                names[mid], teguh._dispatch_tree(names, lo, mid, fn_prefix, call),
                teguh._dispatch_tree(names, mid + 1, hi, fn_prefix, call));
end
$$;

create or replace function teguh._rebuild_spawn_dispatch() returns void
language plpgsql as $$
declare
  names text[];
begin
  select coalesce(array_agg(q.queue_name order by q.queue_name collate "C"), '{}') into names
    from teguh.queues q
   where to_regprocedure(format('teguh.%I(text, jsonb, jsonb, int, boolean)', '_spawn_' || q.queue_name)) is not null;
  execute format($fn$
    create or replace function teguh._spawn_dispatch(q text, p_task_name text, p_params jsonb, p_options jsonb,
                                                     p_default_max int, p_types boolean)
    returns uuid
    language plpgsql as $body$
    declare
      v_id uuid;
    begin
      %s
      execute format('select teguh.%%I($1, $2, $3, $4, $5)', '_spawn_' || q) into v_id
        using p_task_name, p_params, p_options, p_default_max, p_types;
      return v_id;
    end
    $body$
    $fn$,
    case when cardinality(names) = 0 then ''
         else teguh._dispatch_tree(names, 1, cardinality(names), '_spawn_',
                                   'teguh.%I(p_task_name, p_params, p_options, p_default_max, p_types)') end);
  execute 'revoke execute on function teguh._spawn_dispatch(text, text, jsonb, jsonb, int, boolean) from public';
end
$$;

-- drop_queue(q): drops queue q's generated functions, its tables (with every
-- task, checkpoint and event in them) and its teguh.queues row. An unknown
-- queue is a no-op.
-- Locks: the install lock (advisory 7420581234); ACCESS EXCLUSIVE on each of
--   the queue's tables as it drops them, so it waits for every transaction
--   that touched them; the queue's teguh.queues row (by the delete).
-- Notifies: nobody.
create or replace function teguh.drop_queue(q text) returns void
language plpgsql as $$
declare
  prefix text;
begin
  perform teguh._check_queue_name(q);
  perform pg_advisory_xact_lock(7420581234);
  -- first out of the view, which depends on its tables
  delete from teguh.queues where queue_name = q;
  delete from teguh.task_types where queue_name = q;
  delete from teguh.rate_limits where queue_name = q;
  delete from teguh.child_waits where parent_queue = q;
  delete from teguh.batches where queue_name = q;
  perform teguh._rebuild_tasks_view();
  perform teguh._rebuild_spawn_dispatch();  -- before its _spawn_<q> goes
  foreach prefix in array array['_claim_', '_done_', '_due_', '_spawn_', '_step_', '_steps_'] loop
    execute format('drop function if exists teguh.%I', prefix || q);
  end loop;
  foreach prefix in array array['a_', 'w_', 'e_', 'c_', 'r_', 'p_', 't_'] loop
    execute format('drop table if exists teguh.%I', prefix || q);
  end loop;
end
$$;

-- list_queues(): the registered queue names, sorted.
-- Locks: none. Notifies: nobody.
create or replace function teguh.list_queues() returns table(queue_name text)
language sql stable as $$ select q.queue_name from teguh.queues q order by q.queue_name $$;

-- ---------------------------------------------------------------------------
-- Internal transitions (callers hold the locks the comment names)
-- ---------------------------------------------------------------------------

-- Sends teguh_done '<q>:<task_id>'; callers check the task's notify_done first.
create or replace function teguh._notify_done(q text, p_task_id uuid) returns void
language sql as $$ select pg_notify('teguh_done', q || ':' || p_task_id::text) $$;

-- Ends a run's lease: deletes its r_ row (caller holds it, or takes it with
-- this delete). When the run held a concurrency slot (its r_ row has a
-- task_name, docs/flow-control.md) it notifies teguh_<q> 'wake', so idle
-- workers claim the task that waited for the slot.
create or replace function teguh._end_lease(q text, p_run_id uuid) returns void
language plpgsql as $$
declare
  slot text;
begin
  execute format('delete from teguh.%I where run_id = $1 returning task_name', 'r_' || q)
    into slot using p_run_id;
  if slot is not null then
    perform pg_notify('teguh_' || q, 'wake');
  end if;
end
$$;

-- _end_lease for the lease of a task (cancels), by task id.
create or replace function teguh._end_task_lease(q text, p_task_id uuid) returns void
language plpgsql as $$
declare
  slot text;
begin
  execute format('delete from teguh.%I where task_id = $1 returning task_name', 'r_' || q)
    into slot using p_task_id;
  if slot is not null then
    perform pg_notify('teguh_' || q, 'wake');
  end if;
end
$$;

-- Makes a task claimable now. Caller holds the t_ row lock (or is about to
-- take it with this very update).
create or replace function teguh._make_ready(
  q text, p_task_id uuid, p_attempt int, now_ts timestamptz,
  p_wake_event text default null, p_event_payload jsonb default null, p_failure jsonb default null
) returns void
language plpgsql as $$
begin
  execute format($q$
    with t as (
      update teguh.%1$I
         set state = 'pending', attempts = $2, available_at = null, wake_event = null,
             failure_reason = coalesce($6, failure_reason)
       where task_id = $1
      returning task_id, priority
    )
    insert into teguh.%2$I (task_id, attempt, priority, available_at, wake_event, event_payload)
    select task_id, $2, priority, $3, $4, $5 from t
    on conflict (task_id) do nothing$q$, 't_' || q, 'p_' || q)
    using p_task_id, p_attempt, now_ts, p_wake_event, p_event_payload, p_failure;
end
$$;

-- Ends a run's lease and puts its task to sleep until wake_at (or makes it
-- ready at once if that moment has passed). Caller holds r_ and t_ locks.
-- Notifies teguh_<q> 'wake' when it makes the task ready at once.
create or replace function teguh._suspend(
  q text, p_run_id uuid, p_task_id uuid, p_attempt int, p_wake_at timestamptz, now_ts timestamptz,
  p_wake_event text default null
) returns void
language plpgsql as $$
begin
  perform teguh._end_lease(q, p_run_id);
  if p_wake_at is not null and p_wake_at <= now_ts and p_wake_event is null then
    perform teguh._make_ready(q, p_task_id, p_attempt, now_ts);
    perform pg_notify('teguh_' || q, 'wake');
  else
    execute format('update teguh.%I set state = ''sleeping'', available_at = $2, wake_event = $3 '
                   'where task_id = $1', 't_' || q)
      using p_task_id, p_wake_at, p_wake_event;
  end if;
end
$$;

-- Cancels a non-terminal task. Caller holds its t_ row lock and the locks of
-- its p_, r_ and w_ rows, or takes them in order (cancel_task).
-- Returns true when it cancelled the task; notifies teguh_done when the task
-- was spawned with notify_done.
create or replace function teguh._cancel(q text, p_task_id uuid, now_ts timestamptz) returns boolean
language plpgsql as $$
declare
  nd boolean;
  par uuid;
  v_batch uuid;
begin
  execute format('delete from teguh.%I where task_id = $1', 'p_' || q) using p_task_id;
  perform teguh._end_task_lease(q, p_task_id);
  execute format('delete from teguh.%I where task_id = $1', 'w_' || q) using p_task_id;
  execute format($q$
    update teguh.%I
       set state = 'cancelled', cancelled_at = coalesce(cancelled_at, $2), finished_at = $2,
           available_at = null, wake_event = null, deadline_at = null, cancelled_run_id = last_run_id
     where task_id = $1 and state not in ('completed', 'failed', 'cancelled')
    returning notify_done, parent_task_id, batch_id$q$, 't_' || q)
    into nd, par, v_batch using p_task_id, now_ts;
  if nd is not null then perform teguh._cancel_cascade(q, array[p_task_id]); end if;  -- section: deadline cascade
  if nd then
    perform teguh._notify_done(q, p_task_id);
  end if;
  if par is not null then
    perform teguh._children_ended(q, array[p_task_id], now_ts);
  end if;
  if v_batch is not null then perform teguh._batch_item_ended(v_batch, 'cancelled'); end if;
  perform teguh._notify_watch(q);
  return nd is not null;
end
$$;

-- Marks a task failed for good with p_reason. Caller holds its t_ row lock
-- and has ended its run. Notifies teguh_done when the task was spawned with
-- notify_done.
create or replace function teguh._fail_for_good(q text, p_task_id uuid, p_reason jsonb, now_ts timestamptz)
returns void
language plpgsql as $$
declare
  nd boolean;
  par uuid;
  v_batch uuid;
begin
  execute format('update teguh.%I set state = ''failed'', failure_reason = $3, finished_at = $2, '
                 'available_at = null, wake_event = null, deadline_at = null where task_id = $1 '
                 'returning notify_done, parent_task_id, batch_id', 't_' || q)
    into nd, par, v_batch using p_task_id, now_ts, p_reason;
  if nd then
    perform teguh._notify_done(q, p_task_id);
  end if;
  if par is not null then
    perform teguh._children_ended(q, array[p_task_id], now_ts);
  end if;
  if v_batch is not null then perform teguh._batch_item_ended(v_batch, 'failed'); end if;
  perform teguh._on_failure_spawn(q, p_task_id, p_reason);
  perform teguh._notify_watch(q);
end
$$;

-- Fails a run: retry now, retry later, cancel (past max_duration) or fail for
-- good. Caller holds the run's r_ row lock and the task's t_ row lock.
-- Returns true when the task became claimable at once.
-- Notifies teguh_<q> 'retry' when it did; teguh_done when the task ended
-- (failed, or cancelled through _cancel) and was spawned with notify_done.
create or replace function teguh._fail(
  q text, p_run_id uuid, p_task_id uuid, p_attempt int, p_reason jsonb, p_retry_at timestamptz,
  now_ts timestamptz
) returns boolean
language plpgsql as $$
declare
  t record;
  next_at timestamptz;
begin
  execute format('select max_attempts, retry_strategy, cancellation, first_started_at, notify_done, batch_id '
                 'from teguh.%I where task_id = $1', 't_' || q)
    into t using p_task_id;
  perform teguh._record_attempt(q, p_run_id, p_task_id, p_attempt, p_reason, now_ts,
                                t.max_attempts is not null and p_attempt >= t.max_attempts);
  perform teguh._end_lease(q, p_run_id);
  perform teguh._notify_watch(q);

  if t.max_attempts is not null and p_attempt >= t.max_attempts then
    perform teguh._fail_for_good(q, p_task_id, p_reason, now_ts);
    return false;
  end if;

  next_at := coalesce(p_retry_at, now_ts + make_interval(secs => teguh._retry_delay(t.retry_strategy, p_attempt)));
  if t.cancellation ? 'max_duration' and t.first_started_at is not null
     and next_at >= t.first_started_at + make_interval(secs => (t.cancellation->>'max_duration')::float8) then
    execute format('update teguh.%I set failure_reason = $2 where task_id = $1', 't_' || q)
      using p_task_id, p_reason;
    perform teguh._cancel(q, p_task_id, now_ts);
    return false;
  end if;

  if t.batch_id is not null then perform teguh._batch_item_ended(t.batch_id, 'retrying'); end if;
  if next_at <= now_ts then
    perform teguh._make_ready(q, p_task_id, p_attempt + 1, now_ts, null, null, p_reason);
    perform pg_notify('teguh_' || q, 'retry');
    return true;
  end if;
  execute format('update teguh.%I set state = ''sleeping'', attempts = $2, available_at = $3, '
                 'wake_event = null, failure_reason = $4 where task_id = $1', 't_' || q)
    using p_task_id, p_attempt + 1, next_at, p_reason;
  return false;
end
$$;

-- ---------------------------------------------------------------------------
-- Sweeps: bounded, index-driven, never waiting on a lock
-- ---------------------------------------------------------------------------

-- Fails up to lim runs whose lease expired (index r_<q>_ei).
-- Locks: r_ rows, then each one's t_ row, skip locked.
create or replace function teguh._recover_expired(
  q text, lim int, now_ts timestamptz, out processed int, out made_ready int
)
language plpgsql as $$
declare
  rec record;
  locked int;
begin
  processed := 0;
  made_ready := 0;
  for rec in execute format(
      'select run_id, task_id, attempt, claimed_by, claim_expires_at from teguh.%I '
      'where claim_expires_at <= $1 order by claim_expires_at limit $2 for update skip locked', 'r_' || q)
    using now_ts, lim
  loop
    execute format('select 1 from teguh.%I where task_id = $1 for update skip locked', 't_' || q)
      using rec.task_id;
    get diagnostics locked = row_count;
    continue when locked = 0;
    processed := processed + 1;
    if teguh._fail(q, rec.run_id, rec.task_id, rec.attempt,
                   jsonb_build_object(
                     'type', '$ClaimTimeout', 'name', '$ClaimTimeout',
                     'message', format('lease of run %s held by %s expired at %s',
                                       rec.run_id, rec.claimed_by, rec.claim_expires_at),
                     'worker_id', rec.claimed_by, 'run_id', rec.run_id,
                     'attempt', rec.attempt, 'claim_expired_at', rec.claim_expires_at),
                   null, now_ts) then
      made_ready := made_ready + 1;
    end if;
  end loop;
end
$$;

-- Makes up to lim due sleepers, delayed tasks and timed-out waits claimable
-- (index t_<q>_av). Returns how many it made ready.
-- Locks: t_ rows, then a waiting task's w_ row, skip locked.
create or replace function teguh._wake_due(q text, lim int, now_ts timestamptz) returns int
language plpgsql as $$
declare
  rec record;
  w record;
  n int := 0;
  busy boolean;
begin
  for rec in execute format(
      'select task_id, attempts, wake_event from teguh.%I '
      'where available_at <= $1 and state in (''pending'', ''sleeping'') '
      'order by available_at limit $2 for update skip locked', 't_' || q)
    using now_ts, lim
  loop
    if rec.wake_event is not null then
      w := null;
      execute format('select run_id, step_name from teguh.%I where task_id = $1 for update skip locked',
                     'w_' || q)
        into w using rec.task_id;
      if w.step_name is null then
        execute format('select exists (select 1 from teguh.%I where task_id = $1)', 'w_' || q)
          into busy using rec.task_id;
        continue when busy;
      else
        -- the wait timed out: the resumed await reads this and raises its timeout
        execute format($q$
          insert into teguh.%I (task_id, checkpoint_name, state, status, kind, owner_run_id, updated_at)
          values ($1, $2, null, 'timed_out', 'event', $3, $4)
          on conflict (task_id, checkpoint_name) do nothing$q$, 'c_' || q)
          using rec.task_id, w.step_name, w.run_id, now_ts;
        execute format('delete from teguh.%I where task_id = $1', 'w_' || q) using rec.task_id;
      end if;
    end if;
    perform teguh._make_ready(q, rec.task_id, rec.attempts, now_ts, rec.wake_event, null);
    n := n + 1;
  end loop;
  return n;
end
$$;

-- Tries to lock a task's p_, r_ and w_ rows without waiting.
-- Returns false when one of them exists but another transaction holds it.
create or replace function teguh._try_lock_children(q text, p_task_id uuid) returns boolean
language plpgsql as $$
declare
  prefix text;
  locked int;
  present boolean;
begin
  foreach prefix in array array['p_', 'r_', 'w_'] loop
    execute format('select 1 from teguh.%I where task_id = $1 for update skip locked', prefix || q)
      using p_task_id;
    get diagnostics locked = row_count;
    if locked = 0 then
      execute format('select exists (select 1 from teguh.%I where task_id = $1)', prefix || q)
        into present using p_task_id;
      if present then
        return false;
      end if;
    end if;
  end loop;
  return true;
end
$$;

-- Cancels up to lim tasks past their max_delay or max_duration deadline
-- (index t_<q>_dl).
-- Locks: t_ rows, then each one's p_, r_ and w_ rows, skip locked.
create or replace function teguh._enforce_deadlines(q text, lim int, now_ts timestamptz) returns int
language plpgsql as $$
declare
  rec record;
  n int := 0;
begin
  for rec in execute format(
      'select task_id from teguh.%I '
      'where deadline_at <= $1 and state in (''pending'', ''running'', ''sleeping'') '
      'order by deadline_at limit $2 for update skip locked', 't_' || q)
    using now_ts, lim
  loop
    continue when not teguh._try_lock_children(q, rec.task_id);
    if teguh._cancel(q, rec.task_id, now_ts) then
      n := n + 1;
    end if;
  end loop;
  return n;
end
$$;

-- ---------------------------------------------------------------------------
-- Spawning
-- ---------------------------------------------------------------------------

-- The batch spawn behind spawn_tasks and retry_task (spawn_new): checks
-- the items, inserts their t_ rows and ready tasks' p_ rows in one statement,
-- and returns one row per item in input order. Notifies teguh_<q> 'spawn'
-- once, when any item is ready now. default_max is the max_attempts of an
-- item without one (0 or null: unlimited); with types, the items' task
-- types supply the options they do not give (see _spawn_<q>). batch_id
-- (spawn_batch) puts every item in that batch.
create or replace function teguh._spawn(q text, items jsonb, p_default_max int default null,
                                        p_types boolean default false, p_batch_id uuid default null)
returns table(task_id uuid, run_id uuid, attempt int, created boolean)
language plpgsql as $$
declare
  now_ts timestamptz := teguh.current_time();
  item jsonb;
  pos bigint;
  new_pos bigint[];
  new_ids uuid[];
  any_ready boolean;
  keyed boolean;
begin
  if items is null or jsonb_typeof(items) <> 'array' then
    raise exception 'spawn items must be a JSON array' using errcode = 'TG004';
  end if;
  -- Items holding nothing but a valid task_name and params pass this one
  -- query; only the others get the full per-item check.
  for item, pos in
    select x.item, x.pos
      from jsonb_array_elements(items) with ordinality as x(item, pos)
     where case when jsonb_typeof(x.item) <> 'object' then true
                when jsonb_typeof(x.item->'task_name') is distinct from 'string' then true
                when x.item->>'task_name' ~ '^\s*$' or octet_length(x.item->>'task_name') > 1024 then true
                else exists (select 1 from jsonb_object_keys(x.item) k where k not in ('task_name', 'params'))
           end
  loop
    perform teguh._check_spawn_item(item, pos);
  end loop;
  if p_types then
    -- defaults were checked when registered; the items are objects by now
    select jsonb_agg(teguh._with_defaults(x.item, tt.defaults) order by x.pos) into items
      from jsonb_array_elements(items) with ordinality as x(item, pos)
      left join teguh.task_types tt on tt.queue_name = q and tt.task_name = x.item->>'task_name';
    items := coalesce(items, '[]'::jsonb);
  end if;
  keyed := jsonb_path_exists(items, '$[*].idempotency_key ? (@ != null)');

  execute format($q$
    with input as materialized (
      select x.pos, teguh.portable_uuidv7() as task_id, x.item,
             case when (x.item->>'available_at')::timestamptz > $2
                  then (x.item->>'available_at')::timestamptz end as later
        from jsonb_array_elements($1) with ordinality as x(item, pos)
    ), ins as (
      insert into teguh.%1$I as t
        (task_id, task_name, params, headers, retry_strategy, max_attempts, cancellation,
         idempotency_key, priority, state, attempts, enqueued_at, available_at, notify_done, deadline_at,
         concurrency_key, rate_limit_key, batch_id)
      select i.task_id, i.item->>'task_name', coalesce(i.item->'params', 'null'::jsonb),
             nullif(i.item->'headers', 'null'::jsonb), nullif(i.item->'retry_strategy', 'null'::jsonb),
             case when jsonb_typeof(i.item->'max_attempts') = 'number'
                  then nullif((i.item->>'max_attempts')::int, 0) else $3 end,
             nullif(i.item->'cancellation', 'null'::jsonb),
             i.item->>'idempotency_key', coalesce((i.item->>'priority')::int, 0), 'pending', 1, $2,
             i.later, coalesce((i.item->>'notify_done')::boolean, false),
             $2 + make_interval(secs => (i.item->'cancellation'->>'max_delay')::float8),
             i.item->>'concurrency_key', i.item->>'rate_limit_key', $4
        from input i
       order by i.pos
      %3$s
      returning t.task_id, t.priority, t.available_at
    ), ready as (
      insert into teguh.%2$I (task_id, attempt, priority, available_at)
      select ins.task_id, 1, ins.priority, $2 from ins where ins.available_at is null
      returning 1
    )
    select array_agg(i.pos order by i.pos), array_agg(i.task_id order by i.pos),
           exists (select 1 from ready)
      from input i join ins on ins.task_id = i.task_id$q$, 't_' || q, 'p_' || q,
      -- a speculative insertion per row costs; only keyed items can conflict
      case when keyed then 'on conflict (idempotency_key) where idempotency_key is not null do nothing'
           else '' end)
    into new_pos, new_ids, any_ready using items, now_ts, nullif(p_default_max, 0), p_batch_id;

  if any_ready then
    perform pg_notify('teguh_' || q, 'spawn');
  end if;

  -- A fresh statement sees tasks that won the idempotency key, including
  -- ones a concurrent spawner committed while we waited on its insert.
  if coalesce(cardinality(new_pos), 0) = jsonb_array_length(items) then
    return query select x.task_id, null::uuid, 1, true from unnest(new_ids) as x(task_id);
    return;
  end if;
  -- Scalar subqueries, evaluated only for items that lost their idempotency
  -- key, probe the key's unique index; a join here could scan all of t_.
  return query execute format($q$
    select coalesce(n.task_id,
                    (select t.task_id from teguh.%1$I t where t.idempotency_key = x.item->>'idempotency_key')),
           null::uuid,
           case when n.task_id is not null then 1
                else (select t.attempts from teguh.%1$I t where t.idempotency_key = x.item->>'idempotency_key') end,
           n.task_id is not null
      from jsonb_array_elements($1) with ordinality as x(item, pos)
      left join unnest($2::bigint[], $3::uuid[]) as n(pos, task_id) on n.pos = x.pos
     order by x.pos$q$, 't_' || q)
    using items, coalesce(new_pos, '{}'), coalesce(new_ids, '{}');
end
$$;

-- Sets queue q's has_limits (a first spawn with a concurrency_key, or a task
-- type registered with a limit): from then on its claims take the limited
-- path. Locks: the queue's teguh.queues row (waits, by the update).
create or replace function teguh._set_has_limits(q text) returns void
language sql as $$
  update teguh.queues set has_limits = true where queue_name = q and not has_limits
$$;

-- spawn_task(q, task_name, params, options): spawns one task (the work is in
-- the queue's _spawn_<q>). options holds spawn options (docs/sql-interface.md),
-- never task_name or params. Returns (task_id, null, 1, true); when the
-- idempotency key names a task already, that task's (task_id, null,
-- attempts, false). Raises TG002, TG004, TG005. Options the spawn does not
-- give come from the task's registered type (teguh.task_types), and a task
-- with no max_attempts from either gets the queue's default_max_attempts
-- (25 unless set_queue_options changed it); max_attempts 0 is unlimited.
-- concurrency_key and rate_limit_key are stored on the task for the claim's
-- limits (docs/flow-control.md).
-- Locks: none on existing rows, except the first spawn with a
--   concurrency_key in a queue without limits, which sets the queue's
--   has_limits (its teguh.queues row, waits); inserts the t_ row and, when
--   the task is ready now, its p_ row. An idempotency key held by an
--   uncommitted spawn makes the insert wait for that transaction.
-- Notifies: teguh_<q> 'spawn' when the task is ready now (not for a delayed
--   task nor for an existing key).
create or replace function teguh.spawn_task(q text, task_name text, params jsonb, options jsonb default '{}')
returns table(task_id uuid, run_id uuid, attempt int, created boolean)
language plpgsql as $$
declare
  qrow record;
  v_id uuid;
begin
  -- the queue check and the queue's spawn settings in one read
  select qq.default_max_attempts, qq.has_task_types, qq.has_limits into qrow
    from teguh.queues qq where qq.queue_name = q;
  -- One test passes the common spawn (a known queue, no options, params too
  -- small to reach any size limit); anything else is checked step by step.
  -- Every expression costs its setup once per transaction, and most spawns
  -- are a transaction of their own.
  if qrow.has_limits is null or options is distinct from '{}'::jsonb or pg_column_size(params) > 65536 then
    if not found then
      perform teguh._check_queue(q);
    end if;
    if not qrow.has_limits and jsonb_typeof(options->'concurrency_key') = 'string' then
      perform teguh._set_has_limits(q);
    end if;
    perform teguh._check_payload('params', params);
    perform teguh._check_payload('headers', options->'headers');
    options := coalesce(options, '{}'::jsonb);
    if jsonb_typeof(options) <> 'object' then
      raise exception 'spawn options must be a JSON object' using errcode = 'TG004';
    end if;
    if options ? 'task_name' or options ? 'params' then
      raise exception 'spawn options must not hold task_name or params' using errcode = 'TG004';
    end if;
  end if;
  -- the queue's own _spawn_<q>, through a call planned once per session
  v_id := teguh._spawn_dispatch(q, task_name, params, options, qrow.default_max_attempts, qrow.has_task_types);
  if v_id is not null then
    task_id := v_id; attempt := 1; created := true;  -- the row without a query
    return next;
    return;
  end if;
  -- the key is taken: its task (a fresh statement sees a concurrent winner)
  return query execute format('select t.task_id, null::uuid, t.attempts, false from teguh.%I t '
                              'where t.idempotency_key = $1', 't_' || q)
    using options->>'idempotency_key';
end
$$;

-- spawn_plain(q, task_name, params): spawn_task without options, the common
-- spawn, for callers that need only the new task's id (Client.spawn_task
-- with no option). The same task, checks, errors and notification as
-- spawn_task(q, task_name, params); a scalar result, since spawn_task's
-- table costs each call a function scan and a result set, about a tenth of
-- a plain spawn's server time. Always creates a task (no idempotency key).
-- Locks: as spawn_task. Notifies: teguh_<q> 'spawn'.
create or replace function teguh.spawn_plain(q text, task_name text, params jsonb)
returns uuid
language plpgsql as $$
declare
  qrow record;
begin
  select qq.default_max_attempts, qq.has_task_types into qrow
    from teguh.queues qq where qq.queue_name = q;
  if not found or pg_column_size(params) > 65536 then  -- spawn_task checks and names what is wrong
    return (select s.task_id from teguh.spawn_task(q, task_name, params) s);
  end if;
  return teguh._spawn_dispatch(q, task_name, params, '{}', qrow.default_max_attempts, qrow.has_task_types);
end
$$;

-- spawn_tasks(q, items): spawns many tasks in one statement (teguh._spawn).
-- items is a JSON array of flat objects: task_name, params and any spawn
-- option. Returns one row per item, in input order, as spawn_task does;
-- task type defaults and the queue's default_max_attempts apply per item.
-- Locks: as spawn_task, for every item.
-- Notifies: teguh_<q> 'spawn' once, when any item is ready now.
create or replace function teguh.spawn_tasks(q text, items jsonb)
returns table(task_id uuid, run_id uuid, attempt int, created boolean)
language plpgsql as $$
declare
  qrow record;
  v_ids uuid[];
begin
  select qq.default_max_attempts, qq.has_task_types, qq.has_limits into qrow
    from teguh.queues qq where qq.queue_name = q;
  if not found then
    perform teguh._check_queue(q);
  end if;
  if not qrow.has_limits and jsonb_typeof(items) = 'array'
     and jsonb_path_exists(items, '$[*].concurrency_key ? (@.type() == "string")') then
    perform teguh._set_has_limits(q);
  end if;
  if pg_column_size(items) > 65536 then  -- each item's params and headers (docs/limits.md)
    perform teguh._check_payload(format('items[%s].params', x.pos - 1), x.item->'params'),
            teguh._check_payload(format('items[%s].headers', x.pos - 1), x.item->'headers')
       from jsonb_array_elements(case when jsonb_typeof(items) = 'array' then items else '[]' end)
            with ordinality as x(item, pos)
      where jsonb_typeof(x.item) = 'object';
  end if;
  -- Plain items (a valid task_name and params, nothing else) in a queue
  -- without task types, the common batch: one statement reads each item
  -- once, checks it in the same pass, and inserts only when every item
  -- passed (ids drawn for a batch that fell through are skipped numbers).
  -- Anything else takes teguh._spawn, which checks item by item.
  if not qrow.has_task_types and jsonb_typeof(items) = 'array' then
    execute format($q$
      with input as materialized (
        select x.pos,
               teguh._uuidv7_from(substring((select teguh._random_triples(jsonb_array_length($1)))
                                            from (3 * x.pos - 2)::int for 3)) as task_id,
               x.item->>'task_name' as task_name,
               coalesce(x.item->'params', 'null'::jsonb) as params,
               case when jsonb_typeof(x.item) <> 'object' then false  -- '-' would raise on a scalar
                    else jsonb_typeof(x.item->'task_name') = 'string'
                         and x.item->>'task_name' !~ '^\s*$' and octet_length(x.item->>'task_name') <= 1024
                         and (x.item - 'task_name' - 'params') = '{}'::jsonb end as plain
          from jsonb_array_elements($1) with ordinality as x(item, pos)
      ), ok as (
        select coalesce(bool_and(i.plain), false) as plain from input i
      ), ins as (
        insert into teguh.%1$I (task_id, task_name, params, max_attempts, state, attempts, enqueued_at)
        select i.task_id, i.task_name, i.params, $2, 'pending', 1, $3 from input i, ok where ok.plain
      ), ready as (
        insert into teguh.%2$I (task_id, attempt, priority, available_at)
        select i.task_id, 1, 0, $3 from input i, ok where ok.plain
      )
      select case when ok.plain then (select array_agg(i.task_id order by i.pos) from input i) end
        from ok$q$, 't_' || q, 'p_' || q)
      into v_ids using items, nullif(qrow.default_max_attempts, 0), teguh.current_time();
    if v_ids is not null then
      perform pg_notify('teguh_' || q, 'spawn');
      return query select x.task_id, null::uuid, 1, true from unnest(v_ids) as x(task_id);
      return;
    end if;
  end if;
  return query select * from teguh._spawn(q, items, qrow.default_max_attempts, qrow.has_task_types);
end
$$;

-- ---------------------------------------------------------------------------
-- Claiming
-- ---------------------------------------------------------------------------

-- The worker's claim: claim_task plus each task's committed step checkpoints
-- (name -> state), so a replayed step costs no round trip. The work happens
-- in the queue's own _claim_<q> (see "Per-queue hot path" above).
-- Claims up to qty (1 to 10000) ready tasks for worker_id, each with a lease
-- of claim_timeout seconds (0: the lease never expires), and first runs the
-- sweeps that are due, each limited to qty rows. Sets synchronous_commit off
-- for the caller's transaction: a lost claim only makes its tasks claimable
-- again.
-- On a queue with flow-control limits (docs/flow-control.md) it hands out
-- no task over its type's concurrency, its concurrency key's
-- key_concurrency (default 1) or its rate limit; those stay pending in order.
-- Locks: never waits for a row; see _claim_<q> (sweeps, then p_ and t_ rows,
--   skip locked; with limits, first the queue's limits lock, which it waits
--   for, and teguh.rate_limits rows).
-- Notifies: teguh_<q> 'wake' when the sweeps readied more than it claimed,
--   plus what the sweeps send (teguh_<q> 'retry', teguh_done).
create or replace function teguh.claim_runs(q text, worker_id text, claim_timeout int default 30, qty int default 1)
returns table(run_id uuid, task_id uuid, attempt int, task_name text, params jsonb, retry_strategy jsonb,
              max_attempts int, headers jsonb, wake_event text, event_payload jsonb, checkpoints jsonb,
              queue_wait double precision, lease_expired jsonb)
language plpgsql as $$
declare
  qrow record;
begin
  -- the queue check, its pause state and its limits flag in one read
  select qq.paused, qq.paused_task_types, qq.has_limits into qrow from teguh.queues qq where qq.queue_name = q;
  if not found then
    perform teguh._check_queue(q);
  end if;
  perform teguh._check_name('worker id', worker_id);
  if claim_timeout is null or claim_timeout < 0 then
    raise exception 'claim_timeout must be >= 0 seconds (0: the lease never expires)' using errcode = 'TG004';
  end if;
  if qty is null or qty < 1 or qty > 10000 then
    raise exception 'qty must be between 1 and 10000, not %', qty using errcode = 'TG004';
  end if;
  return query execute format('select * from teguh.%I($1, $2, $3, $4, $5, $6)', '_claim_' || q)
    using worker_id, claim_timeout, qty, qrow.paused, qrow.paused_task_types, qrow.has_limits;
end
$$;

-- claim_task(q, worker_id, claim_timeout, qty): claim_runs without the
-- checkpoints column. Locks and notifications: as claim_runs.
create or replace function teguh.claim_task(q text, worker_id text, claim_timeout int default 30, qty int default 1)
returns table(run_id uuid, task_id uuid, attempt int, task_name text, params jsonb, retry_strategy jsonb,
              max_attempts int, headers jsonb, wake_event text, event_payload jsonb)
language sql as $$
  select c.run_id, c.task_id, c.attempt, c.task_name, c.params, c.retry_strategy, c.max_attempts, c.headers,
         c.wake_event, c.event_payload
    from teguh.claim_runs(q, worker_id, claim_timeout, qty) c
$$;

-- ---------------------------------------------------------------------------
-- Ending and suspending runs
-- ---------------------------------------------------------------------------

-- Locks a run's lease row; raises AB001/AB002 when the run holds no lease.
create or replace function teguh._lock_run(q text, p_run_id uuid, out task_id uuid, out attempt int)
language plpgsql as $$
begin
  execute format('select task_id, attempt from teguh.%I where run_id = $1 for update', 'r_' || q)
    into task_id, attempt using p_run_id;
  if task_id is null then
    perform teguh._raise_lease_error(q, p_run_id);
  end if;
end
$$;

-- Locks a task's t_ row, waiting for it.
create or replace function teguh._lock_task(q text, p_task_id uuid) returns void
language plpgsql as $$
begin
  execute format('select 1 from teguh.%I where task_id = $1 for update', 't_' || q) using p_task_id;
end
$$;

-- complete_run(q, run_id, result): marks the run's task completed with
-- result and ends its lease. Raises AB001 (task cancelled) or AB002 (lease
-- lost) when the run holds no lease.
-- Locks: the run's r_ row (waits), then its t_ row (waits, by the update);
--   deletes the r_ row.
-- Notifies: teguh_done when the task was spawned with notify_done.
create or replace function teguh.complete_run(q text, run_id uuid, result jsonb default null) returns void
language plpgsql as $$
declare
  run record;
  nd boolean;
  v_batch uuid;
begin
  perform teguh._check_queue(q);
  select * into run from teguh._lock_run(q, run_id);
  execute format($q$
    update teguh.%I
       set state = 'completed', result = $2, finished_at = $3, available_at = null, wake_event = null,
           deadline_at = null
     where task_id = $1
    returning notify_done, batch_id$q$, 't_' || q)
    into nd, v_batch using run.task_id, result, teguh.current_time();
  perform teguh._end_lease(q, run_id);
  if nd then
    perform teguh._notify_done(q, run.task_id);
  end if;
  if v_batch is not null then perform teguh._batch_item_ended(v_batch, 'completed'); end if;
  perform teguh._notify_watch(q);
end
$$;

-- Completes many runs in one statement (the worker's completion flush) and
-- tells, per run, whether it still held its task: ok, cancelled or lost.
-- run_ids and results pair up by position (TG004 unless of equal length);
-- the work is in the queue's _done_<q>.
-- Locks: the runs' r_ rows (waits), then their t_ rows (waits).
-- Notifies: teguh_done for each completed task spawned with notify_done.
create or replace function teguh.complete_runs(q text, run_ids uuid[], results jsonb[])
returns table(run_id uuid, outcome text)
language plpgsql as $$
begin
  -- the full check (its name rules) only when the queue is not registered
  if not exists (select 1 from teguh.queues qq where qq.queue_name = q) then
    perform teguh._check_queue(q);
  end if;
  if run_ids is null or results is null or cardinality(run_ids) <> cardinality(results) then
    raise exception 'complete_runs takes as many results as run ids' using errcode = 'TG004';
  end if;
  return query execute format('select * from teguh.%I($1, $2)', '_done_' || q) using run_ids, results;
end
$$;

-- fail_run(q, run_id, reason, retry_at): ends the run with reason (JSON,
-- stored on the task) and, by teguh._fail, retries the task at retry_at
-- (default: by its retry strategy), fails it for good once max_attempts is
-- reached, or cancels it when the retry would pass its max_duration. Raises
-- AB001/AB002 when the run holds no lease.
-- Locks: the run's r_ row (waits), then its t_ row (waits); deletes the r_
--   row and, on a retry now, inserts the p_ row.
-- Notifies: teguh_<q> 'retry' on a retry now; teguh_done when the task ended
--   (failed or cancelled) and was spawned with notify_done.
create or replace function teguh.fail_run(q text, run_id uuid, reason jsonb, retry_at timestamptz default null)
returns void
language plpgsql as $$
declare
  run record;
begin
  perform teguh._check_queue(q);
  select * into run from teguh._lock_run(q, run_id);
  perform teguh._lock_task(q, run.task_id);
  perform teguh._fail(q, run_id, run.task_id, run.attempt, reason, retry_at, teguh.current_time());
end
$$;

-- A non-retryable failure's stored reason: an object gets "non_retryable": true.
create or replace function teguh._non_retryable(reason jsonb) returns jsonb
language sql immutable as $$
  select case when jsonb_typeof(reason) = 'object' then reason || '{"non_retryable": true}'::jsonb else reason end
$$;

-- fail_run_non_retryable(q, run_id, reason): ends the run and fails its task
-- for good now, whatever attempts are left (a handler's teguh.NonRetryable).
-- An object reason is stored with "non_retryable": true added. Raises
-- AB001/AB002 when the run holds no lease.
-- Locks: the run's r_ row (waits), then its t_ row (waits); deletes the r_ row.
-- Notifies: teguh_done when the task was spawned with notify_done.
create or replace function teguh.fail_run_non_retryable(q text, run_id uuid, reason jsonb) returns void
language plpgsql as $$
declare
  run record;
begin
  perform teguh._check_queue(q);
  select * into run from teguh._lock_run(q, run_id);
  perform teguh._lock_task(q, run.task_id);
  perform teguh._record_attempt(q, run_id, run.task_id, run.attempt, teguh._non_retryable(reason),
                                teguh.current_time(), true);
  perform teguh._end_lease(q, run_id);
  perform teguh._fail_for_good(
    q, run.task_id,
    teguh._non_retryable(reason), teguh.current_time());
end
$$;

-- snooze_run(q, run_id, wake_at): ends the run and puts its task back to
-- wait until wake_at without using an attempt (its next run has the same
-- attempt number), and counts a snooze on the task (t_<q>.snoozes). Claimable
-- at once when wake_at has passed. TG004 for a null wake_at; AB001/AB002
-- without a lease.
-- Locks: the run's r_ row (waits), then its t_ row (waits); deletes the r_ row.
-- Notifies: teguh_<q> 'wake' when wake_at has already passed.
create or replace function teguh.snooze_run(q text, run_id uuid, wake_at timestamptz) returns void
language plpgsql as $$
declare
  run record;
begin
  perform teguh._check_queue(q);
  if wake_at is null then
    raise exception 'wake_at must not be null' using errcode = 'TG004';
  end if;
  select * into run from teguh._lock_run(q, run_id);
  perform teguh._lock_task(q, run.task_id);
  execute format('update teguh.%I set snoozes = snoozes + 1 where task_id = $1', 't_' || q)
    using run.task_id;
  perform teguh._suspend(q, run_id, run.task_id, run.attempt, wake_at, teguh.current_time());
end
$$;

-- schedule_run(q, run_id, wake_at): ends the run and puts its task to sleep
-- until wake_at, when it becomes claimable again with the same attempt
-- number (at once if wake_at has passed). AB001/AB002 without a lease.
-- Locks: the run's r_ row (waits), then its t_ row (waits); deletes the r_ row.
-- Notifies: teguh_<q> 'wake' when wake_at has already passed.
create or replace function teguh.schedule_run(q text, run_id uuid, wake_at timestamptz) returns void
language plpgsql as $$
declare
  run record;
begin
  perform teguh._check_queue(q);
  if wake_at is null then
    raise exception 'wake_at must not be null' using errcode = 'TG004';
  end if;
  select * into run from teguh._lock_run(q, run_id);
  perform teguh._lock_task(q, run.task_id);
  perform teguh._suspend(q, run_id, run.task_id, run.attempt, wake_at, teguh.current_time());
end
$$;

-- sleep_run(q, run_id, step_name, duration, wake_at): a durable sleep step;
-- exactly one of duration (seconds) and wake_at. The first call records the
-- wake time as step_name's 'sleep' checkpoint, a replay reads it back. Returns
-- (should_suspend, resume_at): false when the wake time has passed (the run
-- goes on and keeps its lease), true when the run has ended and its task
-- sleeps until resume_at. TG004 when step_name is a step that is not a
-- sleep; AB001/AB002 without a lease.
-- Locks: the run's r_ row (waits), then, unless the wake time has passed
--   already, its t_ row (waits); inserts the c_ row on the first call and
--   deletes the r_ row when it suspends.
-- Notifies: nobody.
create or replace function teguh.sleep_run(
  q text, run_id uuid, step_name text, duration double precision default null, wake_at timestamptz default null
) returns table(should_suspend boolean, resume_at timestamptz)
language plpgsql as $$
#variable_conflict use_variable
declare
  now_ts timestamptz := teguh.current_time();
  run record;
  cp record;
  wake timestamptz;
begin
  perform teguh._check_queue(q);
  perform teguh._check_name('step name', step_name);
  if (duration is null) = (wake_at is null) then
    raise exception 'sleep_run takes exactly one of duration and wake_at' using errcode = 'TG004';
  end if;
  if duration is not null and (duration = 'NaN'::float8 or duration not between -3153600000 and 3153600000) then
    raise exception 'sleep duration must be a finite number of seconds, not %', duration using errcode = 'TG004';
  end if;
  select * into run from teguh._lock_run(q, run_id);

  execute format('select state, kind from teguh.%I where task_id = $1 and checkpoint_name = $2', 'c_' || q)
    into cp using run.task_id, step_name;
  if cp.kind is not null then
    if cp.kind <> 'sleep' then
      raise exception 'step name "%" is already used by a step that is not a sleep', step_name
        using errcode = 'TG004';
    end if;
    wake := (cp.state->>'$teguh_sleep_until')::timestamptz;
    if wake <= now_ts then
      return query select false, wake;
      return;
    end if;
    perform teguh._lock_task(q, run.task_id);
  else
    wake := coalesce(wake_at, now_ts + make_interval(secs => duration));
    perform teguh._lock_task(q, run.task_id);
    execute format($q$
      insert into teguh.%I (task_id, checkpoint_name, state, status, kind, owner_run_id, updated_at)
      values ($1, $2, jsonb_build_object('$teguh_sleep_until', $3), 'committed', 'sleep', $4, $5)$q$, 'c_' || q)
      using run.task_id, step_name, wake, run_id, now_ts;
    if wake <= now_ts then
      return query select false, wake;
      return;
    end if;
  end if;
  perform teguh._suspend(q, run_id, run.task_id, run.attempt, wake, now_ts);
  return query select true, wake;
end
$$;

-- ---------------------------------------------------------------------------
-- Checkpoints
-- ---------------------------------------------------------------------------

-- set_task_checkpoint_state(q, task_id, step_name, state, owner_run_id,
-- extend_claim_by): records a step's state; the first committed write wins
-- and later ones change nothing. owner_run_id must hold the task's lease
-- (else AB001/AB002); extend_claim_by > 0 also extends that lease, as a
-- heartbeat, to extend_claim_by seconds from now, unless it already runs at
-- least nine tenths of that: steps taken in quick succession (or just after a
-- claim or a heartbeat) then leave the r_ row as it is. Rewriting it changes
-- the indexed claim_expires_at, a non-HOT update: one dead tuple per step
-- where the step itself (the c_ insert) leaves none. The work is in the
-- queue's own _step_<q> (section "Per-queue step path"), whose statements
-- keep their plans for the session.
-- Locks: the run's r_ row only (waits; FOR UPDATE, then the lease update when
--   extending), no t_ row lock (the exception the header names); inserts the
--   c_ row.
-- Notifies: nobody.
create or replace function teguh.set_task_checkpoint_state(
  q text, task_id uuid, step_name text, state jsonb, owner_run_id uuid, extend_claim_by int default null
) returns void
language plpgsql as $$
#variable_conflict use_variable
begin
  -- a registered queue has a valid name: the full check only when it is not one
  if not exists (select 1 from teguh.queues qq where qq.queue_name = q) then
    perform teguh._check_queue(q);
  end if;
  perform teguh._check_name('step name', step_name);
  if extend_claim_by is not null and extend_claim_by < 0 then
    raise exception 'extend_claim_by must be >= 0 seconds' using errcode = 'TG004';
  end if;
  execute format('select teguh.%I($1, $2, $3, $4, $5)', '_step_' || q)
    using task_id, step_name, state, owner_run_id, extend_claim_by;
end
$$;

-- set_task_checkpoint_states(q, task_ids, step_names, states, owner_run_ids,
-- extend_claim_by): set_task_checkpoint_state for many steps in one statement
-- and one commit (the client's group commit of concurrent steps, see
-- teguh/_checkpoint_batch.py). The arrays pair up by position (TG004 unless of
-- equal length). Returns one row per item: i, its 1-based position, and ok:
-- written (or already there) under its run's lease. An item is not ok, and
-- nothing is written for it, when its run holds no lease or when another
-- transaction holds its lease row (it does not wait); the caller then calls
-- set_task_checkpoint_state for it, which waits and raises AB001/AB002.
-- The work is in the queue's own _steps_<q> (section "Per-queue step path").
-- Locks: the items' r_ rows (skip locked; the lease update for those
--   extended); inserts their c_ rows.
-- Notifies: nobody.
create or replace function teguh.set_task_checkpoint_states(
  q text, task_ids uuid[], step_names text[], states jsonb[], owner_run_ids uuid[], extend_claim_by int default null
) returns table(i int, ok boolean)
language plpgsql as $$
#variable_conflict use_variable
declare
  bad text;
begin
  if not exists (select 1 from teguh.queues qq where qq.queue_name = q) then
    perform teguh._check_queue(q);
  end if;
  if task_ids is null or step_names is null or states is null or owner_run_ids is null
     or cardinality(task_ids) <> cardinality(step_names) or cardinality(task_ids) <> cardinality(states)
     or cardinality(task_ids) <> cardinality(owner_run_ids) then
    raise exception 'set_task_checkpoint_states takes arrays of equal length' using errcode = 'TG004';
  end if;
  for bad in select n from unnest(step_names) as n
              where n is null or n ~ '^[ \t\n\r\f\v]*$' or octet_length(n) > 1024 loop
    perform teguh._check_name('step name', bad);
  end loop;
  if extend_claim_by is not null and extend_claim_by < 0 then
    raise exception 'extend_claim_by must be >= 0 seconds' using errcode = 'TG004';
  end if;
  return query execute format('select * from teguh.%I($1, $2, $3, $4, $5)', '_steps_' || q)
    using task_ids, step_names, states, owner_run_ids, extend_claim_by;
end
$$;

-- get_task_checkpoint_state(q, task_id, step_name): the step's checkpoint, or
-- no row. Checks no lease.
-- Locks: none. Notifies: nobody.
create or replace function teguh.get_task_checkpoint_state(q text, task_id uuid, step_name text)
returns table(checkpoint_name text, state jsonb, status text, owner_run_id uuid, updated_at timestamptz)
language plpgsql as $$
begin
  perform teguh._check_queue(q);
  return query execute format(
    'select checkpoint_name, state, status, owner_run_id, updated_at from teguh.%I '
    'where task_id = $1 and checkpoint_name = $2', 'c_' || q)
    using task_id, step_name;
end
$$;

-- get_task_checkpoint_states(q, task_id, run_id): the task's checkpoints,
-- oldest first, sleeps left out, for a run that holds the task's lease (else
-- AB001/AB002).
-- Locks: none. Notifies: nobody.
create or replace function teguh.get_task_checkpoint_states(q text, task_id uuid, run_id uuid)
returns table(checkpoint_name text, state jsonb, status text)
language plpgsql as $$
#variable_conflict use_variable
declare
  held boolean;
begin
  perform teguh._check_queue(q);
  execute format('select exists (select 1 from teguh.%I where run_id = $1 and task_id = $2)', 'r_' || q)
    into held using run_id, task_id;
  if not held then
    perform teguh._raise_lease_error(q, run_id);
  end if;
  return query execute format(
    'select checkpoint_name, state, status from teguh.%I '
    'where task_id = $1 and kind <> ''sleep'' order by updated_at, checkpoint_name', 'c_' || q)
    using task_id;
end
$$;

-- ---------------------------------------------------------------------------
-- Events
-- ---------------------------------------------------------------------------

-- await_event(q, task_id, run_id, step_name, event_name, timeout): a durable
-- wait for an event, as step step_name. Returns (should_suspend, payload,
-- timed_out): from the step's checkpoint when it has one; the payload when
-- the event was emitted; timed out when timeout is 0; else it records the
-- wait in w_, ends the run, puts the task to sleep until the timeout
-- (seconds; null: none) and returns should_suspend true. AB001/AB002
-- without a lease.
-- Locks: none when the checkpoint answers. Else the event's e_ row (waits;
--   inserted first as a placeholder when missing), then the run's r_ row
--   (waits), then the task's t_ row (waits); inserts c_ or w_ rows, deletes
--   the r_ row when it suspends. Taking e_ first makes a racing emit_event
--   either wait for this call or be seen by it: no wake-up is lost.
-- Notifies: nobody.
create or replace function teguh.await_event(
  q text, task_id uuid, run_id uuid, step_name text, event_name text, timeout int default null
) returns table(should_suspend boolean, payload jsonb, timed_out boolean)
language plpgsql as $$
#variable_conflict use_variable
declare
  now_ts timestamptz := teguh.current_time();
  cp record;
  ev record;
  run record;
  held boolean;
  timeout_at timestamptz;
begin
  perform teguh._check_queue(q);
  perform teguh._check_name('step name', step_name);
  perform teguh._check_name('event name', event_name);
  if timeout is not null and timeout < 0 then
    raise exception 'await timeout must be >= 0 seconds, not %', timeout using errcode = 'TG004';
  end if;

  -- a step seen before answers from its checkpoint, with no lock taken
  execute format('select state, status from teguh.%I where task_id = $1 and checkpoint_name = $2', 'c_' || q)
    into cp using task_id, step_name;
  if cp.status is not null then
    execute format('select exists (select 1 from teguh.%I where run_id = $1 and task_id = $2)', 'r_' || q)
      into held using run_id, task_id;
    if not held then
      perform teguh._raise_lease_error(q, run_id);
    end if;
    return query select false, cp.state, cp.status = 'timed_out';
    return;
  end if;

  -- lock the event row first (a placeholder when not emitted yet), so an
  -- emit racing this await waits for it or is seen by it
  execute format('insert into teguh.%I (event_name, created_at) values ($1, $2) on conflict do nothing',
                 'e_' || q) using event_name, now_ts;
  execute format('select payload from teguh.%I where event_name = $1 for update', 'e_' || q)
    into ev using event_name;

  execute format('select task_id, attempt from teguh.%I where run_id = $1 and task_id = $2 for update', 'r_' || q)
    into run using run_id, task_id;
  if run.task_id is null then
    perform teguh._raise_lease_error(q, run_id);
  end if;
  perform teguh._lock_task(q, task_id);

  if ev.payload is not null then
    execute format($q$
      insert into teguh.%I (task_id, checkpoint_name, state, status, kind, owner_run_id, updated_at)
      values ($1, $2, $3, 'committed', 'event', $4, $5)
      on conflict (task_id, checkpoint_name) do nothing$q$, 'c_' || q)
      using task_id, step_name, ev.payload, run_id, now_ts;
    return query select false, ev.payload, false;
    return;
  end if;

  if timeout = 0 then
    execute format($q$
      insert into teguh.%I (task_id, checkpoint_name, state, status, kind, owner_run_id, updated_at)
      values ($1, $2, null, 'timed_out', 'event', $3, $4)
      on conflict (task_id, checkpoint_name) do nothing$q$, 'c_' || q)
      using task_id, step_name, run_id, now_ts;
    return query select false, null::jsonb, true;
    return;
  end if;

  timeout_at := now_ts + make_interval(secs => timeout);
  execute format($q$
    insert into teguh.%I (task_id, run_id, step_name, event_name, timeout_at, created_at)
    values ($1, $2, $3, $4, $5, $6)
    on conflict (task_id) do update
      set run_id = excluded.run_id, step_name = excluded.step_name, event_name = excluded.event_name,
          timeout_at = excluded.timeout_at, created_at = excluded.created_at$q$, 'w_' || q)
    using task_id, run_id, step_name, event_name, timeout_at, now_ts;
  perform teguh._suspend(q, run_id, task_id, run.attempt, timeout_at, now_ts, event_name);
  return query select true, null::jsonb, false;
end
$$;

-- emit_event_first(q, event_name, payload): stores the event's payload on
-- the first emit only (a later emit changes nothing: an event is kept in its
-- queue until cleanup_tasks removes it, a TTL after its emit), and wakes the
-- tasks waiting on it whose timeout has not passed: the payload becomes their
-- step's checkpoint and they become claimable. Returns one row: first (this
-- call stored the payload), emitted_at (when the stored payload was emitted:
-- now when first) and payload_unchanged (the stored payload equals this
-- call's, a SQL NULL counting as JSON null; true when first). Raises TG005
-- over the size limit.
-- Locks: the event's e_ row (waits, by the upsert); then the waiters' w_ rows
--   (waits, in task_id order) and each one's t_ row (waits); deletes the w_
--   rows, inserts c_ and p_ rows.
-- Notifies: teguh_<q> 'event' whenever it stored the payload.
create or replace function teguh.emit_event_first(q text, event_name text, payload jsonb default null)
returns table(first boolean, emitted_at timestamptz, payload_unchanged boolean)
language plpgsql as $$
#variable_conflict use_variable
declare
  now_ts timestamptz := teguh.current_time();
  stored int;
  w record;
  ev record;
  t record;
begin
  perform teguh._check_queue(q);
  perform teguh._check_name('event name', event_name);
  perform teguh._check_payload('payload', payload);
  payload := coalesce(payload, 'null'::jsonb);

  -- first write wins: only a placeholder (or no row) takes the payload
  execute format($q$
    insert into teguh.%1$I as e (event_name, payload, emitted_at, created_at)
    values ($1, $2, $3, $3)
    on conflict (event_name) do update
      set payload = excluded.payload, emitted_at = excluded.emitted_at
      where e.payload is null$q$, 'e_' || q)
    using event_name, payload, now_ts;
  get diagnostics stored = row_count;
  if stored = 0 then
    -- an earlier emit won; the upsert locked its row, so it stays as read here
    execute format('select payload, emitted_at from teguh.%I where event_name = $1', 'e_' || q)
      into ev using event_name;
    return query select false, ev.emitted_at, ev.payload = payload;
    return;
  end if;

  -- waits whose timeout has passed belong to the sweep, which times them out
  for w in execute format(
      'select task_id, run_id, step_name from teguh.%I '
      'where event_name = $1 and (timeout_at is null or timeout_at > $2) order by task_id for update',
      'w_' || q)
    using event_name, now_ts
  loop
    execute format('select attempts from teguh.%I where task_id = $1 and state = ''sleeping'' for update',
                   't_' || q)
      into t using w.task_id;
    continue when t.attempts is null;
    execute format($q$
      insert into teguh.%I (task_id, checkpoint_name, state, status, kind, owner_run_id, updated_at)
      values ($1, $2, $3, 'committed', 'event', $4, $5)
      on conflict (task_id, checkpoint_name) do nothing$q$, 'c_' || q)
      using w.task_id, w.step_name, payload, w.run_id, now_ts;
    execute format('delete from teguh.%I where task_id = $1', 'w_' || q) using w.task_id;
    perform teguh._make_ready(q, w.task_id, t.attempts, now_ts, event_name, payload);
  end loop;
  perform pg_notify('teguh_' || q, 'event');
  return query select true, now_ts, true;
end
$$;

-- emit_event(q, event_name, payload): emit_event_first without its answer
-- (the signature of 0.1).
-- Locks: as emit_event_first. Notifies: as emit_event_first.
create or replace function teguh.emit_event(q text, event_name text, payload jsonb default null) returns void
language plpgsql as $$
begin
  perform * from teguh.emit_event_first(q, event_name, payload);
end
$$;

-- ---------------------------------------------------------------------------
-- Cancel, retry, leases
-- ---------------------------------------------------------------------------

-- cancel_task(q, task_id): cancels a task that has not finished (a finished
-- one is left alone); its running run, if any, learns it at its next call
-- (AB001). Raises TG003 for an unknown task.
-- Locks: deletes the task's p_, r_ and w_ rows (waits, in that order), then
--   locks its t_ row (waits). When a transaction that committed meanwhile
--   left such a row behind, it rolls back to a savepoint (releasing the t_
--   lock) and goes round again.
-- Notifies: teguh_done when the task was spawned with notify_done.
-- (The work of cancel_task for one task, its children left alone: cancel_task
-- and its cascade over children are in section "Composition".)
create or replace function teguh._cancel_task(q text, task_id uuid) returns void
language plpgsql as $$
#variable_conflict use_variable
declare
  now_ts timestamptz := teguh.current_time();
  st text;
  nd boolean;
  par uuid;
  leftovers boolean;
  v_batch uuid;
begin
  perform teguh._check_queue(q);
  execute format('select state from teguh.%I where task_id = $1', 't_' || q) into st using task_id;
  if st is null then
    raise exception 'task % not found in queue "%"', task_id, q using errcode = 'TG003';
  end if;
  if st in ('completed', 'failed', 'cancelled') then
    return;
  end if;
  -- Delete p_, r_, w_ rows and then lock t_: the documented order. A run that
  -- committed while we waited (a retry's p_ row, a claim's r_ row) can leave a
  -- row behind; then the subtransaction is undone, which releases the t_ lock
  -- so whoever waits for it can finish, and we go round again.
  loop
    begin
      execute format('delete from teguh.%I where task_id = $1', 'p_' || q) using task_id;
      perform teguh._end_task_lease(q, task_id);
      execute format('delete from teguh.%I where task_id = $1', 'w_' || q) using task_id;
      execute format('select state from teguh.%I where task_id = $1 for update', 't_' || q)
        into st using task_id;
      execute format($q$
        select exists (select 1 from teguh.%1$I where task_id = $1)
            or exists (select 1 from teguh.%2$I where task_id = $1)
            or exists (select 1 from teguh.%3$I where task_id = $1)$q$, 'p_' || q, 'r_' || q, 'w_' || q)
        into leftovers using task_id;
      if leftovers and st not in ('completed', 'failed', 'cancelled') then
        raise exception using errcode = 'TG999', message = 'cancel: retry';
      end if;
      exit;
    exception when sqlstate 'TG999' then
      null;
    end;
  end loop;
  if st in ('completed', 'failed', 'cancelled') then
    return;
  end if;
  execute format($q$
    update teguh.%I
       set state = 'cancelled', cancelled_at = coalesce(cancelled_at, $2), finished_at = $2,
           available_at = null, wake_event = null, deadline_at = null, cancelled_run_id = last_run_id
     where task_id = $1
    returning notify_done, parent_task_id, batch_id$q$, 't_' || q)
    into nd, par, v_batch using task_id, now_ts;
  if nd then
    perform teguh._notify_done(q, task_id);
  end if;
  -- not while a cancel cascade cancels the parent too (_cancel_children)
  if par is not null and coalesce(current_setting('teguh.cascade', true), '') <> 'on' then
    perform teguh._children_ended(q, array[task_id], now_ts);
  end if;
  if v_batch is not null then perform teguh._batch_item_ended(v_batch, 'cancelled'); end if;
  perform teguh._notify_watch(q);
end
$$;

-- retry_task(q, p_task_id, options): brings a failed or cancelled task back
-- to pending in place, as its next attempt, without its cancellation policy
-- (options.max_attempts: a new limit, above the attempts made; default: room
-- for one more); or with options.spawn_new, spawns a copy as a new task.
-- Returns (task_id, null, attempt, created). TG003 for an unknown task,
-- TG004 for a task that is not failed or cancelled.
-- Locks: the task's t_ row (waits); inserts its p_ row (or the copy's rows).
-- Notifies: teguh_<q> 'retry' in place, 'spawn' for a copy ready now.
create or replace function teguh.retry_task(q text, p_task_id uuid, options jsonb default '{}')
returns table(task_id uuid, run_id uuid, attempt int, created boolean)
language plpgsql as $$
#variable_conflict use_variable
declare
  now_ts timestamptz := teguh.current_time();
  t record;
  bad text;
  new_max int;
begin
  perform teguh._check_queue(q);
  options := coalesce(options, '{}'::jsonb);
  if jsonb_typeof(options) <> 'object' then
    raise exception 'retry options must be a JSON object' using errcode = 'TG004';
  end if;
  select string_agg(k, ', ') into bad from jsonb_object_keys(options) k where k not in ('max_attempts', 'spawn_new');
  if bad is not null then
    raise exception 'retry options have unknown keys: %', bad using errcode = 'TG004';
  end if;
  if jsonb_typeof(options->'max_attempts') <> 'null'
     and not (teguh._is_int(options->'max_attempts') and (options->>'max_attempts')::int >= 1) then
    raise exception 'max_attempts must be an integer >= 1' using errcode = 'TG004';
  end if;

  execute format('select * from teguh.%I where task_id = $1 for update', 't_' || q) into t using p_task_id;
  if t.task_id is null then
    raise exception 'task % not found in queue "%"', p_task_id, q using errcode = 'TG003';
  end if;
  if t.state not in ('failed', 'cancelled') then
    raise exception 'task % in queue "%" is %; only failed or cancelled tasks can be retried',
      p_task_id, q, t.state using errcode = 'TG004';
  end if;

  if coalesce((options->>'spawn_new')::boolean, false) then
    return query select * from teguh._spawn(q, jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
      'task_name', t.task_name, 'params', t.params, 'headers', t.headers,
      'retry_strategy', t.retry_strategy, 'cancellation', t.cancellation, 'priority', t.priority,
      'notify_done', t.notify_done, 'concurrency_key', t.concurrency_key, 'rate_limit_key', t.rate_limit_key,
      'max_attempts', coalesce((options->>'max_attempts')::int, t.max_attempts)))));
    return;
  end if;

  if jsonb_typeof(options->'max_attempts') = 'number' then
    new_max := (options->>'max_attempts')::int;
    if new_max <= t.attempts then
      raise exception 'max_attempts must be greater than the attempts already made (%)', t.attempts
        using errcode = 'TG004';
    end if;
  elsif t.max_attempts is not null then
    new_max := greatest(t.max_attempts, t.attempts + 1);
  end if;

  execute format($q$
    update teguh.%I
       set max_attempts = $2, cancellation = null, deadline_at = null, cancelled_at = null,
           cancelled_run_id = null, finished_at = null, result = null
     where task_id = $1$q$, 't_' || q)
    using p_task_id, new_max;
  perform teguh._clear_final_attempt(q, p_task_id);  -- section "Operations (read side)"
  perform teguh._make_ready(q, p_task_id, t.attempts + 1, now_ts);
  perform pg_notify('teguh_' || q, 'retry');
  if t.batch_id is not null then perform teguh._batch_item_ended(t.batch_id, t.state, -1); end if;
  return query select p_task_id, null::uuid, t.attempts + 1, false;
end
$$;

-- extend_claim(q, run_id, extend_by): moves the run's lease expiry to now +
-- extend_by seconds (a lease that never expires stays so) and counts a
-- heartbeat. AB001/AB002 when the run holds no lease.
-- Locks: the run's r_ row (waits, by the update). Notifies: nobody.
create or replace function teguh.extend_claim(q text, run_id uuid, extend_by int) returns void
language plpgsql as $$
#variable_conflict use_variable
declare
  n int;
begin
  perform teguh._check_queue(q);
  if extend_by is null or extend_by <= 0 then
    raise exception 'extend_by must be > 0 seconds, not %', coalesce(extend_by::text, 'NULL')
      using errcode = 'TG004';
  end if;
  execute format($q$
    update teguh.%I
       set claim_expires_at = case when claim_expires_at is null then null
                                   else $2 + make_interval(secs => $3) end,
           heartbeats = heartbeats + 1
     where run_id = $1$q$, 'r_' || q)
    using run_id, teguh.current_time(), extend_by;
  get diagnostics n = row_count;
  if n = 0 then
    perform teguh._raise_lease_error(q, run_id);
  end if;
end
$$;

-- The worker's heartbeat: extends many leases in one statement and tells,
-- per run, whether it still holds its task.
-- Outcomes as complete_runs': ok, cancelled or lost. Sets synchronous_commit
-- off for the caller's transaction.
-- Locks: the runs' r_ rows (waits, by the update); reads t_ without locks.
-- Notifies: nobody.
create or replace function teguh.extend_claims(q text, run_ids uuid[], extend_by int)
returns table(run_id uuid, outcome text)
language plpgsql as $$
declare
  extended uuid[];
begin
  -- the full check (its name rules) only when the queue is not registered
  if not exists (select 1 from teguh.queues qq where qq.queue_name = q) then
    perform teguh._check_queue(q);
  end if;
  if extend_by is null or extend_by <= 0 then
    raise exception 'extend_by must be > 0 seconds, not %', coalesce(extend_by::text, 'NULL')
      using errcode = 'TG004';
  end if;
  -- a lost extension costs at most an early expiry; no need to wait for the disk
  perform set_config('synchronous_commit', 'off', true);
  execute format($q$
    with upd as (
      update teguh.%1$I r
         set claim_expires_at = case when r.claim_expires_at is null then null
                                     else $2 + make_interval(secs => $3) end,
             heartbeats = r.heartbeats + 1
       where r.run_id = any($1)
      returning r.run_id
    )
    select coalesce(array_agg(upd.run_id), '{}') from upd$q$, 'r_' || q)
    into extended using run_ids, teguh.current_time(), extend_by;
  -- Classified in a statement of its own, whose snapshot sees a cancel that
  -- committed while the update above waited for its lease row.
  return query execute format($q$
    select ids.run_id,
           case when ids.run_id = any($2) then 'ok'
                when exists (select 1 from teguh.%1$I t where t.cancelled_run_id = ids.run_id) then 'cancelled'
                else 'lost' end
      from (select distinct x.run_id from unnest($1::uuid[]) as x(run_id) where x.run_id is not null) ids$q$,
    't_' || q)
    using run_ids, extended;
end
$$;

-- ---------------------------------------------------------------------------
-- Queue options, task types, pause and resume (docs/flow-control.md)
-- ---------------------------------------------------------------------------

-- set_queue_options(q, options): changes queue q's settings; options is a
-- JSON object of the settings to change: default_max_attempts (an integer
-- >= 0; 0: tasks spawned without max_attempts retry for ever). It applies to
-- tasks spawned from then on: a task stores its max_attempts at spawn.
-- Raises TG002 for an unknown queue, TG004 for an unknown or invalid option
-- (nothing is changed).
-- Locks: the queue's teguh.queues row (waits, by the update).
-- Notifies: nobody.
create or replace function teguh.set_queue_options(q text, options jsonb) returns void
language plpgsql as $$
declare
  bad text;
begin
  perform teguh._check_queue(q);
  if options is null or jsonb_typeof(options) <> 'object' then
    raise exception 'queue options must be a JSON object' using errcode = 'TG004';
  end if;
  select string_agg(k, ', ') into bad from jsonb_object_keys(options) k where k not in ('default_max_attempts');
  if bad is not null then
    raise exception 'unknown queue options: % (known: default_max_attempts)', bad using errcode = 'TG004';
  end if;
  if options ? 'default_max_attempts'
     and not (teguh._is_int(options->'default_max_attempts') and (options->>'default_max_attempts')::int >= 0) then
    raise exception 'default_max_attempts must be an integer >= 0 (0: unlimited), not %',
      options->'default_max_attempts' using errcode = 'TG004';
  end if;
  update teguh.queues
     set default_max_attempts = coalesce((options->>'default_max_attempts')::int, default_max_attempts)
   where queue_name = q;
end
$$;

-- get_queue_options(q): queue q's settings: default_max_attempts, paused,
-- and the names of its paused task types (empty when none). TG002 for an
-- unknown queue.
-- Locks: none. Notifies: nobody.
create or replace function teguh.get_queue_options(q text)
returns table(default_max_attempts int, paused boolean, paused_task_types text[])
language plpgsql stable as $$
begin
  perform teguh._check_queue(q);
  return query select qq.default_max_attempts, qq.paused, coalesce(qq.paused_task_types, '{}')
                 from teguh.queues qq where qq.queue_name = q;
end
$$;

-- register_task_types(q, types, version): upserts queue q's task types, one
-- per element of types, a JSON array of objects: task_name, and any of
-- max_attempts, retry_strategy, cancellation, priority (spawn defaults, as
-- spawn options), concurrency, key_concurrency (integers >= 1) and
-- rate_limit ('<n>/s', '/m' or '/h'). version (the app's, may be null) is
-- stored on each. Every starting worker calls it for its handlers: the last
-- writer wins, and a registered type keeps its pause state and its
-- registered_at. Types are never deleted here (an older worker may still
-- run them). Raises TG002, TG004 (one bad element: nothing written).
-- Locks: the queue's teguh.queues row when it had no task type yet, or no
--   limit and one of types has one (waits, by the update), then the types' teguh.task_types rows (waits, by the
--   upsert): queues -> task_types, as pause_task_type.
-- Notifies: nobody.
create or replace function teguh.register_task_types(q text, types jsonb, version text default null)
returns void
language plpgsql as $$
declare
  item jsonb;
  pos bigint;
  bad text;
  now_ts timestamptz := teguh.current_time();
begin
  perform teguh._check_queue(q);
  if types is null or jsonb_typeof(types) <> 'array' then
    raise exception 'task types must be a JSON array' using errcode = 'TG004';
  end if;
  if version is not null then
    perform teguh._check_name('version', version);
  end if;
  for item, pos in select x.item, x.pos from jsonb_array_elements(types) with ordinality as x(item, pos) loop
    if jsonb_typeof(item) <> 'object' then
      raise exception 'task type % must be a JSON object', pos using errcode = 'TG004';
    end if;
    select string_agg(k, ', ') into bad from jsonb_object_keys(item) k
     where k not in ('task_name', 'max_attempts', 'retry_strategy', 'cancellation', 'priority',
                     'concurrency', 'key_concurrency', 'rate_limit', 'on_failure');
    if bad is not null then
      raise exception 'task type % has unknown keys: %', coalesce(item->>'task_name', pos::text), bad
        using errcode = 'TG004';
    end if;
    perform teguh._check_spawn_item(
      jsonb_build_object('task_name', item->'task_name')
        || (item - array['concurrency', 'key_concurrency', 'rate_limit', 'on_failure']), pos);
    if jsonb_typeof(item->'on_failure') <> 'null' and not (
         jsonb_typeof(item->'on_failure') = 'object' and jsonb_typeof(item->'on_failure'->'task_name') = 'string'
         and jsonb_typeof(item->'on_failure'->'queue') = 'string') then
      raise exception 'task type % on_failure must be an object {"task_name": ..., "queue": ...}',
        item->>'task_name' using errcode = 'TG004';
    end if;
    if jsonb_typeof(item->'concurrency') <> 'null'
       and not (teguh._is_int(item->'concurrency') and (item->>'concurrency')::int >= 1) then
      raise exception 'task type % concurrency must be an integer >= 1', item->>'task_name' using errcode = 'TG004';
    end if;
    if jsonb_typeof(item->'key_concurrency') <> 'null'
       and not (teguh._is_int(item->'key_concurrency') and (item->>'key_concurrency')::int >= 1) then
      raise exception 'task type % key_concurrency must be an integer >= 1', item->>'task_name'
        using errcode = 'TG004';
    end if;
    if jsonb_typeof(item->'rate_limit') <> 'null'
       and (jsonb_typeof(item->'rate_limit') <> 'string' or item->>'rate_limit' !~ '^[1-9][0-9]{0,8}/[smh]$') then
      raise exception 'task type % rate_limit must look like "20/s", "100/m" or "1000/h", not %',
        item->>'task_name', item->'rate_limit' using errcode = 'TG004';
    end if;
  end loop;
  select string_agg(distinct n, ', ') into bad
    from (select x->>'task_name' as n from jsonb_array_elements(types) x
           group by 1 having count(*) > 1) d;
  if bad is not null then
    raise exception 'task types named more than once: %', bad using errcode = 'TG004';
  end if;

  -- spawns look types up once the queue has any; claims take the limited
  -- path once a type has a limit
  update teguh.queues
     set has_task_types = true,
         has_limits = has_limits or jsonb_path_exists(types,
           '$[*] ? (@.concurrency != null || @.key_concurrency != null || @.rate_limit != null)')
   where queue_name = q
     and (not has_task_types
          or not has_limits and jsonb_path_exists(types,
           '$[*] ? (@.concurrency != null || @.key_concurrency != null || @.rate_limit != null)'));
  insert into teguh.task_types as tt
    (queue_name, task_name, defaults, concurrency, key_concurrency, rate_limit, version, registered_at, updated_at,
     on_failure)
  select q, x.item->>'task_name',
         jsonb_strip_nulls(jsonb_build_object(
           'max_attempts', x.item->'max_attempts', 'retry_strategy', x.item->'retry_strategy',
           'cancellation', x.item->'cancellation', 'priority', x.item->'priority')),
         (x.item->>'concurrency')::int, (x.item->>'key_concurrency')::int, x.item->>'rate_limit',
         version, now_ts, now_ts, nullif(x.item->'on_failure', 'null'::jsonb)
    from jsonb_array_elements(types) with ordinality as x(item, pos)
   order by x.item->>'task_name'
  on conflict (queue_name, task_name) do update
     set defaults = excluded.defaults, concurrency = excluded.concurrency,
         key_concurrency = excluded.key_concurrency, rate_limit = excluded.rate_limit,
         version = excluded.version, updated_at = excluded.updated_at, on_failure = excluded.on_failure;
end
$$;

-- list_task_types(q): queue q's registered task types, by name, with their
-- spawn defaults (null: not set), limits, version and pause state.
-- Raises TG002 for an unknown queue.
-- Locks: none. Notifies: nobody.
create or replace function teguh.list_task_types(q text)
returns table(task_name text, max_attempts int, retry_strategy jsonb, cancellation jsonb, priority int,
              concurrency int, key_concurrency int, rate_limit text, version text, paused boolean,
              registered_at timestamptz, updated_at timestamptz)
language plpgsql stable as $$
begin
  perform teguh._check_queue(q);
  return query
    select tt.task_name, (tt.defaults->>'max_attempts')::int, tt.defaults->'retry_strategy',
           tt.defaults->'cancellation', (tt.defaults->>'priority')::int, tt.concurrency, tt.key_concurrency,
           tt.rate_limit, tt.version, tt.paused, tt.registered_at, tt.updated_at
      from teguh.task_types tt where tt.queue_name = q order by tt.task_name;
end
$$;

-- Sets queue q's pause flag, or one task type's (p_task_name not null), and
-- keeps teguh.queues.paused_task_types, which the claim reads, in step.
-- Raises TG002 for an unknown queue, TG004 for a task type not registered.
-- Locks: the queue's teguh.queues row (waits), then the type's row (waits):
--   queues -> task_types; so two pauses of one queue's types serialise and
--   the second recounts what the first wrote.
create or replace function teguh._set_paused(q text, p_task_name text, p_paused boolean) returns void
language plpgsql as $$
begin
  perform teguh._check_queue(q);
  perform 1 from teguh.queues where queue_name = q for no key update;
  if p_task_name is null then
    update teguh.queues set paused = p_paused where queue_name = q;
  else
    update teguh.task_types set paused = p_paused where queue_name = q and task_name = p_task_name;
    if not found then
      raise exception 'task type "%" is not registered in queue "%"', p_task_name, q
        using errcode = 'TG004',
              hint = 'a worker registers its handlers when it starts; see teguh.list_task_types';
    end if;
    update teguh.queues
       set paused_task_types = (select array_agg(tt.task_name order by tt.task_name) from teguh.task_types tt
                                  where tt.queue_name = q and tt.paused)
     where queue_name = q;
  end if;
  if not p_paused then
    perform pg_notify('teguh_' || q, 'wake');  -- idle workers claim at once
  end if;
end
$$;

-- pause_queue(q): workers of queue q claim nothing until resume_queue;
-- spawns still succeed and running tasks finish. Sweeps (expired leases,
-- due sleepers, deadlines) go on. TG002 for an unknown queue.
-- Locks: the queue's teguh.queues row (waits). Notifies: nobody.
create or replace function teguh.pause_queue(q text) returns void
language sql as $$ select teguh._set_paused(q, null, true) $$;

-- resume_queue(q): undoes pause_queue. TG002 for an unknown queue.
-- Locks: the queue's teguh.queues row (waits).
-- Notifies: teguh_<q> 'wake', so idle workers claim at once.
create or replace function teguh.resume_queue(q text) returns void
language sql as $$ select teguh._set_paused(q, null, false) $$;

-- pause_task_type(q, task_name): workers of queue q claim no task of that
-- type until resume_task_type; other types flow. The type must be
-- registered (TG004 otherwise); TG002 for an unknown queue.
-- Locks: the queue's teguh.queues row, then the type's teguh.task_types row
--   (both wait). Notifies: nobody.
create or replace function teguh.pause_task_type(q text, task_name text) returns void
language sql as $$ select teguh._set_paused(q, task_name, true) $$;

-- resume_task_type(q, task_name): undoes pause_task_type. TG002, TG004 as it.
-- Locks: as pause_task_type.
-- Notifies: teguh_<q> 'wake', so idle workers claim at once.
create or replace function teguh.resume_task_type(q text, task_name text) returns void
language sql as $$ select teguh._set_paused(q, task_name, false) $$;

-- ---------------------------------------------------------------------------
-- Reading, timers, maintenance
-- ---------------------------------------------------------------------------

-- get_task_result(q, p_task_id): the task's state, attempts, result, last
-- failure, end times and snoozes. Raises TG003 for an unknown task.
-- Locks: none. Notifies: nobody.
create or replace function teguh.get_task_result(q text, p_task_id uuid)
returns table(task_id uuid, state text, attempts int, result jsonb, failure_reason jsonb,
              cancelled_at timestamptz, finished_at timestamptz, snoozes int)
language plpgsql as $$
#variable_conflict use_variable
declare
  n int;
begin
  perform teguh._check_queue(q);
  return query execute format(
    'select task_id, state, attempts, result, failure_reason, cancelled_at, finished_at, snoozes '
    'from teguh.%I where task_id = $1', 't_' || q)
    using p_task_id;
  get diagnostics n = row_count;
  if n = 0 then
    raise exception 'task % not found in queue "%"', p_task_id, q using errcode = 'TG003';
  end if;
end
$$;

-- get_task_info(q, task_id): a task's row with its current lease holder
-- (claimed_by and claimed_at are null when no run holds it) and what it
-- waits for: what an integration showing task details needs (the Django
-- backend's results, `teguh task show`). For a sleeping task, wake_at is
-- when it wakes (the end of its sleep or retry delay, or the timeout of its
-- event wait: null when that wait has none), awaited_event the event it
-- waits for, and wait_step the step it waits in (the sleep's or the event
-- wait's; null while it waits to retry). For a pending task, wake_at is when
-- it becomes claimable if it was spawned with a delay. Unlike
-- get_task_result, an unknown queue or task is no row, not an error, so a
-- caller can look a task up in several queues.
-- Locks: none (reads only). Notifies: nobody.
create or replace function teguh.get_task_info(q text, p_task_id uuid)
returns table(task_id uuid, task_name text, params jsonb, state text, attempts int, priority int,
              enqueued_at timestamptz, first_started_at timestamptz, finished_at timestamptz,
              result jsonb, failure_reason jsonb, cancelled_at timestamptz,
              claimed_by text, claimed_at timestamptz,
              wake_at timestamptz, awaited_event text, wait_step text)
language plpgsql stable as $$
#variable_conflict use_variable
begin
  if not exists (select 1 from teguh.queues where queue_name = q) then
    return;
  end if;
  -- available_at and wake_event are set only on pending and sleeping tasks
  -- (every other transition clears them). A durable sleep is told from a
  -- retry delay by its checkpoint, which holds the very wake time.
  return query execute format($q$
    select t.task_id, t.task_name, t.params, t.state, t.attempts, t.priority, t.enqueued_at,
           t.first_started_at, t.finished_at, t.result, t.failure_reason, t.cancelled_at,
           r.claimed_by, r.claimed_at, t.available_at, t.wake_event,
           case
             when t.state <> 'sleeping' then null
             when t.wake_event is not null then
               (select w.step_name from teguh.%3$I w where w.task_id = t.task_id)
             else
               (select c.checkpoint_name from teguh.%4$I c
                 where c.task_id = t.task_id and c.kind = 'sleep'
                   and (c.state->>'$teguh_sleep_until')::timestamptz = t.available_at
                 order by c.checkpoint_name limit 1)
           end
      from teguh.%1$I t left join teguh.%2$I r on r.task_id = t.task_id
     where t.task_id = $1$q$,
    't_' || q, 'r_' || q, 'w_' || q, 'c_' || q)
    using p_task_id;
end
$$;

-- Gives get_task_info back to the roles that could execute it before the
-- block near the top dropped it for its new columns.
do $regrant$
declare
  acl text := current_setting('teguh._regrant_get_task_info', true);
  grantee regrole;
begin
  if coalesce(acl, '') = '' then
    return;
  end if;
  for grantee in select a.grantee::regrole from aclexplode(acl::aclitem[]) a
                  where a.privilege_type = 'EXECUTE' and a.grantee <> 0 and a.grantee <> a.grantor loop
    execute format('grant execute on function teguh.get_task_info(text, uuid) to %s', grantee);
  end loop;
  perform set_config('teguh._regrant_get_task_info', '', true);
end
$regrant$;

-- The earliest moment something in the queue falls due; index scans only
-- (in the queue's own _due_<q>), and on a queue with limits also when the
-- next token of a rate bucket that held a task back is due.
-- Null when nothing is due. Idle workers wait at most until then.
-- Locks: none. Notifies: nobody.
create or replace function teguh.next_due(q text) returns timestamptz
language plpgsql as $$
declare
  due timestamptz;
  limited boolean;
begin
  select qq.has_limits into limited from teguh.queues qq where qq.queue_name = q;
  if not found then
    perform teguh._check_queue(q);
  end if;
  execute format('select teguh.%I()', '_due_' || q) into due;
  if limited then
    due := least(due, (select min(rl.blocked_until) from teguh.rate_limits rl
                        where rl.queue_name = q and rl.blocked_until is not null));
  end if;
  return due;
end
$$;

-- Runs every sweep to completion (in bounded batches) for one queue or all.
-- Batches of 500 rows per sweep, at most 100 rounds per queue; returns how
-- many tasks it made claimable. pg_cron runs it (teguh.start).
-- Locks: the sweeps': skip locked, never waits for a row.
-- Notifies: teguh_<q> 'wake' for each queue where it made work ready, plus
--   what the sweeps send (teguh_<q> 'retry', teguh_done).
create or replace function teguh.ticker(q text default null) returns int
language plpgsql as $$
#variable_conflict use_column
declare
  now_ts timestamptz := teguh.current_time();
  qn text;
  total int := 0;
  ready int;
  rounds int;
  recovered record;
  woken int;
  cancelled int;
begin
  if q is not null then
    perform teguh._check_queue(q);
  end if;
  for qn in select queues.queue_name from teguh.queues
             where q is null or queues.queue_name = q order by queues.queue_name loop
    ready := 0;
    rounds := 0;
    loop
      select * into recovered from teguh._recover_expired(qn, 500, now_ts);
      woken := teguh._wake_due(qn, 500, now_ts);
      cancelled := teguh._enforce_deadlines(qn, 500, now_ts);
      ready := ready + recovered.made_ready + woken;
      rounds := rounds + 1;
      exit when recovered.processed + woken + cancelled = 0 or rounds >= 100;
    end loop;
    if ready > 0 then
      perform pg_notify('teguh_' || qn, 'wake');
    end if;
    total := total + ready;
  end loop;
  return total;
end
$$;

-- The smallest UUIDv7 of the millisecond of ts: every task enqueued before
-- ts has a smaller id.
create or replace function teguh._uuidv7_floor(ts timestamptz) returns uuid
language sql immutable as $$
  select (lpad(to_hex(floor(extract(epoch from ts) * 1000)::bigint), 12, '0') || '70008000000000000000')::uuid
$$;

-- Terminal tasks finished before the TTL, in id order: a task finishes after
-- it is enqueued, so its id (a UUIDv7 of its enqueue time) bounds the scan to
-- tasks enqueued before the cutoff, through the primary key. (No index on
-- finished_at: it would stop completions from being HOT updates.)
-- Deletes their c_ and w_ rows too, then emitted events past the TTL and
-- placeholders nobody waits for. Locks: t_ and e_ rows, skip locked.
create or replace function teguh._cleanup(
  q text, ttl_seconds int, lim int, out tasks_deleted int, out events_deleted int
)
language plpgsql as $$
declare
  cfg record;
  cutoff timestamptz;
begin
  select cleanup_ttl, cleanup_limit into cfg from teguh.queues where queue_name = q;
  if ttl_seconds is not null and ttl_seconds < 0 or lim is not null and lim < 1 then
    raise exception 'cleanup ttl must be >= 0 and limit >= 1' using errcode = 'TG004';
  end if;
  cutoff := teguh.current_time() - coalesce(make_interval(secs => ttl_seconds), cfg.cleanup_ttl);
  lim := coalesce(lim, cfg.cleanup_limit);

  execute format($q$
    with victims as (
      select task_id from teguh.%1$I
       where task_id < $3 and state in ('completed', 'failed', 'cancelled') and finished_at < $1
       order by task_id
       limit $2
         for update skip locked
    ), dc as (
      delete from teguh.%2$I c using victims v where c.task_id = v.task_id
    ), dw as (
      delete from teguh.%3$I w using victims v where w.task_id = v.task_id
    ), da as (
      delete from teguh.%4$I a using victims v where a.task_id = v.task_id
    ), dt as (
      delete from teguh.%1$I t using victims v where t.task_id = v.task_id returning 1
    )
    select count(*) from dt$q$, 't_' || q, 'c_' || q, 'w_' || q, 'a_' || q)
    into tasks_deleted using cutoff, lim, teguh._uuidv7_floor(cutoff + interval '1 millisecond');

  -- emitted events past the TTL, and placeholders nobody waits for any more
  execute format($q$
    with victims as (
      select e.event_name from teguh.%1$I e
       where coalesce(e.emitted_at, e.created_at) < $1
         and (e.payload is not null
              or not exists (select 1 from teguh.%2$I w where w.event_name = e.event_name))
       order by coalesce(e.emitted_at, e.created_at)
       limit $2
         for update skip locked
    ), de as (
      delete from teguh.%1$I e using victims v where e.event_name = v.event_name returning 1
    )
    select count(*) from de$q$, 'e_' || q, 'w_' || q)
    into events_deleted using cutoff, lim;
  perform teguh._cleanup_batches(q, cutoff, lim);
end
$$;

-- cleanup_tasks(q, ttl_seconds, lim): deletes up to lim tasks (with their
-- checkpoints and waits) that finished more than ttl_seconds ago, and events
-- past the same TTL; null arguments take the queue's policy in teguh.queues.
-- Returns the number of tasks deleted.
-- Locks: task and event rows skip locked (never waits for them); deletes the
--   c_ and w_ rows of the tasks it locked.
-- Notifies: nobody.
create or replace function teguh.cleanup_tasks(q text, ttl_seconds int default null, lim int default null)
returns int
language plpgsql as $$
begin
  perform teguh._check_queue(q);
  return (teguh._cleanup(q, ttl_seconds, lim)).tasks_deleted;
end
$$;

-- cleanup_all_queues(): cleanup_tasks for every queue by its own policy; one
-- row per queue. pg_cron runs it daily (teguh.start).
-- Locks: as cleanup_tasks. Notifies: nobody.
create or replace function teguh.cleanup_all_queues()
returns table(queue_name text, tasks_deleted int, events_deleted int)
language plpgsql as $$
#variable_conflict use_column
declare
  qn text;
  r record;
begin
  for qn in select queues.queue_name from teguh.queues order by queues.queue_name loop
    select * into r from teguh._cleanup(qn, null, null);
    queue_name := qn;
    tasks_deleted := r.tasks_deleted;
    events_deleted := r.events_deleted;
    return next;
  end loop;
end
$$;

-- pg_cron scheduling; without pg_cron these only say so.
-- start(): schedules the pg_cron jobs teguh-ticker (every 10 seconds, or
-- every minute before pg_cron 1.5) and teguh-cleanup (daily).
-- Locks: none of teguh's. Notifies: nobody.
create or replace function teguh.start() returns void
language plpgsql as $$
declare
  v text;
  every text := '* * * * *';
begin
  select extversion into v from pg_extension where extname = 'pg_cron';
  -- pg_cron lives in one database per cluster (cron.database_name, a setting
  -- that exists only when it is preloaded); say so rather than "not installed".
  if v is null and coalesce(current_setting('cron.database_name', true), '') not in ('', current_database()) then
    raise notice 'pg_cron runs in database "%" (cron.database_name), not in "%": set cron.database_name = ''%'' '
      'and create extension pg_cron here, or run `teguh ticker` yourself',
      current_setting('cron.database_name'), current_database(), current_database();
    return;
  end if;
  if v is null then
    raise notice 'pg_cron is not installed: run `teguh ticker` (or select teguh.ticker()) yourself; '
      'workers already wake on their own via teguh.next_due()';
    return;
  end if;
  -- second-granularity schedules arrived in pg_cron 1.5
  if string_to_array(split_part(v, '-', 1), '.')::int[] >= array[1, 5] then
    every := '10 seconds';
  end if;
  execute 'select cron.schedule($1, $2, $3)' using 'teguh-ticker', every, 'select teguh.ticker()';
  execute 'select cron.schedule($1, $2, $3)'
    using 'teguh-cleanup', '17 3 * * *', 'select * from teguh.cleanup_all_queues()';
end
$$;

-- stop(): unschedules both jobs. Locks: none of teguh's. Notifies: nobody.
create or replace function teguh.stop() returns void
language plpgsql as $$
begin
  if not exists (select 1 from pg_extension where extname = 'pg_cron') then
    raise notice 'pg_cron is not installed: nothing to stop';
    return;
  end if;
  execute 'select cron.unschedule(jobid) from cron.job where jobname in (''teguh-ticker'', ''teguh-cleanup'')';
end
$$;

-- ---------------------------------------------------------------------------
-- Section: schedules (periodic tasks, docs/schedules.md)
-- ---------------------------------------------------------------------------
-- A schedule spawns one task per tick of a cron expression or an interval.
-- Ticks are computed by the workers (Python, with a cron library); the
-- engine keeps the rows and refuses a second task for a tick whatever the
-- caller: fire_schedule locks the row (skip locked), takes only ticks at or
-- after its next_run_at and before the next one it is given, spawns each
-- with the idempotency key 'schedule:<name>:<tick>' and moves next_run_at
-- in the same transaction. Names are global to the database. Nothing here
-- runs on the claim, spawn or complete paths of a queue.

-- One row per schedule. owner is the app (its queue name) whose workers
-- upserted it, null for a schedule made with create_schedule (workers never
-- delete those). next_run_at: the next tick to fire (null once end_at has
-- passed); last_run_at: when the last tick's (or trigger's) task was spawned.
create table if not exists teguh.schedules (
  name text primary key,
  task_name text not null,
  queue_name text not null,
  params jsonb,
  options jsonb not null default '{}',
  cron text,
  every_seconds double precision check (every_seconds >= 1),
  spec text not null,
  timezone text not null default 'UTC',
  overlap text not null default 'allow' check (overlap in ('allow', 'skip')),
  catch_up text not null default 'one' check (catch_up in ('skip', 'one', 'all')),
  max_catch_up int not null default 100 check (max_catch_up >= 1),
  jitter double precision not null default 0 check (jitter >= 0),
  start_at timestamptz,
  end_at timestamptz,
  owner text,
  version text,
  paused boolean not null default false,
  next_run_at timestamptz,
  last_run_at timestamptz,
  last_task_id uuid,
  created_at timestamptz not null,
  updated_at timestamptz not null,
  check ((cron is null) <> (every_seconds is null))
);

-- What idle workers wait for: the earliest tick of an active schedule.
create index if not exists schedules_next_run_at on teguh.schedules (next_run_at) where not paused;

-- The versions of each owner's code seen by put_schedules, in order of first
-- appearance: a worker whose version first appeared before another one of
-- the same owner runs older code and changes no schedule (rolling deploys).
create table if not exists teguh.schedule_owners (
  owner text not null,
  version text not null,
  first_seen_at timestamptz not null,
  primary key (owner, version)
);

-- The ISO 8601 form of a tick in UTC, without a fraction when it has none:
-- the scheduled_for header and the tail of the tick's idempotency key.
create or replace function teguh._schedule_iso(t timestamptz) returns text
language sql immutable as $$
  select to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
         || case when extract(microseconds from t)::bigint % 1000000 <> 0
                 then to_char(t at time zone 'UTC', '.US') else '' end
         || '+00:00'
$$;

-- put_schedules(owner, version, items, prune): upserts schedules (items: a
-- JSON array of objects with the columns above, next_run_at the first tick
-- after now, computed by the caller). An existing row keeps its paused flag,
-- last run and, unless its timetable (cron, every, timezone, start_at,
-- end_at) changed, its next_run_at. With prune, the owner's rows not in
-- items are deleted, only those whose task is in handled when it is given
-- (the tasks the app has handlers for: another app with the same owner but
-- other tasks keeps its rows). Returns 'ok', or 'stale' (and writes nothing) when a
-- later version of the same owner has been seen: an old worker restarting
-- during a rolling deploy neither resurrects nor deletes schedules.
-- Raises TG002 (a queue does not exist), TG004 (a bad item).
-- Locks: the owner's teguh.schedule_owners rows (insert), each upserted or
--   deleted schedule row (waits).
-- Notifies: teguh_<q> 'schedule' for each queue with an upserted or deleted row.
create or replace function teguh.put_schedules(p_owner text, p_version text, items jsonb, prune boolean,
                                               handled text[] default null)
returns text
language plpgsql as $$
declare
  now_ts timestamptz := teguh.current_time();
  mine timestamptz;
  item jsonb;
  qn text;
  queues text[];
begin
  if items is null or jsonb_typeof(items) <> 'array' then
    raise exception 'schedule items must be a JSON array' using errcode = 'TG004';
  end if;
  if p_owner is not null and p_version is not null then
    insert into teguh.schedule_owners (owner, version, first_seen_at) values (p_owner, p_version, now_ts)
      on conflict (owner, version) do nothing;
    select o.first_seen_at into mine from teguh.schedule_owners o where o.owner = p_owner and o.version = p_version;
    if exists (select 1 from teguh.schedule_owners o
                where o.owner = p_owner and o.version <> p_version and o.first_seen_at > mine) then
      return 'stale';
    end if;
  end if;
  for item in select x from jsonb_array_elements(items) as x loop
    perform teguh._check_name('schedule name', item->>'name');
    perform teguh._check_name('task_name', item->>'task_name');
    perform teguh._check_queue(item->>'queue_name');
    perform teguh._check_payload('params', item->'params');
  end loop;
  insert into teguh.schedules as s
    (name, task_name, queue_name, params, options, cron, every_seconds, spec, timezone, overlap, catch_up,
     max_catch_up, jitter, start_at, end_at, owner, version, next_run_at, created_at, updated_at)
  select x.name, x.task_name, x.queue_name, nullif(x.params, 'null'::jsonb), coalesce(x.options, '{}'),
         x.cron, x.every_seconds, x.spec, coalesce(x.timezone, 'UTC'), coalesce(x.overlap, 'allow'),
         coalesce(x.catch_up, 'one'), coalesce(x.max_catch_up, 100), coalesce(x.jitter, 0),
         x.start_at, x.end_at, p_owner, p_version, x.next_run_at, now_ts, now_ts
    from jsonb_to_recordset(items) as x(name text, task_name text, queue_name text, params jsonb,
         options jsonb, cron text, every_seconds double precision, spec text, timezone text, overlap text,
         catch_up text, max_catch_up int, jitter double precision, start_at timestamptz, end_at timestamptz,
         next_run_at timestamptz)
  on conflict (name) do update set
    task_name = excluded.task_name, queue_name = excluded.queue_name, params = excluded.params,
    options = excluded.options, cron = excluded.cron, every_seconds = excluded.every_seconds,
    spec = excluded.spec, timezone = excluded.timezone, overlap = excluded.overlap,
    catch_up = excluded.catch_up, max_catch_up = excluded.max_catch_up, jitter = excluded.jitter,
    start_at = excluded.start_at, end_at = excluded.end_at, owner = excluded.owner,
    version = excluded.version, updated_at = excluded.updated_at,
    next_run_at = case when (s.cron, s.every_seconds, s.timezone, s.start_at, s.end_at)
                            is distinct from (excluded.cron, excluded.every_seconds, excluded.timezone,
                                              excluded.start_at, excluded.end_at)
                       then excluded.next_run_at else s.next_run_at end;
  select array_agg(distinct x->>'queue_name') into queues from jsonb_array_elements(items) as x;
  if prune and p_owner is not null then
    with gone as (
      delete from teguh.schedules s
       where s.owner = p_owner
         and s.name not in (select x->>'name' from jsonb_array_elements(items) as x)
         and (handled is null or s.task_name = any(handled))
      returning s.queue_name
    )
    select coalesce(queues, '{}') || coalesce(array_agg(distinct gone.queue_name), '{}') into queues from gone;
  end if;
  for qn in select distinct u from unnest(queues) as u loop
    perform pg_notify('teguh_' || qn, 'schedule');
  end loop;
  return 'ok';
end
$$;

-- delete_schedule(name): deletes a schedule; its tasks stay. Returns whether
-- it existed. Locks: its row (waits). Notifies: teguh_<q> 'schedule'.
create or replace function teguh.delete_schedule(p_name text) returns boolean
language plpgsql as $$
declare
  qn text;
begin
  delete from teguh.schedules s where s.name = p_name returning s.queue_name into qn;
  if qn is null then
    return false;
  end if;
  perform pg_notify('teguh_' || qn, 'schedule');
  return true;
end
$$;

-- pause_schedule(name) / resume_schedule(name) via _set_schedule_paused: a
-- paused schedule fires nothing and keeps its next_run_at, so when it is
-- resumed the ticks missed meanwhile are a missed window, and its catch_up
-- decides ("skip": none, "one": one task, "all": each, up to max_catch_up).
-- Returns whether the schedule exists.
-- Locks: its row (waits). Notifies: teguh_<q> 'schedule'.
create or replace function teguh._set_schedule_paused(p_name text, p_paused boolean) returns boolean
language plpgsql as $$
declare
  qn text;
begin
  update teguh.schedules s set paused = p_paused, updated_at = teguh.current_time()
   where s.name = p_name returning s.queue_name into qn;
  if qn is null then
    return false;
  end if;
  perform pg_notify('teguh_' || qn, 'schedule');
  return true;
end
$$;

create or replace function teguh.pause_schedule(p_name text) returns boolean
language sql as $$ select teguh._set_schedule_paused(p_name, true) $$;

create or replace function teguh.resume_schedule(p_name text) returns boolean
language sql as $$ select teguh._set_schedule_paused(p_name, false) $$;

-- list_schedules(): every schedule, by name. Locks: none. Notifies: nobody.
create or replace function teguh.list_schedules()
returns table(name text, task_name text, queue_name text, spec text, timezone text,
              next_run_at timestamptz, last_run_at timestamptz, last_task_id uuid, paused boolean)
language sql stable as $$
  select s.name, s.task_name, s.queue_name, s.spec, s.timezone, s.next_run_at, s.last_run_at,
         s.last_task_id, s.paused
    from teguh.schedules s order by s.name
$$;

-- next_schedule_due(queues): the earliest next_run_at of an active schedule
-- spawning on one of queues (all when null); null when none. Idle workers
-- wait at most until then. Locks: none. Notifies: nobody.
create or replace function teguh.next_schedule_due(queues text[]) returns timestamptz
language sql stable as $$
  select min(s.next_run_at) from teguh.schedules s
   where not s.paused and s.next_run_at is not null and (queues is null or s.queue_name = any(queues))
$$;

-- due_schedules(queues): up to 100 active schedules on queues (all when
-- null) whose next_run_at has come, with what a worker needs to compute their
-- ticks, and the engine's now. Locks: none (fire_schedule locks). Notifies: nobody.
create or replace function teguh.due_schedules(queues text[])
returns table(name text, cron text, every_seconds double precision, timezone text, catch_up text,
              max_catch_up int, jitter double precision, start_at timestamptz, end_at timestamptz,
              next_run_at timestamptz, now timestamptz)
language sql stable as $$
  select s.name, s.cron, s.every_seconds, s.timezone, s.catch_up, s.max_catch_up, s.jitter, s.start_at,
         s.end_at, s.next_run_at, teguh.current_time()
    from teguh.schedules s
   where not s.paused and s.next_run_at <= teguh.current_time()
     and (queues is null or s.queue_name = any(queues))
   order by s.next_run_at
   limit 100
$$;

-- fire_schedule(name, expected, ticks, next): fires a due schedule whose
-- next_run_at is still expected: spawns one task per tick (ticks: a JSON
-- array of {scheduled_for, available_at?}; each at or after expected, before
-- next and not in the future) with the idempotency key
-- 'schedule:<name>:<scheduled_for>' and the headers {"schedule": name,
-- "scheduled_for": ...} added to the schedule's, then sets next_run_at to
-- next (null: the schedule is over). With overlap 'skip' it spawns nothing
-- while the last task is not terminal (the ticks are passed over). Returns
-- the ticks spawned (a tick whose key exists returns that task, created
-- false); no row when another caller fired it first or holds it.
-- Raises TG004 (a tick out of range), and what spawn_task raises.
-- Locks: the schedule's row (skip locked), then as spawn_task.
-- Notifies: as spawn_task.
create or replace function teguh.fire_schedule(p_name text, p_expected timestamptz, ticks jsonb,
                                               p_next timestamptz)
returns table(scheduled_for timestamptz, task_id uuid, created boolean)
language plpgsql as $$
declare
  now_ts timestamptz := teguh.current_time();
  s teguh.schedules%rowtype;
  tick jsonb;
  t timestamptz;
  st text;
  spawned record;
  last_id uuid;
begin
  select * into s from teguh.schedules sc
   where sc.name = p_name and sc.next_run_at = p_expected and not sc.paused
     for update skip locked;
  if not found then
    return;
  end if;
  if ticks is null or jsonb_typeof(ticks) <> 'array' then
    raise exception 'ticks must be a JSON array' using errcode = 'TG004';
  end if;
  if p_next is not null and p_next <= p_expected then
    raise exception 'the next tick of schedule % must be after %', p_name, p_expected using errcode = 'TG004';
  end if;
  for tick in select x from jsonb_array_elements(ticks) as x loop
    t := (tick->>'scheduled_for')::timestamptz;
    if t is null or t < p_expected or t > now_ts or (p_next is not null and t >= p_next) then
      raise exception 'tick % of schedule % is not due (next_run_at %)', t, p_name, p_expected
        using errcode = 'TG004';
    end if;
  end loop;
  if s.overlap = 'skip' and s.last_task_id is not null and jsonb_array_length(ticks) > 0 then
    execute format('select t.state from teguh.%I t where t.task_id = $1', 't_' || s.queue_name)
      into st using s.last_task_id;
    if st is not null and st not in ('completed', 'failed', 'cancelled') then
      ticks := '[]';
    elsif jsonb_array_length(ticks) > 1 then
      ticks := jsonb_build_array(ticks->-1);  -- at most one task at a time
    end if;
  end if;
  for tick in select x from jsonb_array_elements(ticks) as x order by (x->>'scheduled_for')::timestamptz loop
    t := (tick->>'scheduled_for')::timestamptz;
    select * into spawned from teguh.spawn_task(s.queue_name, s.task_name, s.params,
      s.options || jsonb_strip_nulls(jsonb_build_object(
        'idempotency_key', 'schedule:' || s.name || ':' || teguh._schedule_iso(t),
        'available_at', tick->'available_at',
        'headers', coalesce(s.options->'headers', '{}'::jsonb)
                   || jsonb_build_object('schedule', s.name, 'scheduled_for', teguh._schedule_iso(t)))));
    last_id := spawned.task_id;
    scheduled_for := t;
    task_id := spawned.task_id;
    created := spawned.created;
    return next;
  end loop;
  update teguh.schedules sc
     set next_run_at = p_next,
         last_run_at = case when last_id is null then sc.last_run_at else now_ts end,
         last_task_id = coalesce(last_id, sc.last_task_id)
   where sc.name = p_name;
end
$$;

-- trigger_schedule(name): spawns the schedule's task now, outside its
-- timetable (no idempotency key: each trigger spawns), with the headers
-- {"schedule": name, "scheduled_for": now, "trigger": true}; next_run_at does
-- not move. Returns the spawn's row, none when the schedule does not exist.
-- Locks: the schedule's row (waits), then as spawn_task. Notifies: as spawn_task.
create or replace function teguh.trigger_schedule(p_name text)
returns table(task_id uuid, run_id uuid, attempt int, created boolean)
language plpgsql as $$
declare
  now_ts timestamptz := teguh.current_time();
  s teguh.schedules%rowtype;
  spawned record;
begin
  select * into s from teguh.schedules sc where sc.name = p_name for update;
  if not found then
    return;
  end if;
  select * into spawned from teguh.spawn_task(s.queue_name, s.task_name, s.params,
    s.options || jsonb_build_object('headers', coalesce(s.options->'headers', '{}'::jsonb)
      || jsonb_build_object('schedule', s.name, 'scheduled_for', teguh._schedule_iso(now_ts), 'trigger', true)));
  update teguh.schedules sc set last_run_at = now_ts, last_task_id = spawned.task_id where sc.name = p_name;
  return query select spawned.task_id, spawned.run_id, spawned.attempt, spawned.created;
end
$$;

-- ---------------------------------------------------------------------------
-- Section: composition
-- ---------------------------------------------------------------------------
-- Child tasks a parent can wait for, cancellation that cascades to them, and
-- progress reports (docs/composition.md). A child is a task of any queue
-- whose t_ row names its parent (parent_task_id, parent_queue: set by
-- spawn_children, null for every other task). A parent waiting for children
-- has one teguh.child_waits row and sleeps; each awaited child's terminal
-- transition (_done_<q>, _fail_for_good, _cancel, _cancel_task) counts it
-- down through _children_ended, and the child that brings it to zero makes
-- the parent ready, in its own transaction: one wake-up per wait, however
-- many children.
--
-- Lock order (adds to the header's): the t_ rows of children are locked
-- before anything of their parent (its child_waits row, then its r_, then
-- its t_ row). A child's end holds its own r_ and t_ rows and then takes
-- the parent's child_waits row and, for the last child, the parent's t_
-- row; await_children share-locks the children's t_ rows (in queue and
-- task_id order) before it touches its wait row or its own r_ and t_ rows;
-- cancel_task cancels children before their parent. A transaction ending
-- children of several parents takes the parents' rows in (queue, task_id)
-- order. A sweep that ends a child (lease recovery failing it for good, a
-- deadline cancelling it) therefore waits for its parent's rows, an
-- exception to "sweeps never wait": it waits upward only, and the holders of
-- a parent's rows (other children's ends, the parent's await_children after
-- its children's rows, cancel_task after the children) never wait for a
-- child's rows while holding them, so no cycle can form.

-- The open waits of parents: the children still open when the wait began
-- (children, which never changes) and how many of them have not ended yet
-- (remaining). Deleted when the wait ends.
create table if not exists teguh.child_waits (
  parent_queue text not null,
  parent_task_id uuid not null,
  run_id uuid not null,
  step_name text not null,
  children uuid[] not null,
  remaining int not null,
  timeout_at timestamptz,
  created_at timestamptz not null,
  primary key (parent_queue, parent_task_id)
);

-- _children_ended(q, task_ids, now_ts): tasks of queue q that are children
-- reached a terminal state; counts them down in their parents' open waits
-- and makes a sleeping parent whose count reached zero ready. Caller holds
-- the children's t_ rows.
-- Locks: the parents' child_waits rows (waits, by the update, in parent
--   order), then for a count at zero the parent's t_ row (waits).
-- Notifies: teguh_<parent queue> 'wake' for each parent it made ready.
create or replace function teguh._children_ended(q text, p_task_ids uuid[], now_ts timestamptz)
returns void
language plpgsql as $$
declare
  rec record;
  left_open int;
  att int;
begin
  for rec in execute format(
      'select task_id, parent_queue, parent_task_id from teguh.%I '
      'where task_id = any($1) and parent_task_id is not null '
      'order by parent_queue, parent_task_id, task_id', 't_' || q)
    using p_task_ids
  loop
    update teguh.child_waits w set remaining = w.remaining - 1
     where w.parent_queue = rec.parent_queue and w.parent_task_id = rec.parent_task_id
       and w.remaining > 0 and rec.task_id = any(w.children)
    returning w.remaining into left_open;
    continue when left_open is null or left_open > 0;
    delete from teguh.child_waits w
     where w.parent_queue = rec.parent_queue and w.parent_task_id = rec.parent_task_id;
    att := null;
    execute format('select attempts from teguh.%I where task_id = $1 and state = ''sleeping'' for update',
                   't_' || rec.parent_queue)
      into att using rec.parent_task_id;
    if att is not null then
      perform teguh._make_ready(rec.parent_queue, rec.parent_task_id, att, now_ts);
      perform pg_notify('teguh_' || rec.parent_queue, 'wake');
    end if;
  end loop;
end
$$;

-- spawn_children(q, parent_queue, parent_task_id, parent_run_id, items):
-- spawn_tasks(q, items) for a running parent: the tasks created are its
-- children (their parent_task_id and parent_queue are set), which it can
-- wait for with await_children and which cancel_task cancels with it.
-- Returns spawn_tasks' rows. AB001/AB002 when parent_run_id does not hold
-- the parent's lease (nothing is spawned).
-- Locks: the parent's r_ row (waits, shared: a cancel of the parent waits
--   for this spawn and then sees its children), then as spawn_tasks; updates
--   the new children's t_ rows (one more row version per child).
-- Notifies: as spawn_tasks.
create or replace function teguh.spawn_children(
  q text, parent_queue text, parent_task_id uuid, parent_run_id uuid, items jsonb
) returns table(task_id uuid, run_id uuid, attempt int, created boolean)
language plpgsql as $$
#variable_conflict use_variable
declare
  held boolean;
  ids uuid[];
  atts int[];
  made boolean[];
begin
  perform teguh._check_queue(parent_queue);
  execute format('select true from teguh.%I where run_id = $1 and task_id = $2 for share', 'r_' || parent_queue)
    into held using parent_run_id, parent_task_id;
  if held is null then
    perform teguh._raise_lease_error(parent_queue, parent_run_id);
  end if;
  select array_agg(x.task_id order by x.pos), array_agg(x.attempt order by x.pos),
         array_agg(x.created order by x.pos)
    into ids, atts, made
    from teguh.spawn_tasks(q, items) with ordinality as x(task_id, run_id, attempt, created, pos);
  if true = any(made) then
    execute format('update teguh.%I set parent_task_id = $1, parent_queue = $2 '
                   'where task_id = any($3) and parent_task_id is null', 't_' || q)
      using parent_task_id, parent_queue,
            (select array_agg(u.id) from unnest(ids, made) as u(id, made) where u.made);
  end if;
  return query select u.id, null::uuid, u.att, u.made
                 from unnest(ids, atts, made) with ordinality as u(id, att, made, pos) order by u.pos;
end
$$;

-- await_children(q, task_id, run_id, step_name, children, timeout): a
-- durable wait, as step step_name, for children of the task (children: a
-- JSON array of [queue, task_id] pairs). Returns (should_suspend, outcomes,
-- timed_out). When every child is terminal, outcomes is a JSON array, in
-- the order given, of {"state", "result", "failure"} objects (read from the
-- children's rows, one query per queue) and becomes the step's checkpoint.
-- Else the wait is recorded in teguh.child_waits, the run ends and the task
-- sleeps until the last child ends (or the timeout, seconds, passes: then a
-- later call returns timed_out and records it). A step seen before answers
-- from its checkpoint. TG004 when a task given is not a child of this task
-- (nothing written); AB001/AB002 without a lease.
-- Locks: the children's t_ rows (shared, waits; per queue in name order, in
--   task_id order), then the task's child_waits row (by its delete), its r_
--   row (waits), its t_ row (waits); inserts a c_ or child_waits row and
--   deletes the r_ row when it suspends. Share-locking the children first
--   makes a child ending meanwhile either be seen ended here or see the
--   wait recorded: no wake-up is lost.
-- Notifies: nobody.
create or replace function teguh.await_children(
  q text, task_id uuid, run_id uuid, step_name text, children jsonb, timeout int default null
) returns table(should_suspend boolean, outcomes jsonb, timed_out boolean)
language plpgsql as $$
#variable_conflict use_variable
declare
  now_ts timestamptz := teguh.current_time();
  cp record;
  held boolean;
  cq text;
  found_rows jsonb := '{}'::jsonb;
  part jsonb;
  bad record;
  open_ids uuid[];
  result_list jsonb;
  old_wait record;
  run record;
  wait_until timestamptz;
begin
  perform teguh._check_queue(q);
  perform teguh._check_name('step name', step_name);
  if timeout is not null and timeout < 0 then
    raise exception 'await timeout must be >= 0 seconds, not %', timeout using errcode = 'TG004';
  end if;
  if children is null or jsonb_typeof(children) <> 'array' or exists (
       select 1 from jsonb_array_elements(children) c
        where jsonb_typeof(c) <> 'array' or jsonb_array_length(c) <> 2
           or jsonb_typeof(c->0) <> 'string' or jsonb_typeof(c->1) <> 'string'
           or (c->>1) !~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$') then
    raise exception 'children must be a JSON array of [queue, task_id] pairs' using errcode = 'TG004';
  end if;

  -- a step seen before answers from its checkpoint
  execute format('select state, status from teguh.%I where task_id = $1 and checkpoint_name = $2', 'c_' || q)
    into cp using task_id, step_name;
  if cp.status is not null then
    execute format('select exists (select 1 from teguh.%I where run_id = $1 and task_id = $2)', 'r_' || q)
      into held using run_id, task_id;
    if not held then
      perform teguh._raise_lease_error(q, run_id);
    end if;
    return query select false, cp.state, cp.status = 'timed_out';
    return;
  end if;

  -- the children, share-locked, queue by queue
  for cq in select distinct c->>0 from jsonb_array_elements(children) c order by 1 loop
    perform teguh._check_queue(cq);
    execute format($q$
      select coalesce(jsonb_object_agg($3 || ':' || x.task_id::text, jsonb_build_object(
               'state', x.state, 'result', x.result, 'failure', x.failure_reason,
               'child', x.parent_task_id = $2 and x.parent_queue = $4)), '{}'::jsonb)
        from (select t.task_id, t.state, t.result, t.failure_reason, t.parent_task_id, t.parent_queue
                from teguh.%I t
               where t.task_id = any($1)
               order by t.task_id
                 for share) x$q$, 't_' || cq)
      into part
      using (select array_agg((c->>1)::uuid) from jsonb_array_elements(children) c where c->>0 = cq),
            task_id, cq, q;
    found_rows := found_rows || part;
  end loop;
  select c->>0 as queue, c->>1 as id into bad
    from jsonb_array_elements(children) c
   where coalesce((found_rows->((c->>0) || ':' || ((c->>1)::uuid)::text)->>'child')::boolean, false) = false
   limit 1;
  if bad.id is not null then
    raise exception 'task % of queue "%" is not a child of task % of queue "%"', bad.id, bad.queue, task_id, q
      using errcode = 'TG004';
  end if;
  select array_agg(distinct (c->>1)::uuid) into open_ids
    from jsonb_array_elements(children) c
   where found_rows->((c->>0) || ':' || ((c->>1)::uuid)::text)->>'state'
         not in ('completed', 'failed', 'cancelled');

  -- the wait recorded by an earlier run (it timed out, or woke the task
  -- while this call was on its way)
  delete from teguh.child_waits w where w.parent_queue = q and w.parent_task_id = task_id
  returning w.timeout_at into old_wait;

  execute format('select task_id, attempt from teguh.%I where run_id = $1 and task_id = $2 for update', 'r_' || q)
    into run using run_id, task_id;
  if run.task_id is null then
    perform teguh._raise_lease_error(q, run_id);
  end if;
  perform teguh._lock_task(q, task_id);

  if open_ids is null then
    select jsonb_agg((found_rows->((c.item->>0) || ':' || ((c.item->>1)::uuid)::text)) - 'child'
                     order by c.pos)
      into result_list
      from jsonb_array_elements(children) with ordinality as c(item, pos);
    result_list := coalesce(result_list, '[]'::jsonb);
    execute format($q$
      insert into teguh.%I (task_id, checkpoint_name, state, status, kind, owner_run_id, updated_at)
      values ($1, $2, $3, 'committed', 'event', $4, $5)
      on conflict (task_id, checkpoint_name) do nothing$q$, 'c_' || q)
      using task_id, step_name, result_list, run_id, now_ts;
    return query select false, result_list, false;
    return;
  end if;

  wait_until := coalesce(old_wait.timeout_at, now_ts + make_interval(secs => timeout));
  if timeout = 0 or wait_until <= now_ts then
    execute format($q$
      insert into teguh.%I (task_id, checkpoint_name, state, status, kind, owner_run_id, updated_at)
      values ($1, $2, null, 'timed_out', 'event', $3, $4)
      on conflict (task_id, checkpoint_name) do nothing$q$, 'c_' || q)
      using task_id, step_name, run_id, now_ts;
    return query select false, null::jsonb, true;
    return;
  end if;

  insert into teguh.child_waits (parent_queue, parent_task_id, run_id, step_name, children, remaining,
                                 timeout_at, created_at)
  values (q, task_id, run_id, step_name, open_ids, cardinality(open_ids), wait_until, now_ts);
  perform teguh._suspend(q, run_id, task_id, run.attempt, wait_until, now_ts);
  return query select true, null::jsonb, false;
end
$$;

-- _cancel_children(q, task_id): cancels the unfinished children of a task
-- of queue q, in every queue, with their own children (cancel_task). The
-- children's ends do not count down their parents' waits (the setting
-- teguh.cascade, transaction-local, is 'on' meanwhile): their parents are
-- being cancelled and their waits deleted, and taking a parent's wait row
-- here, before the next child's rows, would invert the lock order against a
-- child completing at that moment.
-- Locks: as cancel_task, for each child in turn (queues in name order,
--   children in task_id order).
create or replace function teguh._cancel_children(q text, p_task_id uuid) returns void
language plpgsql as $$
declare
  cq text;
  kid uuid;
  outer_cascade text := coalesce(current_setting('teguh.cascade', true), '');
begin
  perform set_config('teguh.cascade', 'on', true);
  for cq in select queue_name from teguh.queues order by queue_name loop
    for kid in execute format(
        'select task_id from teguh.%I where parent_task_id = $1 and parent_queue = $2 '
        'and state not in (''completed'', ''failed'', ''cancelled'') order by task_id', 't_' || cq)
      using p_task_id, q
    loop
      perform teguh.cancel_task(cq, kid, true);
    end loop;
  end loop;
  perform set_config('teguh.cascade', outer_cascade, true);
end
$$;

-- cancel_task(q, task_id, children default true): cancels a task that has not finished
-- (a finished one is left alone); its running run, if any, learns it at its
-- next call (AB001). With children, first and last its unfinished children
-- (those spawned with spawn_children, in any queue, and theirs) are
-- cancelled too: children before their parent (the section's lock order),
-- and again after it, for a child its last run spawned meanwhile. Raises
-- TG003 for an unknown task.
-- Locks: as teguh._cancel_task (the task's p_, r_, w_ rows, then its t_
--   row), for each child first; then the task's child_waits row (delete).
-- Notifies: teguh_done for each task cancelled that was spawned with
--   notify_done; teguh_<parent queue> 'wake' when the task is a child and
--   was the last one its waiting parent waited for.
create or replace function teguh.cancel_task(q text, task_id uuid, children boolean default true) returns void
language plpgsql as $$
#variable_conflict use_variable
begin
  perform teguh._check_queue(q);
  if children then
    execute format('select 1 from teguh.%I where task_id = $1', 't_' || q) using task_id;
    if not found then
      raise exception 'task % not found in queue "%"', task_id, q using errcode = 'TG003';
    end if;
    perform teguh._cancel_children(q, task_id);
  end if;
  perform teguh._cancel_task(q, task_id);
  if children then
    perform teguh._cancel_children(q, task_id);
    delete from teguh.child_waits w where w.parent_queue = q and w.parent_task_id = task_id;
  end if;
end
$$;

-- Gives cancel_task back to the roles that could execute it before the
-- block near the top dropped its two-argument form.
do $regrant$
declare
  acl text := current_setting('teguh._regrant_cancel_task', true);
  grantee regrole;
begin
  if coalesce(acl, '') = '' then
    return;
  end if;
  for grantee in select a.grantee::regrole from aclexplode(acl::aclitem[]) a
                  where a.privilege_type = 'EXECUTE' and a.grantee <> 0 and a.grantee <> a.grantor loop
    execute format('grant execute on function teguh.cancel_task(text, uuid, boolean) to %s', grantee);
  end loop;
  perform set_config('teguh._regrant_cancel_task', '', true);
end
$regrant$;

-- report_progress(q, task_id, run_id, progress): stores a running task's
-- progress (a JSON value; an object gets updated_at, the database time);
-- not a checkpoint, the last report wins. AB001/AB002 when run_id is not
-- the task's current run. Raises TG005 over the size limit.
-- Locks: the task's t_ row (waits, by the update; a HOT update).
-- Notifies: teguh_progress '<q>:<task_id>'.
create or replace function teguh.report_progress(q text, task_id uuid, run_id uuid, progress jsonb)
returns void
language plpgsql as $$
#variable_conflict use_variable
declare
  n int;
begin
  perform teguh._check_queue(q);
  perform teguh._check_payload('progress', progress);
  if jsonb_typeof(progress) = 'object' then
    progress := progress || jsonb_build_object('updated_at', teguh.current_time());
  end if;
  execute format('update teguh.%I set progress = $3 where task_id = $1 and last_run_id = $2 '
                 'and state = ''running''', 't_' || q)
    using task_id, run_id, progress;
  get diagnostics n = row_count;
  if n = 0 then
    perform teguh._raise_lease_error(q, run_id);
  end if;
  perform pg_notify('teguh_progress', q || ':' || task_id::text);
end
$$;

-- get_task_progress(q, task_id): a task's last progress report (null when
-- none) and its parent (null for a task that is not a child). Raises TG003
-- for an unknown task.
-- Locks: none. Notifies: nobody.
create or replace function teguh.get_task_progress(q text, p_task_id uuid)
returns table(progress jsonb, parent_task_id uuid, parent_queue text)
language plpgsql stable as $$
#variable_conflict use_variable
declare
  n int;
begin
  perform teguh._check_queue(q);
  return query execute format('select progress, parent_task_id, parent_queue from teguh.%I where task_id = $1',
                              't_' || q)
    using p_task_id;
  get diagnostics n = row_count;
  if n = 0 then
    raise exception 'task % not found in queue "%"', p_task_id, q using errcode = 'TG003';
  end if;
end
$$;

-- ---------------------------------------------------------------------------
-- Section: Topics (docs/composition.md, "Topics")
-- ---------------------------------------------------------------------------
-- A publish spawns one task per binding whose pattern matches the topic, in
-- the caller's transaction. Topics are dot-separated words; a pattern's word
-- `*` matches exactly one word, `#` zero or more (AMQP's topic rules). Each
-- binding stores a regex built from its pattern when it is bound, so a
-- publish is one scan of the (small) bindings table with `~`. Nothing here
-- touches the claim, spawn or completion paths of tasks that are not
-- published.

-- Bindings: pattern -> (queue, task). Upserted by starting workers for their
-- app's `App.bind` calls and by `Client.bind`; never deleted except by
-- unbind_topic or with their queue (the foreign key). regex is
-- teguh._topic_regex(pattern), matched against '.' || topic.
create table if not exists teguh.topic_bindings (
  pattern text not null,
  task_name text not null,
  queue_name text not null references teguh.queues (queue_name) on delete cascade,
  regex text not null,
  created_at timestamptz not null,
  updated_at timestamptz not null,
  primary key (pattern, task_name, queue_name)
);

-- Checks a pattern (wildcards true) or a topic (false): not blank, at most
-- 1024 bytes, words non-empty and without whitespace; `*` and `#` only as
-- whole words of a pattern. Raises TG004 naming what is wrong.
create or replace function teguh._check_topic_words(what text, val text, wildcards boolean) returns void
language plpgsql immutable as $$
declare
  word text;
begin
  perform teguh._check_name(what, val);
  for word in select unnest(string_to_array(val, '.')) loop
    if word = '' then
      raise exception '% % has an empty word (a leading, trailing or doubled dot)', what, quote_literal(val)
        using errcode = 'TG004';
    end if;
    if word ~ '[ \t\n\r\f\v]' then
      raise exception '% %: word % contains whitespace', what, quote_literal(val), quote_literal(word)
        using errcode = 'TG004';
    end if;
    if word ~ '[*#]' then
      if not wildcards then
        raise exception '% %: word % holds a wildcard; * and # belong in binding patterns', what,
          quote_literal(val), quote_literal(word) using errcode = 'TG004';
      end if;
      if word not in ('*', '#') then
        raise exception '% %: word % mixes a wildcard with other characters; * and # must be whole words',
          what, quote_literal(val), quote_literal(word) using errcode = 'TG004';
      end if;
    end if;
  end loop;
end
$$;

-- The regex a pattern matches '.' || topic with: each word is a dot and the
-- word, `*` one dot-word, `#` any number of them, literal words escaped.
create or replace function teguh._topic_regex(pattern text) returns text
language sql immutable as $$
  select '^' || string_agg(case x.w when '*' then '\.[^.]+'
                                    when '#' then '(?:\.[^.]+)*'
                                    else '\.' || regexp_replace(x.w, '([\\^$.|?*+()\[\]{}])', '\\\1', 'g')
                           end, '' order by x.n) || '$'
    from unnest(string_to_array(pattern, '.')) with ordinality as x(w, n)
$$;

-- A newer release may build regexes differently: bring stored ones up to date.
update teguh.topic_bindings set regex = teguh._topic_regex(pattern)
 where regex is distinct from teguh._topic_regex(pattern);

-- bind_topics(bindings): upserts bindings, a JSON array of objects
-- {"pattern", "task_name", "queue"}; an existing binding keeps its
-- created_at. Raises TG002 (unknown queue), TG004 (a bad element: nothing
-- written).
-- Locks: the bindings' teguh.topic_bindings rows (waits, by the upsert), and
--   a key share lock on their queues' teguh.queues rows (the foreign key).
-- Notifies: nobody.
create or replace function teguh.bind_topics(bindings jsonb) returns void
language plpgsql as $$
declare
  item jsonb;
  pos bigint;
  bad text;
  now_ts timestamptz := teguh.current_time();
begin
  if bindings is null or jsonb_typeof(bindings) <> 'array' then
    raise exception 'topic bindings must be a JSON array' using errcode = 'TG004';
  end if;
  for item, pos in select x.item, x.pos from jsonb_array_elements(bindings) with ordinality as x(item, pos) loop
    if jsonb_typeof(item) <> 'object' then
      raise exception 'topic binding % must be a JSON object', pos using errcode = 'TG004';
    end if;
    select string_agg(k, ', ') into bad from jsonb_object_keys(item) k
     where k not in ('pattern', 'task_name', 'queue');
    if bad is not null then
      raise exception 'topic binding % has unknown keys: %', pos, bad using errcode = 'TG004';
    end if;
    if jsonb_typeof(item->'pattern') is distinct from 'string'
       or jsonb_typeof(item->'task_name') is distinct from 'string'
       or jsonb_typeof(item->'queue') is distinct from 'string' then
      raise exception 'topic binding % needs string pattern, task_name and queue', pos using errcode = 'TG004';
    end if;
    perform teguh._check_topic_words('topic pattern', item->>'pattern', true);
    perform teguh._check_name('task name', item->>'task_name');
    perform teguh._check_queue(item->>'queue');
  end loop;
  insert into teguh.topic_bindings as tb (pattern, task_name, queue_name, regex, created_at, updated_at)
  select distinct on (x->>'pattern', x->>'task_name', x->>'queue')
         x->>'pattern', x->>'task_name', x->>'queue', teguh._topic_regex(x->>'pattern'), now_ts, now_ts
    from jsonb_array_elements(bindings) x
   order by x->>'pattern', x->>'task_name', x->>'queue'
  on conflict (pattern, task_name, queue_name) do update
     set regex = excluded.regex, updated_at = excluded.updated_at;
end
$$;

-- unbind_topic(pattern, task_name, q): deletes one binding; returns whether
-- it existed.
-- Locks: the binding's teguh.topic_bindings row (waits, by the delete).
-- Notifies: nobody.
create or replace function teguh.unbind_topic(pattern text, task_name text, q text) returns boolean
language plpgsql as $$
declare
  n int;
begin
  delete from teguh.topic_bindings tb
   where tb.pattern = unbind_topic.pattern and tb.task_name = unbind_topic.task_name and tb.queue_name = q;
  get diagnostics n = row_count;
  return n > 0;
end
$$;

-- list_topic_bindings(): every binding, by pattern, task and queue.
-- Locks: none. Notifies: nobody.
create or replace function teguh.list_topic_bindings()
returns table(pattern text, task_name text, queue_name text, created_at timestamptz, updated_at timestamptz)
language sql stable as $$
  select tb.pattern, tb.task_name, tb.queue_name, tb.created_at, tb.updated_at
    from teguh.topic_bindings tb order by 1, 2, 3
$$;

-- publish(topic, params, idempotency_key): spawns, through spawn_task, one
-- task per (queue, task) with a binding matching topic (two patterns of one
-- task matching the same topic spawn it once), in (queue, task) order, and
-- returns one row per spawn. With idempotency_key, each task gets the key
-- '<idempotency_key>:<task_name>', so a repeated publish returns the tasks
-- of the first (created false). No match: no row. Raises TG004 (a bad topic
-- or key: nothing written), and what spawn_task raises.
-- Locks: as spawn_task, per matching binding.
-- Notifies: as spawn_task, per matching binding (teguh_<q> 'spawn').
create or replace function teguh.publish(topic text, params jsonb, idempotency_key text default null)
returns table(queue_name text, task_name text, task_id uuid, run_id uuid, attempt int, created boolean)
language plpgsql as $$
declare
  b record;
begin
  perform teguh._check_topic_words('topic', topic, false);
  if idempotency_key is not null then
    perform teguh._check_name('idempotency_key', idempotency_key);
  end if;
  for b in select distinct tb.queue_name as q, tb.task_name as t
             from teguh.topic_bindings tb where '.' || topic ~ tb.regex order by 1, 2 loop
    return query
      select b.q, b.t, s.task_id, s.run_id, s.attempt, s.created
        from teguh.spawn_task(b.q, b.t, params,
               case when idempotency_key is null then '{}'::jsonb
                    else jsonb_build_object('idempotency_key', idempotency_key || ':' || b.t) end) s;
  end loop;
end
$$;

-- ---------------------------------------------------------------------------
-- Section: Batches (docs/composition.md "Batches")
-- ---------------------------------------------------------------------------
-- A batch is many tasks of one task name spawned in one statement
-- (spawn_batch), counted as they end, with an optional on_complete task
-- spawned once when every item is terminal, and an on_failure policy:
-- 'continue' (run them all) or 'fail_fast' (cancel the rest at the first item
-- that fails for good). Items carry t_<q>.batch_id; plain tasks leave it
-- null and pay nothing: each terminal transition (_done_<q>, _fail_for_good,
-- _cancel, cancel_task) and the retries (_fail, retry_task) call
-- _batch_item_ended only when the task has a batch_id.
--
-- Counting happens at commit. _batch_item_ended appends a row to
-- teguh.batch_ends (no lock on an existing row); a deferred constraint
-- trigger on that table runs when the transaction commits, and its first
-- firing takes the transaction's rows, sums them per batch and applies the
-- sums in batch_id order (_batch_account). So:
-- * Locks: the teguh.batches row of a batch is taken last in its
--   transaction (at commit, waits), in batch_id order when one transaction
--   ended items of several batches; after it the transaction never waits
--   for a row (the fail_fast cancels skip locked rows; the on_complete spawn
--   inserts new rows only). Transactions that end items of one batch queue
--   for its row for the moment between their trigger and their commit; no
--   deadlock can involve it.
-- * Exactly once: the row lock serialises the accounting, and only the
--   transaction that brings the count of ended items to the total finds
--   finished_at still null; it spawns on_complete and records its task id.
-- * fail_fast: the transaction that counts the first failure cancels every
--   item it can lock at once (skip locked; see _batch_cancel_rest). An item
--   whose t_ row another transaction holds at that moment is left to it:
--   that transaction recorded a batch_ends row if the item failed for good,
--   was cancelled or is about to retry (_fail), and at its own commit it
--   finds the batch failed and cancels it. An item being claimed or
--   suspended at that very instant can escape and run on; no item is
--   retried after the failure.
-- * The trigger runs at commit, as the schema's owner. A caller who runs
--   SET CONSTRAINTS ALL IMMEDIATE in its own transaction moves it earlier,
--   and the batch row lock is then no longer its last.

-- One row per batch. Counts are of items that ended (completed, failed for
-- good, cancelled); pending and running are read from the items themselves
-- (get_batch). state: running, then completed, failed or cancelled once
-- every item ended (failed when any failed, cancelled when any was cancelled
-- and none failed); a fail_fast batch is failed from its first failure.
create table if not exists teguh.batches (
  batch_id uuid primary key,
  queue_name text not null,
  task_name text not null,
  on_failure text not null check (on_failure in ('continue', 'fail_fast')),
  on_complete text,
  total int not null check (total > 0),
  completed int not null default 0,
  failed int not null default 0,
  cancelled int not null default 0,
  state text not null default 'running' check (state in ('running', 'completed', 'failed', 'cancelled')),
  created_at timestamptz not null,
  finished_at timestamptz,
  on_complete_task_id uuid
);
-- a queue's batches, newest first (list_batches; cleanup walks it too)
create index if not exists batches_queue_id on teguh.batches (queue_name, batch_id);

-- Items that ended in a transaction not yet committed: appended by
-- _batch_item_ended, taken (deleted) by the commit trigger of the same
-- transaction. Rows never outlive their transaction, so the table is
-- unlogged (a crash loses only rows of transactions that did not commit).
-- n is +1 per item that ended, -1 per item brought back by retry_task, 0 for
-- a retry (state 'retrying': only makes the commit look at a fail_fast batch).
create unlogged table if not exists teguh.batch_ends (
  xact bigint not null,
  batch_id uuid not null,
  state text not null,
  n int not null
);
create index if not exists batch_ends_xact on teguh.batch_ends (xact);

-- Records that p_n items of batch p_batch_id reached p_state (-1: an item
-- left it, retry_task), to be counted when the transaction commits. A
-- 'retrying' item is recorded only in a fail_fast batch.
-- Locks: none (an insert). Notifies: nobody.
create or replace function teguh._batch_item_ended(p_batch_id uuid, p_state text, p_n int default 1)
returns void
language plpgsql as $$
begin
  if p_state = 'retrying' then
    if not exists (select 1 from teguh.batches b where b.batch_id = p_batch_id and b.on_failure = 'fail_fast') then
      return;
    end if;
    p_n := 0;
  end if;
  insert into teguh.batch_ends (xact, batch_id, state, n) values (txid_current(), p_batch_id, p_state, p_n);
end
$$;

-- _batch_item_ended for many items (the completions of one _done_<q> call):
-- one row per batch. Locks: none. Notifies: nobody.
create or replace function teguh._batch_items_ended(p_batch_ids uuid[], p_state text) returns void
language sql as $$
  insert into teguh.batch_ends (xact, batch_id, state, n)
  select txid_current(), b, p_state, count(*) from unnest(p_batch_ids) as b
   group by b
$$;

-- Cancels the items of batch p_batch_id (queue q) that have not ended and
-- that it can lock now, all in a few statements (a batch may hold 50,000
-- items); returns how many. Called by _batch_account for a fail_fast batch
-- that failed, holding the batch's row; as _cancel does, but for a set of
-- items, and it counts them itself (no batch_ends rows).
-- Locks: the items' t_ rows, then their p_, r_ and w_ rows, all skip locked.
--   An item whose t_ row another transaction holds is left to it (if that
--   transaction ends or retries the item, it recounts the batch at its own
--   commit); an item whose p_, r_ or w_ row is held (a heartbeat, a claim)
--   gets a deadline of now, so the next sweep cancels it.
-- Notifies: teguh_done for items spawned with notify_done; teguh_<q> 'wake'
--   when a cancelled run held a concurrency slot or an item got a deadline.
create or replace function teguh._batch_cancel_rest(q text, p_batch_id uuid, now_ts timestamptz) returns int
language plpgsql as $$
declare
  v_ids uuid[];
  v_busy uuid[];
  v_slot boolean;
  v_done uuid[];
  v_n int;
  prefix text;
begin
  if to_regclass(format('teguh.%I', 't_' || q)) is null then
    return 0;  -- the queue was dropped
  end if;
  execute format('select array_agg(x.task_id) from (select t.task_id from teguh.%I t where t.batch_id = $1 '
                 'and t.state not in (''completed'', ''failed'', ''cancelled'') for update skip locked) x',
                 't_' || q)
    into v_ids using p_batch_id;
  if v_ids is null then
    return 0;
  end if;
  foreach prefix in array array['p_', 'r_', 'w_'] loop
    -- rows present minus rows we could lock: held by another transaction
    execute format('select array(select c.task_id from teguh.%1$I c where c.task_id = any($1) '
                   'except select l.task_id from (select c2.task_id from teguh.%1$I c2 '
                   'where c2.task_id = any($1) for update skip locked) l)', prefix || q)
      into v_busy using v_ids;
    if cardinality(v_busy) > 0 then
      -- we hold their t_ rows: a deadline of now makes the next claim's
      -- sweep (_enforce_deadlines) cancel them, and wakes idle workers
      execute format('update teguh.%I set deadline_at = $2 where task_id = any($1)', 't_' || q)
        using v_busy, now_ts;
      perform pg_notify('teguh_' || q, 'wake');
      select array_agg(i) into v_ids from unnest(v_ids) as i where i <> all(v_busy);
      if v_ids is null then
        return 0;
      end if;
    end if;
  end loop;
  execute format('delete from teguh.%I where task_id = any($1)', 'p_' || q) using v_ids;
  execute format('with x as (delete from teguh.%I r where r.task_id = any($1) returning r.task_name) '
                 'select bool_or(x.task_name is not null) from x', 'r_' || q)
    into v_slot using v_ids;
  execute format('delete from teguh.%I where task_id = any($1)', 'w_' || q) using v_ids;
  execute format($q$
    with c as (
      update teguh.%I
         set state = 'cancelled', cancelled_at = coalesce(cancelled_at, $2), finished_at = $2,
             available_at = null, wake_event = null, deadline_at = null, cancelled_run_id = last_run_id
       where task_id = any($1) and state not in ('completed', 'failed', 'cancelled')
      returning task_id, notify_done
    )
    select count(*), array_agg(c.task_id) filter (where c.notify_done) from c$q$, 't_' || q)
    into v_n, v_done using v_ids, now_ts;
  if v_n > 0 then perform teguh._cancel_cascade(q, v_ids); end if;  -- section: deadline cascade
  if v_slot then
    perform pg_notify('teguh_' || q, 'wake');
  end if;
  if v_done is not null then
    perform teguh._notify_done(q, d) from unnest(v_done) as d;
  end if;
  return v_n;
end
$$;

-- Applies to batch p_batch_id the items that ended in the committing
-- transaction (dc completed, df failed, dx cancelled; negative when
-- retry_task brought items back): trips fail_fast, finishes the batch when
-- every item ended and spawns its on_complete task once (params: batch_id,
-- queue, task_name, state, total, completed, failed, cancelled). A failing
-- on_complete spawn (its queue was dropped) is logged as a warning and does
-- not undo the commit.
-- Locks: the batch's teguh.batches row (waits; see the section's head), then
--   _batch_cancel_rest's (skip locked).
-- Notifies: what _cancel and spawn_task send.
create or replace function teguh._batch_account(p_batch_id uuid, dc int, df int, dx int)
returns void
language plpgsql as $$
declare
  now_ts timestamptz := teguh.current_time();
  b teguh.batches;
  v_ended int;
begin
  select * into b from teguh.batches where batch_id = p_batch_id for update;
  if not found then
    return;  -- deleted meanwhile
  end if;
  b.completed := b.completed + dc;
  b.failed := b.failed + df;
  b.cancelled := b.cancelled + dx;
  v_ended := b.completed + b.failed + b.cancelled;
  if b.on_failure = 'fail_fast' and b.failed > 0 then
    b.state := 'failed';
    -- every transaction with an item of a failed fail_fast batch cancels
    -- what is left (a retrying item of its own, or items others held)
    if v_ended < b.total then
      b.cancelled := b.cancelled + teguh._batch_cancel_rest(b.queue_name, p_batch_id, now_ts);
      v_ended := b.completed + b.failed + b.cancelled;
    end if;
  end if;
  if v_ended >= b.total and b.finished_at is null then
    b.finished_at := now_ts;
    if b.state = 'running' then
      b.state := case when b.failed > 0 then 'failed' when b.cancelled > 0 then 'cancelled' else 'completed' end;
    end if;
    if b.on_complete is not null and b.on_complete_task_id is null then
      begin
        select s.task_id into b.on_complete_task_id
          from teguh.spawn_task(b.queue_name, b.on_complete,
                                jsonb_build_object('batch_id', b.batch_id, 'queue', b.queue_name,
                                                   'task_name', b.task_name, 'state', b.state,
                                                   'total', b.total, 'completed', b.completed,
                                                   'failed', b.failed, 'cancelled', b.cancelled)) s;
      exception when others then
        raise warning 'teguh: batch % could not spawn its on_complete task %: %',
          b.batch_id, b.on_complete, sqlerrm;
      end;
    end if;
  elsif v_ended < b.total and b.finished_at is not null then
    -- retry_task brought an item back: running again (on_complete stays spawned once)
    b.finished_at := null;
    if not (b.on_failure = 'fail_fast' and b.failed > 0) then
      b.state := 'running';
    end if;
  end if;
  update teguh.batches
     set completed = b.completed, failed = b.failed, cancelled = b.cancelled, state = b.state,
         finished_at = b.finished_at, on_complete_task_id = b.on_complete_task_id
   where batch_id = p_batch_id;
end
$$;

-- The commit trigger of teguh.batch_ends (deferred, per row): the first
-- firing in a transaction takes all its rows and accounts them per batch,
-- in batch_id order; later firings find none. Runs as the schema's owner
-- (it fires after the entry point that queued it has returned).
-- Locks: as _batch_account, per batch, in batch_id order.
-- Notifies: as _batch_account.
create or replace function teguh._batch_ends_at_commit() returns trigger
language plpgsql security definer set search_path = pg_catalog, teguh, pg_temp as $$
declare
  v_ids uuid[];
  v_c int[];
  v_f int[];
  v_x int[];
  i int;
begin
  with gone as (
    delete from teguh.batch_ends e where e.xact = txid_current() returning e.batch_id, e.state, e.n
  ), sums as (
    select g.batch_id,
           coalesce(sum(g.n) filter (where g.state = 'completed'), 0)::int as c,
           coalesce(sum(g.n) filter (where g.state = 'failed'), 0)::int as f,
           coalesce(sum(g.n) filter (where g.state = 'cancelled'), 0)::int as x
      from gone g group by g.batch_id
  )
  select array_agg(s.batch_id order by s.batch_id), array_agg(s.c order by s.batch_id),
         array_agg(s.f order by s.batch_id), array_agg(s.x order by s.batch_id)
    into v_ids, v_c, v_f, v_x from sums s;
  if v_ids is not null then
    for i in 1 .. cardinality(v_ids) loop
      perform teguh._batch_account(v_ids[i], v_c[i], v_f[i], v_x[i]);
    end loop;
  end if;
  return null;
end
$$;

do $batch_trigger$
begin
  if not exists (select 1 from pg_trigger
                  where tgrelid = 'teguh.batch_ends'::regclass and tgname = 'batch_ends_at_commit') then
    create constraint trigger batch_ends_at_commit after insert on teguh.batch_ends
      deferrable initially deferred for each row execute procedure teguh._batch_ends_at_commit();
  end if;
end
$batch_trigger$;

-- Deletes up to lim batches of queue q that finished before cutoff (called
-- by cleanup_tasks, with the queue's TTL). Their items go by the same TTL.
-- Locks: those teguh.batches rows, skip locked. Notifies: nobody.
create or replace function teguh._cleanup_batches(q text, cutoff timestamptz, lim int) returns void
language sql as $$
  delete from teguh.batches b
   where b.batch_id in (select x.batch_id from teguh.batches x
                         where x.queue_name = q and x.finished_at < cutoff
                         order by x.batch_id limit lim
                           for update skip locked)
$$;

-- spawn_batch(q, task_name, items, options, on_failure, on_complete): spawns
-- one task of task_name per element of items (a JSON array: each element is
-- one task's params) as one batch, in one statement, and returns the batch's
-- id and its tasks' ids in input order. options are spawn options applied to
-- every item (not idempotency_key: the items would share it); on_failure is
-- 'continue' or 'fail_fast'; on_complete names a task spawned once in q when
-- every item ended. Raises TG002, TG004 (bad items, options, on_failure; an
-- empty batch; an on_complete task that no worker of q registered, when
-- workers registered task types there), TG005.
-- Locks: as spawn_tasks; inserts the batch's teguh.batches row.
-- Notifies: teguh_<q> 'spawn' once, when the items are ready now.
create or replace function teguh.spawn_batch(q text, task_name text, items jsonb, options jsonb default '{}',
                                             on_failure text default 'continue', on_complete text default null)
returns table(batch_id uuid, task_ids uuid[])
language plpgsql as $$
#variable_conflict use_variable
declare
  qrow record;
  v_id uuid := teguh.portable_uuidv7();
  v_items jsonb;
  v_ids uuid[];
  v_total int;
begin
  select qq.default_max_attempts, qq.has_task_types, qq.has_limits into qrow
    from teguh.queues qq where qq.queue_name = q;
  if not found then
    perform teguh._check_queue(q);
  end if;
  perform teguh._check_name('task name', task_name);
  if on_failure is null or on_failure not in ('continue', 'fail_fast') then
    raise exception 'on_failure must be ''continue'' or ''fail_fast'', not %', coalesce(quote_literal(on_failure), 'NULL')
      using errcode = 'TG004';
  end if;
  if on_complete is not null then
    perform teguh._check_name('on_complete', on_complete);
    if qrow.has_task_types and not exists (select 1 from teguh.task_types tt
                                            where tt.queue_name = q and tt.task_name = on_complete) then
      raise exception 'on_complete names task "%", which no worker of queue "%" registered', on_complete, q
        using errcode = 'TG004';
    end if;
  end if;
  if items is null or jsonb_typeof(items) <> 'array' then
    raise exception 'batch items must be a JSON array (one params value per task)' using errcode = 'TG004';
  end if;
  v_total := jsonb_array_length(items);
  if v_total = 0 then
    raise exception 'a batch needs at least one item' using errcode = 'TG004';
  end if;
  options := coalesce(options, '{}'::jsonb);
  if jsonb_typeof(options) <> 'object' then
    raise exception 'batch spawn options must be a JSON object' using errcode = 'TG004';
  end if;
  if options ?| array['task_name', 'params', 'idempotency_key'] then
    raise exception 'batch spawn options must not hold task_name, params or idempotency_key' using errcode = 'TG004';
  end if;
  perform teguh._check_payload('headers', options->'headers');
  if pg_column_size(items) > 65536 then  -- each item's params (docs/limits.md)
    perform teguh._check_payload(format('items[%s]', x.pos - 1), x.item)
       from jsonb_array_elements(items) with ordinality as x(item, pos);
  end if;
  if not qrow.has_limits and jsonb_typeof(options->'concurrency_key') = 'string' then
    perform teguh._set_has_limits(q);
  end if;
  select jsonb_agg(options || jsonb_build_object('task_name', task_name, 'params', x.item) order by x.pos)
    into v_items
    from jsonb_array_elements(items) with ordinality as x(item, pos);
  insert into teguh.batches (batch_id, queue_name, task_name, on_failure, on_complete, total, created_at)
  values (v_id, q, task_name, on_failure, on_complete, v_total, teguh.current_time());
  select array_agg(s.task_id) into v_ids
    from teguh._spawn(q, v_items, qrow.default_max_attempts, qrow.has_task_types, v_id) s;
  return query select v_id, v_ids;
end
$$;

-- get_batch(batch_id): one row: the batch's queue, task name, policies,
-- counts (pending counts sleeping items too), state and times, and the
-- on_complete task's id once spawned; no row for an unknown batch. The
-- running count is read from the items (index t_<q>_bi) while the batch has
-- not finished, in the same snapshot as the counts.
-- Locks: none. Notifies: nobody.
create or replace function teguh.get_batch(p_batch_id uuid)
returns table(batch_id uuid, queue_name text, task_name text, on_failure text, on_complete text,
              total int, pending int, running int, completed int, failed int, cancelled int, state text,
              created_at timestamptz, finished_at timestamptz, on_complete_task_id uuid)
language plpgsql stable as $$
declare
  q text;
begin
  select b.queue_name into q from teguh.batches b where b.batch_id = p_batch_id;
  if q is null then
    return;
  end if;
  return query execute format($q$
    select b.batch_id, b.queue_name, b.task_name, b.on_failure, b.on_complete, b.total,
           greatest(b.total - b.completed - b.failed - b.cancelled - r.n, 0)::int, r.n::int,
           b.completed, b.failed, b.cancelled, b.state, b.created_at, b.finished_at, b.on_complete_task_id
      from teguh.batches b
      cross join lateral (
        select case when b.finished_at is not null or %2$L then 0
                    else (select count(*) from teguh.%1$I t where t.batch_id = b.batch_id and t.state = 'running')
               end as n) r
     where b.batch_id = $1$q$, 't_' || q, to_regclass(format('teguh.%I', 't_' || q)) is null)
    using p_batch_id;
end
$$;

-- list_batches(q, state, lim, after): batches newest first (of queue q, or
-- of every queue when q is null; of one state when given), as get_batch
-- returns them, at most lim (1 to 1000) older than batch id `after` (null:
-- from the newest): keyset paging over the primary key or batches_queue_id.
-- Raises TG004 for a bad lim or state.
-- Locks: none. Notifies: nobody.
create or replace function teguh.list_batches(q text default null, p_state text default null,
                                              lim int default 50, after uuid default null)
returns table(batch_id uuid, queue_name text, task_name text, on_failure text, on_complete text,
              total int, pending int, running int, completed int, failed int, cancelled int, state text,
              created_at timestamptz, finished_at timestamptz, on_complete_task_id uuid)
language plpgsql stable as $$
begin
  if lim is null or lim < 1 or lim > 1000 then
    raise exception 'limit must be between 1 and 1000' using errcode = 'TG004';
  end if;
  if p_state is not null and p_state not in ('running', 'completed', 'failed', 'cancelled') then
    raise exception 'batch state must be running, completed, failed or cancelled, not %', quote_literal(p_state)
      using errcode = 'TG004';
  end if;
  return query
    select g.*
      from (select b.batch_id from teguh.batches b
             where (q is null or b.queue_name = q) and (after is null or b.batch_id < after)
               and (p_state is null or b.state = p_state)
             order by b.batch_id desc limit lim) x
      cross join lateral teguh.get_batch(x.batch_id) g
     order by x.batch_id desc;
end
$$;

-- batch_results(batch_id, lim, after, state): the batch's items (task id,
-- state, attempts, result, failure_reason, finished_at) in task id order, at
-- most lim (1 to 1000) after task id `after` (null: from the first): keyset
-- paging over index t_<q>_bi; with state, only items in that state. Items
-- removed by cleanup_tasks are not listed.
-- Raises TGB01 for an unknown batch, TG004 for a bad lim.
-- Locks: none. Notifies: nobody.
create or replace function teguh.batch_results(p_batch_id uuid, lim int default 100, after uuid default null,
                                               p_state text default null)
returns table(task_id uuid, state text, attempts int, result jsonb, failure_reason jsonb,
              finished_at timestamptz)
language plpgsql stable as $$
declare
  q text;
begin
  if lim is null or lim < 1 or lim > 1000 then
    raise exception 'limit must be between 1 and 1000' using errcode = 'TG004';
  end if;
  select b.queue_name into q from teguh.batches b where b.batch_id = p_batch_id;
  if q is null then
    raise exception 'batch % not found', p_batch_id using errcode = 'TGB01';
  end if;
  if to_regclass(format('teguh.%I', 't_' || q)) is null then
    return;
  end if;
  return query execute format($q$
    select t.task_id, t.state, t.attempts, t.result, t.failure_reason, t.finished_at
      from teguh.%I t
     where t.batch_id = $1 and ($2::uuid is null or t.task_id > $2) and ($4::text is null or t.state = $4)
     order by t.batch_id, t.task_id
     limit $3$q$, 't_' || q)
    using p_batch_id, after, lim, p_state;
end
$$;

-- ---------------------------------------------------------------------------
-- Section: Operations (read side)
-- ---------------------------------------------------------------------------
-- What an operator reads (docs/operations.md): one task in full
-- (get_task), task lists (list_tasks), a queue's counts (queue_stats), the
-- attempt history of failed attempts (a_<q>) and the registry of running
-- workers (teguh.workers). None of it costs the claim, spawn or complete
-- path of a task that succeeds: the attempt history is written on the
-- failure path only (teguh._fail, fail_run_non_retryable), the registry by
-- each worker's heartbeat (one statement per beat and worker, not per run),
-- and the counts read p_, r_, w_ and a_ rows instead of an index on t_<q>.state
-- (which would stop claims and completions from being HOT updates).

-- The registry of running workers: one row per Worker.run(), keyed by a
-- random instance id (two workers of one process share a worker_id). A row
-- is written at start and by every heartbeat, which moves expires_at to a
-- few beats ahead; a clean stop deletes it. Rows past expires_at belong to
-- dead workers: every beat of another worker deletes them, and list_workers
-- never shows them.
create table if not exists teguh.workers (
  instance_id uuid primary key,
  worker_id text not null,
  host text,
  pid int,
  queues text[] not null,
  concurrency int not null,
  running int not null default 0,
  teguh_version text,
  app_version text,
  started_at timestamptz not null,
  last_seen_at timestamptz not null,
  expires_at timestamptz not null
);

-- Completions committed by workers, per queue and 10-second bucket, added by
-- the heartbeats (each reports what it completed since its last beat): the
-- "completed in the last minute and hour" of queue_stats without an index
-- on t_<q>.finished_at. Buckets older than two hours are deleted by beats.
create table if not exists teguh.throughput (
  queue_name text not null,
  bucket timestamptz not null,
  completed bigint not null default 0,
  primary key (queue_name, bucket)
);

-- Creates (or upgrades) a queue's attempt history a_<q>: one row per failed
-- attempt (a handler's error, a timeout, a lease that expired, a release at
-- shutdown), the last 25 per task. `final` marks the attempt that failed the
-- task for good, while it stays failed (retry_task clears it): so a failed
-- task has exactly one final row, and list_tasks(state => 'failed') and
-- queue_stats walk those rows instead of t_<q>. Created for an existing queue, it is filled with
-- one final row per task already failed (from its failure_reason), so the
-- failed list is complete from the start. _ensure_queue_tables calls it.
-- Locks: none when the table exists; otherwise creates it (and reads t_<q>).
create or replace function teguh._ensure_ops_tables(q text) returns void
language plpgsql as $$
begin
  -- list_tasks(task_name => ...): task_name and task_id never change, so
  -- claims and completions stay HOT; a spawn adds one entry
  perform teguh._ensure_index('(task_name, task_id)', 't_' || q || '_tn', 't_' || q);
  if to_regclass(format('teguh.%I', 'a_' || q)) is null then
    perform teguh._create_attempts_table(q);
  end if;
  -- the failed tasks, newest first (list_tasks), and counted (queue_stats)
  perform teguh._ensure_index('(task_id) where final', 'a_' || q || '_ft', 'a_' || q);
  -- failed in the last minute and hour (queue_stats)
  perform teguh._ensure_index('(ended_at) where final', 'a_' || q || '_fe', 'a_' || q);
end
$$;

-- Creates a_<q>, and fills it for an existing queue (see _ensure_ops_tables).
create or replace function teguh._create_attempts_table(q text) returns void
language plpgsql as $$
begin
  execute format($ddl$
    create table teguh.%I (
      task_id uuid not null,
      run_id uuid not null,
      attempt int not null,
      worker_id text,
      started_at timestamptz,
      ended_at timestamptz not null,
      reason jsonb,
      final boolean not null default false,
      primary key (task_id, run_id)
    )$ddl$, 'a_' || q);
  -- tasks failed before the history existed: their last failure, as a final attempt
  execute format($q$
    insert into teguh.%1$I (task_id, run_id, attempt, worker_id, ended_at, reason, final)
    select t.task_id, coalesce(t.last_run_id, t.task_id), t.attempts, t.failure_reason->>'worker_id',
           coalesce(t.finished_at, t.enqueued_at), t.failure_reason, true
      from teguh.%2$I t where t.state = 'failed'$q$, 'a_' || q, 't_' || q);
end
$$;

-- Records a failed attempt of the run p_run_id (whose r_ row still exists:
-- callers call it before ending the lease) and keeps the task's last 25.
-- final: this failure ends the task (failed for good).
-- Locks: none beyond the caller's (inserts an a_ row, deletes older ones).
create or replace function teguh._record_attempt(
  q text, p_run_id uuid, p_task_id uuid, p_attempt int, p_reason jsonb, now_ts timestamptz, final boolean
) returns void
language plpgsql as $$
begin
  execute format($q$
    insert into teguh.%1$I (task_id, run_id, attempt, worker_id, started_at, ended_at, reason, final)
    select $2, $1, $3, r.claimed_by, r.claimed_at, $4, $5, $6
      from (select 1) one left join teguh.%2$I r on r.run_id = $1
    on conflict (task_id, run_id) do update set ended_at = excluded.ended_at, reason = excluded.reason,
      final = excluded.final$q$, 'a_' || q, 'r_' || q)
    using p_run_id, p_task_id, p_attempt, now_ts, p_reason, coalesce(final, false);
  if p_attempt > 25 then
    execute format($q$
      delete from teguh.%1$I a
       where a.task_id = $1
         and a.run_id < (select b.run_id from teguh.%1$I b where b.task_id = $1
                          order by b.run_id desc offset 24 limit 1)$q$, 'a_' || q)
      using p_task_id;
  end if;
end
$$;

-- A failed task retried in place is no longer failed: its final attempt
-- becomes an ordinary one (retry_task calls it). Locks: its a_ rows.
create or replace function teguh._clear_final_attempt(q text, p_task_id uuid) returns void
language plpgsql as $$
begin
  execute format('update teguh.%I set final = false where task_id = $1 and final', 'a_' || q) using p_task_id;
end
$$;

-- get_task(q, task_id): everything known about one task: its row, the run
-- holding it (claimed_by, claimed_at; null when none), what it waits for
-- (wake_at, awaited_event, wait_step as in get_task_info), its steps (a JSON
-- array of {name, value, status, kind, updated_at}, oldest first) and its
-- attempt history (a JSON array of {attempt, run_id, worker_id, started_at,
-- ended_at, reason, final}, oldest first, the last 25 failed attempts).
-- Reads the steps of any task, with or without a lease.
-- Raises TG002 for an unknown queue, TG003 for an unknown task.
-- Locks: none (reads only). Notifies: nobody.
create or replace function teguh.get_task(q text, p_task_id uuid)
returns table(task_id uuid, task_name text, params jsonb, headers jsonb, priority int, state text,
              attempts int, max_attempts int, snoozes int, enqueued_at timestamptz,
              first_started_at timestamptz, finished_at timestamptz, available_at timestamptz,
              result jsonb, failure_reason jsonb, cancelled_at timestamptz, idempotency_key text,
              concurrency_key text, claimed_by text, claimed_at timestamptz, claim_expires_at timestamptz,
              wake_at timestamptz, awaited_event text, wait_step text, steps jsonb, attempt_history jsonb,
              parent_task_id uuid, progress jsonb)
language plpgsql stable as $$
#variable_conflict use_variable
declare
  n int;
begin
  perform teguh._check_queue(q);
  return query execute format($q$
    select t.task_id, t.task_name, t.params, t.headers, t.priority, t.state, t.attempts, t.max_attempts,
           t.snoozes, t.enqueued_at, t.first_started_at, t.finished_at, t.available_at, t.result,
           t.failure_reason, t.cancelled_at, t.idempotency_key, t.concurrency_key,
           r.claimed_by, r.claimed_at, r.claim_expires_at, t.available_at, t.wake_event,
           case
             when t.state <> 'sleeping' then null
             when t.wake_event is not null then
               (select w.step_name from teguh.%3$I w where w.task_id = t.task_id)
             else
               (select c.checkpoint_name from teguh.%4$I c
                 where c.task_id = t.task_id and c.kind = 'sleep'
                   and (c.state->>'$teguh_sleep_until')::timestamptz = t.available_at
                 order by c.checkpoint_name limit 1)
           end,
           coalesce((select jsonb_agg(jsonb_build_object(
                              'name', c.checkpoint_name, 'value', c.state, 'status', c.status,
                              'kind', c.kind, 'updated_at', c.updated_at)
                            order by c.updated_at, c.checkpoint_name)
                       from teguh.%4$I c where c.task_id = t.task_id), '[]'::jsonb),
           coalesce((select jsonb_agg(jsonb_build_object(
                              'attempt', a.attempt, 'run_id', a.run_id, 'worker_id', a.worker_id,
                              'started_at', a.started_at, 'ended_at', a.ended_at, 'reason', a.reason,
                              'final', a.final)
                            order by a.run_id)
                       from teguh.%5$I a where a.task_id = t.task_id), '[]'::jsonb),
           t.parent_task_id, t.progress
      from teguh.%1$I t left join teguh.%2$I r on r.task_id = t.task_id
     where t.task_id = $1$q$,
    't_' || q, 'r_' || q, 'w_' || q, 'c_' || q, 'a_' || q)
    using p_task_id;
  get diagnostics n = row_count;
  if n = 0 then
    raise exception 'task % not found in queue "%"', p_task_id, q using errcode = 'TG003';
  end if;
end
$$;

-- list_tasks(q, state, task_name, since, until, lim, after): up to lim
-- tasks (1 to 1000), newest first (by task id, a UUIDv7 of the enqueue
-- time), optionally of one state and one task name, enqueued in
-- [since, until), and with ids below `after` (keyset paging: pass the last
-- id of the previous page). Rows without steps or attempt history.
-- Each state is found through rows that exist only for it, so no index on
-- t_<q>.state is needed: pending through p_<q> (and the delayed through
-- index t_<q>_av), running through r_<q>, sleeping through t_<q>_av and
-- w_<q>, failed through the final rows of a_<q>; completed and cancelled
-- (and no state) walk t_<q>'s primary key backwards; a task name uses
-- index t_<q>_tn. Raises TG004 for a bad state or limit.
-- Locks: none (reads only). Notifies: nobody.
create or replace function teguh.list_tasks(
  q text, p_state text default null, p_task_name text default null, p_since timestamptz default null,
  p_until timestamptz default null, p_limit int default 50, p_after uuid default null
)
returns table(task_id uuid, task_name text, params jsonb, headers jsonb, priority int, state text,
              attempts int, max_attempts int, snoozes int, enqueued_at timestamptz,
              first_started_at timestamptz, finished_at timestamptz, available_at timestamptz,
              result jsonb, failure_reason jsonb, cancelled_at timestamptz, wake_event text,
              parent_task_id uuid, progress jsonb)
language plpgsql stable as $$
#variable_conflict use_variable
declare
  lo uuid;
  hi uuid;
  bounds text := 'true';
  branch text;
  t_name text;
  sources text[];
  filters text := '';
begin
  perform teguh._check_queue(q);
  if p_state is not null
     and p_state not in ('pending', 'running', 'sleeping', 'completed', 'failed', 'cancelled') then
    raise exception 'state must be one of pending, running, sleeping, completed, failed, cancelled, not %',
      quote_literal(p_state) using errcode = 'TG004';
  end if;
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'limit must be between 1 and 1000, not %', coalesce(p_limit::text, 'null')
      using errcode = 'TG004';
  end if;
  -- ids bound the enqueue time at millisecond precision; the exact test follows
  if p_since is not null then
    lo := teguh._uuidv7_floor(p_since);
  end if;
  if p_until is not null then
    hi := teguh._uuidv7_floor(p_until + interval '1 millisecond');
  end if;
  if p_after is not null and (hi is null or p_after < hi) then
    hi := p_after;
  end if;
  -- The values go into the text as literals, not parameters, and only the
  -- bounds given: the plan must see the limit and the real range (a generic
  -- plan, or a range over every id, sorts every candidate instead).
  if lo is not null then
    bounds := bounds || format(' and %%1$s.task_id >= %L::uuid', lo);
  end if;
  if hi is not null then
    bounds := bounds || format(' and %%1$s.task_id < %L::uuid', hi);
  end if;
  if p_state is not null then
    filters := filters || format(' and t.state = %L', p_state);
  end if;
  if p_task_name is not null then
    filters := filters || format(' and t.task_name = %L', p_task_name);
  end if;
  if p_since is not null then
    filters := filters || format(' and t.enqueued_at >= %L::timestamptz', p_since);
  end if;
  if p_until is not null then
    filters := filters || format(' and t.enqueued_at < %L::timestamptz', p_until);
  end if;
  -- Each source of the state's tasks is walked newest first by an index and
  -- stops after p_limit matches; the union of those (at most two) pages is
  -- then cut to p_limit. One plain walk of t_<q>'s primary key without a state.
  branch := format($b$
    (select t.task_id, t.task_name, t.params, t.headers, t.priority, t.state, t.attempts, t.max_attempts,
            t.snoozes, t.enqueued_at, t.first_started_at, t.finished_at, t.available_at, t.result,
            t.failure_reason, t.cancelled_at, t.wake_event, t.parent_task_id, t.progress
       from %%1$s
      where %%2$s%1$s
      order by %%3$s.task_id desc
      limit %2$s)$b$, replace(filters, '%', '%%'), p_limit);  -- filters are formatted once more
  t_name := format('teguh.%I', 't_' || q);
  sources := case p_state
    when 'pending' then array[
      format(branch, format('teguh.%I p join %s t on t.task_id = p.task_id', 'p_' || q, t_name),
             format(bounds, 'p'), 'p'),
      format(branch, t_name || ' t', 't.available_at is not null and ' || format(bounds, 't'), 't')]
    when 'running' then array[
      format(branch, format('teguh.%I r join %s t on t.task_id = r.task_id', 'r_' || q, t_name),
             format(bounds, 'r'), 'r')]
    when 'sleeping' then array[
      format(branch, t_name || ' t', 't.available_at is not null and ' || format(bounds, 't'), 't'),
      format(branch, format('teguh.%I w join %s t on t.task_id = w.task_id', 'w_' || q, t_name),
             format(bounds, 'w'), 'w')]
    when 'failed' then array[
      format(branch, format('teguh.%I a join %s t on t.task_id = a.task_id', 'a_' || q, t_name),
             'a.final and ' || format(bounds, 'a'), 'a')]
    else array[format(branch, t_name || ' t', format(bounds, 't'), 't')]
  end;
  if cardinality(sources) = 1 then
    return query execute sources[1];
  else
    -- union, not union all: an event wait with a timeout is in both sources
    return query execute format('select * from (%s) x order by x.task_id desc limit %s',
                                array_to_string(sources, ' union '), p_limit);
  end if;
end
$$;

-- queue_stats(q): a queue's counts. Exact: pending (claimable now plus
-- delayed), running, sleeping, failed, the oldest claimable task's wait in
-- seconds, failed in the last minute and hour (from a_<q>), completed in the
-- last minute and hour (from teguh.throughput, which the workers' heartbeats
-- fill: completions by teguh workers, up to one beat late). completed and
-- cancelled are counted exactly on a queue of up to 100,000 tasks and
-- estimated from the planner's statistics above that (estimated = true):
-- counting a million rows takes longer than a dashboard can wait.
-- Locks: none (reads only). Notifies: nobody.
create or replace function teguh.queue_stats(q text)
returns table(pending bigint, running bigint, sleeping bigint, completed bigint, failed bigint,
              cancelled bigint, oldest_pending_seconds double precision,
              completed_last_minute bigint, completed_last_hour bigint,
              failed_last_minute bigint, failed_last_hour bigint, estimated boolean)
language plpgsql stable as $$
#variable_conflict use_variable
declare
  now_ts timestamptz := teguh.current_time();
  total double precision;
  frac record;
begin
  perform teguh._check_queue(q);
  execute format('select count(*), extract(epoch from $1 - min(p.available_at))::float8 from teguh.%I p',
                 'p_' || q)
    into pending, oldest_pending_seconds using now_ts;
  execute format('select count(*) from teguh.%I d where d.available_at is not null and d.state = ''pending''',
                 't_' || q)
    into total;
  pending := pending + total::bigint;
  execute format('select count(*) from teguh.%I r', 'r_' || q) into running;
  execute format($q$
    select count(*) from (select s.task_id from teguh.%1$I s where s.available_at is not null
                          union select w.task_id from teguh.%2$I w) ids
      join teguh.%1$I t on t.task_id = ids.task_id where t.state = 'sleeping'$q$, 't_' || q, 'w_' || q)
    into sleeping;
  execute format('select count(*) from teguh.%I a where a.final', 'a_' || q) into failed;
  execute format($q$
    select count(*) filter (where a.ended_at >= $1 - interval '1 minute'), count(*)
      from teguh.%I a where a.final and a.ended_at >= $1 - interval '1 hour'$q$, 'a_' || q)
    into failed_last_minute, failed_last_hour using now_ts;
  select coalesce(sum(tp.completed) filter (where tp.bucket >= now_ts - interval '1 minute'), 0),
         coalesce(sum(tp.completed), 0)
    into completed_last_minute, completed_last_hour
    from teguh.throughput tp
   where tp.queue_name = q and tp.bucket >= now_ts - interval '1 hour';
  select greatest(c.reltuples, 0) into total from pg_class c where c.oid = format('teguh.%I', 't_' || q)::regclass;
  estimated := total > 100000;
  if estimated then
    -- the share of each terminal state among the rows ANALYZE sampled
    select coalesce(sum(f.freq) filter (where f.val = 'completed'), 0) as completed,
           coalesce(sum(f.freq) filter (where f.val = 'cancelled'), 0) as cancelled
      into frac
      from pg_stats s, unnest(s.most_common_vals::text::text[], s.most_common_freqs) as f(val, freq)
     where s.schemaname = 'teguh' and s.tablename = 't_' || q and s.attname = 'state';
    completed := round(coalesce(frac.completed, 0) * total)::bigint;
    cancelled := round(coalesce(frac.cancelled, 0) * total)::bigint;
  else
    execute format('select count(*) filter (where t.state = ''completed''), '
                   'count(*) filter (where t.state = ''cancelled'') from teguh.%I t', 't_' || q)
      into completed, cancelled;
  end if;
  return next;
end
$$;

-- worker_heartbeat(instance_id, info, ttl_seconds, completed): a worker's
-- registration and every heartbeat of it, one statement: upserts its row of
-- teguh.workers from info ({worker_id, host, pid, queues, concurrency,
-- running, teguh_version, app_version}; started_at is set by the first
-- call), moves its expires_at to now + ttl_seconds, adds completed ({queue:
-- runs completed since the last beat}) to teguh.throughput, and deletes the
-- rows of workers whose expires_at passed (skip locked) and throughput
-- buckets over two hours old.
-- Locks: its own teguh.workers row (waits, by the upsert); rows of dead
--   workers (skip locked); its queues' current throughput rows (waits).
-- Notifies: nobody.
create or replace function teguh.worker_heartbeat(
  p_instance_id uuid, info jsonb, ttl_seconds double precision, completed jsonb default null
) returns void
language plpgsql as $$
declare
  now_ts timestamptz := teguh.current_time();
begin
  if p_instance_id is null or jsonb_typeof(info) is distinct from 'object' or info->>'worker_id' is null
     or ttl_seconds is null or ttl_seconds <= 0 then
    raise exception 'worker_heartbeat needs an instance id, an info object with worker_id and a ttl > 0'
      using errcode = 'TG004';
  end if;
  insert into teguh.workers as w (instance_id, worker_id, host, pid, queues, concurrency, running,
                                  teguh_version, app_version, started_at, last_seen_at, expires_at)
  values (p_instance_id, info->>'worker_id', info->>'host', (info->>'pid')::int,
          coalesce((select array_agg(x) from jsonb_array_elements_text(info->'queues') x), '{}'),
          coalesce((info->>'concurrency')::int, 0), coalesce((info->>'running')::int, 0),
          info->>'teguh_version', info->>'app_version', now_ts, now_ts,
          now_ts + make_interval(secs => ttl_seconds))
  on conflict (instance_id) do update
     set running = excluded.running, last_seen_at = now_ts, expires_at = excluded.expires_at;
  if completed is not null and completed <> '{}'::jsonb then
    insert into teguh.throughput as tp (queue_name, bucket, completed)
    select c.key, to_timestamp(floor(extract(epoch from now_ts) / 10) * 10), c.value::bigint
      from jsonb_each_text(completed) c
     where c.value::bigint > 0
    on conflict (queue_name, bucket) do update set completed = tp.completed + excluded.completed;
  end if;
  delete from teguh.workers w
   where w.instance_id in (select d.instance_id from teguh.workers d
                            where d.expires_at < now_ts for update skip locked);
  delete from teguh.throughput tp where tp.bucket < now_ts - interval '2 hours';
end
$$;

-- unregister_worker(instance_id): a cleanly stopping worker deletes its row.
-- Locks: that teguh.workers row (waits). Notifies: nobody.
create or replace function teguh.unregister_worker(p_instance_id uuid) returns void
language sql as $$ delete from teguh.workers where instance_id = p_instance_id $$;

-- list_workers(): the live workers (expires_at not passed), oldest first.
-- Locks: none (reads only). Notifies: nobody.
create or replace function teguh.list_workers()
returns table(instance_id uuid, worker_id text, host text, pid int, queues text[], concurrency int,
              running int, teguh_version text, app_version text, started_at timestamptz,
              last_seen_at timestamptz, expires_at timestamptz)
language sql stable as $$
  select w.instance_id, w.worker_id, w.host, w.pid, w.queues, w.concurrency, w.running, w.teguh_version,
         w.app_version, w.started_at, w.last_seen_at, w.expires_at
    from teguh.workers w
   where w.expires_at >= teguh.current_time()
   order by w.started_at, w.instance_id
$$;

-- ---------------------------------------------------------------------------
-- Section: observability (on_failure, queue_depth)
-- ---------------------------------------------------------------------------

-- Spawns the on_failure task of a task that failed for good, when its task
-- type names one (teguh.task_types.on_failure, written by register_task_types):
-- in the failure's transaction, so the reaction happens exactly once with it.
-- Its params: {"task_id", "task_name", "queue", "failure"} of the failed task.
-- A target queue that no longer exists is skipped with a warning (the failure
-- itself must still be recorded). Called by _fail_for_good, whose caller
-- holds the task's t_ row lock. Returns nothing.
-- Locks: what spawn_task takes on the target queue (a new t_ and p_ row).
-- Notifies: teguh_<target queue> 'spawn', through spawn_task.
create or replace function teguh._on_failure_spawn(q text, p_task_id uuid, p_reason jsonb) returns void
language plpgsql as $$
declare
  tn text;
  target jsonb;
begin
  execute format('select task_name from teguh.%I where task_id = $1', 't_' || q) into tn using p_task_id;
  select tt.on_failure into target from teguh.task_types tt where tt.queue_name = q and tt.task_name = tn;
  if target is null then
    return;
  end if;
  if not exists (select 1 from teguh.queues where queue_name = target->>'queue') then
    raise warning 'teguh: on_failure task % of % not spawned: queue % does not exist',
      target->>'task_name', tn, target->>'queue';
    return;
  end if;
  perform teguh.spawn_task(target->>'queue', target->>'task_name',
                           jsonb_build_object('task_id', p_task_id, 'task_name', tn, 'queue', q,
                                              'failure', p_reason));
end
$$;

-- queue_depth(q): how many of queue q's tasks are ready (p_ rows), running
-- (r_ rows), scheduled (sleeping, delayed or waiting to retry: t_ rows with
-- available_at, index t_<q>_av) and waiting for an event (w_ rows). Finished
-- tasks are not counted: that would scan t_. What a worker's metrics report at
-- each scrape (docs/metrics.md). Raises TG002 for an unknown queue.
-- Locks: none. Notifies: nobody.
create or replace function teguh.queue_depth(q text)
returns table(ready bigint, running bigint, scheduled bigint, waiting bigint)
language plpgsql stable as $$
begin
  perform teguh._check_queue(q);
  return query execute format(
    'select (select count(*) from teguh.%I), (select count(*) from teguh.%I), '
    '(select count(*) from teguh.%I where available_at is not null), (select count(*) from teguh.%I)',
    'p_' || q, 'r_' || q, 't_' || q, 'w_' || q);
end
$$;

-- ---------------------------------------------------------------------------
-- Section: dashboard
-- ---------------------------------------------------------------------------
-- Completions of ordinary tasks notify nobody (teguh_done is for tasks
-- spawned with notify_done). A running dashboard (teguh.dashboard) wants to
-- hear them to update its pages, and nothing else should pay for that: the
-- dashboard keeps a row per queue it shows in teguh.watched_queues, with
-- watched_until a minute ahead, refreshed while it watches. The terminal
-- transitions (and a failure's retry) call _notify_watch(q), one probe of
-- this table's primary key, which sends teguh_watch '<q>' only while such a
-- row is current. PostgreSQL folds identical notifications of a transaction
-- into one, so a batch of completions sends one. Without a dashboard the
-- table is empty and nothing is sent.
create table if not exists teguh.watched_queues (
  queue_name text primary key,
  watched_until timestamptz not null
);

-- Sends teguh_watch '<q>' when a dashboard watches queue q now.
-- PL/pgSQL, not SQL: a SQL function called from PL/pgSQL (every terminal
-- transition does) is parsed and planned again on every call, where
-- PL/pgSQL keeps the probe's plan for the session.
create or replace function teguh._notify_watch(q text) returns void
language plpgsql as $$
begin
  perform pg_notify('teguh_watch', q) from teguh.watched_queues
   where queue_name = q and watched_until > now();
end
$$;

-- watch_queues(queues, seconds): marks queues as watched for the next
-- seconds (0 to 3600): until then their completions, failures, retries and
-- cancels notify teguh_watch '<q>'. A queue already watched for longer keeps
-- its later end (several dashboards share a row); expired rows are deleted.
-- Unknown queue names are ignored. Returns nothing.
-- Locks: the queues' watched_queues rows (waits, by the upsert).
-- Notifies: nobody.
create or replace function teguh.watch_queues(queues text[], seconds int default 60) returns void
language plpgsql as $$
begin
  if seconds is null or seconds < 0 or seconds > 3600 then
    raise exception 'watch seconds must be between 0 and 3600, not %', coalesce(seconds::text, 'NULL')
      using errcode = 'TG004';
  end if;
  delete from teguh.watched_queues where watched_until <= now();
  insert into teguh.watched_queues as w (queue_name, watched_until)
  select distinct qs.queue_name, now() + make_interval(secs => seconds)
    from teguh.queues qs
   where qs.queue_name = any(queues) and seconds > 0
   order by 1
  on conflict (queue_name) do update set watched_until = greatest(w.watched_until, excluded.watched_until);
end
$$;

-- Section: children listing
-- ---------------------------------------------------------------------------
-- A parent's children may live on any queue (their t_<q> rows carry
-- parent_task_id and parent_queue, section "Composition"), so listing them
-- visits every queue's t_ table, each through its partial index on
-- parent_task_id (only child rows are in it: the claim, spawn and complete
-- paths of plain tasks do not maintain it). No new index or column.

-- list_children(q, task_id, lim, after): up to lim (1 to 1000) children of
-- task task_id of queue q, from every queue, oldest first (by task id, a
-- UUIDv7 of the spawn time), with ids above `after` (keyset paging: pass the
-- last id of the previous page). Rows as list_tasks's, plus queue_name, the
-- child's queue. Raises TG002 for an unknown queue, TG003 for an unknown
-- task, TG004 for a bad limit.
-- Locks: none (reads only). Notifies: nobody.
create or replace function teguh.list_children(
  q text, p_task_id uuid, p_limit int default 50, p_after uuid default null
)
returns table(queue_name text, task_id uuid, task_name text, params jsonb, headers jsonb, priority int,
              state text, attempts int, max_attempts int, snoozes int, enqueued_at timestamptz,
              first_started_at timestamptz, finished_at timestamptz, available_at timestamptz,
              result jsonb, failure_reason jsonb, cancelled_at timestamptz, wake_event text,
              parent_task_id uuid, progress jsonb)
language plpgsql stable as $$
#variable_conflict use_variable
declare
  found boolean;
  branches text[];
begin
  perform teguh._check_queue(q);
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'limit must be between 1 and 1000, not %', coalesce(p_limit::text, 'null')
      using errcode = 'TG004';
  end if;
  execute format('select exists (select 1 from teguh.%I where task_id = $1)', 't_' || q)
    into found using p_task_id;
  if not found then
    raise exception 'task % not found in queue "%"', p_task_id, q using errcode = 'TG003';
  end if;
  -- one branch per queue, each cut to the limit by its index, then merged
  select array_agg(format($b$
    (select %1$L::text, t.task_id, t.task_name, t.params, t.headers, t.priority, t.state, t.attempts,
            t.max_attempts, t.snoozes, t.enqueued_at, t.first_started_at, t.finished_at, t.available_at,
            t.result, t.failure_reason, t.cancelled_at, t.wake_event, t.parent_task_id, t.progress
       from teguh.%2$I t
      where t.parent_task_id = $1 and t.parent_queue = $2 and ($3::uuid is null or t.task_id > $3)
      order by t.task_id
      limit %3$s)$b$, qs.queue_name, 't_' || qs.queue_name, p_limit) order by qs.queue_name)
    into branches
    from teguh.queues qs;
  return query execute
    'select * from (' || array_to_string(branches, ' union all ') || ') c order by 2 limit ' || p_limit
    using p_task_id, q, p_after;
end
$$;

-- ---------------------------------------------------------------------------
-- Section: Per-queue step path (docs/benchmarks.md, "Durable steps")
-- ---------------------------------------------------------------------------

-- A step's checkpoint is the one call a durable task makes per step, so, like
-- the hot path above, it runs in a function of its own queue written with
-- static SQL: PL/pgSQL caches the plans of its lease probe and its insert for
-- the session, where set_task_checkpoint_state's dynamic SQL parsed and
-- planned both on every step. set_task_checkpoint_state checks its arguments
-- and calls it; set_task_checkpoint_states, the client's group commit of
-- steps, calls _steps_<q>. Placeholders: %1$I _step_<q>, %2$I r_<q>,
-- %3$I c_<q>, %4$L the queue name, %5$I _steps_<q>. create_queue (and every
-- install, for existing queues) generates them; internal, never granted
-- (teguh._lock_down_queue revokes PUBLIC's execute); drop_queue drops them.
create or replace function teguh._step_path_sql(q text) returns text
language sql immutable as $outer$
  select format($tmpl$
-- _step_<q>(task_id, step_name, state, owner_run_id, extend_claim_by): the
-- work of set_task_checkpoint_state. The lease row lock fences the write:
-- cancel, fail and lease recovery all take it before touching the task, and
-- a row lock leaves no dead tuple. The lease is extended only when that
-- gains more than a tenth of extend_claim_by (a lease of claim_timeout 0
-- never expires: null stays null); rewriting the r_ row changes the indexed
-- claim_expires_at, a non-HOT update. The first committed write of a step
-- wins; later ones change nothing.
-- Locks: the run's r_ row (waits; FOR UPDATE, then the lease update when
--   extending); inserts the c_ row.
-- Notifies: nobody.
create or replace function teguh.%1$I(p_task_id uuid, p_step_name text, p_state jsonb, p_run_id uuid,
                                       p_extend int)
returns void
language plpgsql as $body$
#variable_conflict use_column
declare
  now_ts timestamptz := teguh.current_time();
  v_expires timestamptz;
begin
  select r.claim_expires_at into v_expires
    from teguh.%2$I r where r.run_id = p_run_id and r.task_id = p_task_id
     for update;
  if not found then
    perform teguh._raise_lease_error(%4$L, p_run_id);
  end if;
  if p_extend > 0 and v_expires < now_ts + make_interval(secs => p_extend * 0.9::float8) then
    update teguh.%2$I r
       set claim_expires_at = now_ts + make_interval(secs => p_extend), heartbeats = r.heartbeats + 1
     where r.run_id = p_run_id;
  end if;
  insert into teguh.%3$I (task_id, checkpoint_name, state, status, kind, owner_run_id, updated_at)
  values (p_task_id, p_step_name, coalesce(p_state, 'null'::jsonb), 'committed', 'step', p_run_id, now_ts)
  on conflict (task_id, checkpoint_name) do nothing;
end
$body$;

-- _steps_<q>(task_ids, step_names, states, owner_run_ids, extend_claim_by):
-- the work of set_task_checkpoint_states: _step_<q> for many steps (of
-- different runs) in one statement and one commit. It never waits for a
-- lease row: a row another transaction holds is skipped, like a run that
-- holds no lease, and such items come back not ok, written nowhere (the
-- client then writes each alone, which waits and raises what _step_<q>
-- raises). So it can join no deadlock. Returns one row per item, by its
-- position (1-based): ok when written (or already there) under its lease.
-- Locks: the items' r_ rows (skip locked; the lease update for those
--   extended); inserts their c_ rows.
-- Notifies: nobody.
create or replace function teguh.%5$I(p_task_ids uuid[], p_step_names text[], p_states jsonb[],
                                       p_run_ids uuid[], p_extend int)
returns table(i int, ok boolean)
language plpgsql as $body$
#variable_conflict use_column
declare
  now_ts timestamptz := teguh.current_time();
  v_runs uuid[];
  v_tasks uuid[];
  v_ext uuid[];
begin
  select array_agg(l.run_id), array_agg(l.task_id),
         array_agg(l.run_id) filter (where p_extend > 0
                                       and l.claim_expires_at < now_ts + make_interval(secs => p_extend * 0.9::float8))
    into v_runs, v_tasks, v_ext
    from (select r.run_id, r.task_id, r.claim_expires_at from teguh.%2$I r
           where r.run_id = any(p_run_ids)
             for update skip locked) l;
  if v_ext is not null then
    update teguh.%2$I r
       set claim_expires_at = now_ts + make_interval(secs => p_extend), heartbeats = r.heartbeats + 1
     where r.run_id = any(v_ext);
  end if;
  return query
    with items as (
      select u.i::int as i, u.task_id, u.step_name, u.state, u.run_id,
             exists (select 1 from unnest(v_runs, v_tasks) as h(run_id, task_id)
                      where h.run_id = u.run_id and h.task_id = u.task_id) as ok
        from unnest(p_task_ids, p_step_names, p_states, p_run_ids)
             with ordinality as u(task_id, step_name, state, run_id, i)
    ), ins as (
      insert into teguh.%3$I (task_id, checkpoint_name, state, status, kind, owner_run_id, updated_at)
      select items.task_id, items.step_name, coalesce(items.state, 'null'::jsonb), 'committed', 'step',
             items.run_id, now_ts
        from items where items.ok
       order by items.i
      on conflict (task_id, checkpoint_name) do nothing
    )
    select items.i, items.ok from items order by items.i;
end
$body$;
$tmpl$,
    '_step_' || q, 'r_' || q, 'c_' || q, q, '_steps_' || q)
$outer$;

-- ---------------------------------------------------------------------------
-- Section: deadline cascade
-- ---------------------------------------------------------------------------
-- A task the engine cancels on its own cancels its unfinished children and
-- theirs, in every queue, as cancel_task(..., children => true) does:
-- through teguh._cancel_children, the one cascade (section "Composition").
-- The engine cancels a task (1) through _cancel: its max_delay or
-- max_duration deadline passed (the sweep _enforce_deadlines), or a retry
-- would start past max_duration (_fail); (2) through _batch_cancel_rest: a
-- fail_fast batch failed and its other items are cancelled.
--
-- No column of a parent's row says it has children, so the guard is one
-- statement probing each queue's partial index t_<q>_pa (children only: it
-- is empty where composition is unused) with the cancelled task ids, run
-- only when the engine cancels tasks: never on claim, spawn or complete. A
-- task without children costs that statement and nothing else.
--
-- Locks: the caller holds the cancelled tasks' t_ rows (their p_, r_, w_
-- rows are gone); the cascade then takes each child's rows as cancel_task
-- does (waits), below the parents: the section's lock order, children
-- before parent, cannot hold here. A child ending at that very moment while
-- its parent waits for it takes the parent's rows after its own:
-- PostgreSQL's deadlock detection then rolls one of the two back (a sweep
-- runs again at the next claim or tick; a worker's completion is retried or
-- its lease expires), and that child is being cancelled anyway.

-- _cancel_cascade(q, task_ids): after the engine cancelled task_ids of queue
-- q, cancels the unfinished children of those that have some
-- (teguh._cancel_children, parents in task_id order) and deletes their open
-- child waits; else does nothing.
-- Locks: as teguh._cancel_children, for each parent with children; then the
--   parent's child_waits row (delete).
-- Notifies: as cancel_task, for each child cancelled.
create or replace function teguh._cancel_cascade(q text, p_task_ids uuid[]) returns void
language plpgsql as $$
declare
  probe text;
  parents uuid[];
  parent uuid;
begin
  select string_agg(format('select t.parent_task_id from teguh.%I t where t.parent_task_id = any($1) '
                           'and t.parent_queue = $2 and t.state not in (''completed'', ''failed'', ''cancelled'')',
                           't_' || queue_name), ' union ')
    into probe from teguh.queues;
  execute 'select array_agg(p.parent_task_id order by p.parent_task_id) from (' || probe || ') p'
    into parents using p_task_ids, q;
  if parents is null then
    return;
  end if;
  foreach parent in array parents loop
    perform teguh._cancel_children(q, parent);
    delete from teguh.child_waits w where w.parent_queue = q and w.parent_task_id = parent;
  end loop;
end
$$;

-- ---------------------------------------------------------------------------
-- Upgrade the tables of queues created by an earlier install
-- ---------------------------------------------------------------------------

do $upgrade$
declare
  qn text;
begin
  drop view if exists teguh.tasks;  -- it would pin the columns of the tables upgraded here
  for qn in select queue_name from teguh.queues order by queue_name loop
    perform teguh._ensure_queue_tables(qn);
    -- signatures of 0.1's generated functions (now with the pause and spawn defaults)
    execute format('drop function if exists teguh.%I(text, int, int)', '_claim_' || qn);
    -- 0.2's claim before flow control
    execute format('drop function if exists teguh.%I(text, int, int, boolean, text[])', '_claim_' || qn);
    execute format('drop function if exists teguh.%I(text, jsonb, jsonb)', '_spawn_' || qn);
    -- the spawn before it returned the new task's id alone (a table then)
    if exists (select 1 from pg_proc
                where oid = to_regprocedure(format('teguh.%I(text, jsonb, jsonb, int, boolean)', '_spawn_' || qn))
                  and proretset) then
      execute format('drop function teguh.%I(text, jsonb, jsonb, int, boolean)', '_spawn_' || qn);
    end if;
    -- the claim before queue_wait and lease_expired (its result columns changed)
    if exists (select 1 from pg_proc
                where oid = to_regprocedure(format('teguh.%I(text, int, int, boolean, text[], boolean)', '_claim_' || qn))
                  and not 'lease_expired' = any(proargnames)) then
      execute format('drop function teguh.%I(text, int, int, boolean, text[], boolean)', '_claim_' || qn);
    end if;
    execute teguh._hot_path_sql(qn);
    execute teguh._step_path_sql(qn);
  end loop;
  perform teguh._rebuild_tasks_view();
  perform teguh._rebuild_spawn_dispatch();
end
$upgrade$;

-- ---------------------------------------------------------------------------
-- Server-side size limit (docs/limits.md)
-- ---------------------------------------------------------------------------
-- The client refuses JSON values over its max_payload_bytes (1 MiB of text)
-- before any SQL runs. This is the backstop for direct SQL callers (a
-- producer role, say): params, headers and event payloads whose jsonb form
-- exceeds the server limit are refused with TG005. The default, 4 MiB, is
-- well above the client's, since jsonb's binary form can be larger than the
-- JSON text. Values up to 64 kB are never looked at twice, so the common
-- case costs one pg_column_size(). The owner's limit is a row of
-- teguh.settings (section "Tables").

-- Raises TG005 when val's jsonb form is over the limit (teguh.settings, default 4 MiB).
create or replace function teguh._check_payload(what text, val jsonb) returns void
language plpgsql stable as $$
declare
  size int;
  lim bigint;
begin
  if val is null then
    return;
  end if;
  size := pg_column_size(val);
  if size <= 65536 then
    return;
  end if;
  select s.value into lim from teguh.settings s where s.name = 'max_payload_bytes';
  lim := coalesce(lim, 4194304);
  if size > lim then
    raise exception '% is % bytes of jsonb, above the server limit of % bytes', what, size, lim
      using errcode = 'TG005', hint = 'the schema owner changes it with teguh.set_max_payload_bytes()';
  end if;
end
$$;

-- The owner's setting for the limit above (at least 64 kB); null restores the default.
-- Locks: its teguh.settings row (waits). Granted to no role: owner only.
-- Notifies: nobody.
create or replace function teguh.set_max_payload_bytes(n bigint) returns void
language plpgsql as $$
begin
  if n is null then
    delete from teguh.settings where name = 'max_payload_bytes';
    return;
  end if;
  if n < 65536 then
    raise exception 'max_payload_bytes must be at least 65536, not %', n using errcode = 'TG004';
  end if;
  insert into teguh.settings (name, value) values ('max_payload_bytes', n)
    on conflict (name) do update set value = excluded.value;
end
$$;

-- ---------------------------------------------------------------------------
-- Privileges and roles (docs/roles.md)
-- ---------------------------------------------------------------------------
-- Every entry point a role may be granted runs as the schema's owner
-- (SECURITY DEFINER, with search_path pinned so a caller cannot shadow a
-- name), so callers never need privileges on teguh's tables. PUBLIC may
-- execute nothing in the schema: a role can call what teguh.grant_producer,
-- grant_worker or grant_admin granted it, and nothing else. Internal
-- functions (leading underscore) and the per-queue functions are never
-- granted; they are reached only through the entry points.

-- The entry points each kind of role may call.
create or replace function teguh._role_functions(kind text) returns text[]
language plpgsql immutable as $$
declare
  producer text[] := array['version', 'current_time', 'list_queues',
                           'spawn_task', 'spawn_plain', 'spawn_tasks', 'emit_event', 'emit_event_first', 'get_task_result',
                           'get_task_info', 'list_task_types', 'get_queue_options', 'get_task_progress',
                           'publish', 'bind_topics', 'list_topic_bindings',
                           'spawn_batch', 'get_batch', 'batch_results', 'list_batches',
                           'get_task', 'list_tasks', 'queue_stats', 'list_workers'];
  worker text[] := producer || array['claim_task', 'claim_runs', 'complete_run', 'complete_runs', 'fail_run',
                                     'fail_run_non_retryable', 'snooze_run',
                                     'schedule_run', 'sleep_run', 'set_task_checkpoint_state', 'set_task_checkpoint_states',
                                     'get_task_checkpoint_state', 'get_task_checkpoint_states', 'await_event',
                                     'extend_claim', 'extend_claims', 'next_due', 'register_task_types',
                                     'spawn_children', 'await_children', 'report_progress',
                                     'worker_heartbeat', 'unregister_worker', 'queue_depth'];
  admin text[] := producer || array['create_queue', 'drop_queue', 'cancel_task', 'retry_task', 'next_due',
                                    'ticker', 'cleanup_tasks', 'cleanup_all_queues', 'start', 'stop',
                                    'set_queue_options', 'pause_queue', 'resume_queue', 'pause_task_type',
                                    'resume_task_type', 'unbind_topic', 'watch_queues'];
begin
  -- schedules (section "Section: schedules"): producers read, workers fire and upsert, admins operate
  producer := producer || array['list_schedules'];
  worker := worker || array['put_schedules', 'list_schedules', 'next_schedule_due', 'due_schedules',
                            'fire_schedule'];
  admin := admin || array['put_schedules', 'list_schedules', 'delete_schedule', 'pause_schedule',
                          'resume_schedule', 'trigger_schedule'];
  -- children listing (section "Section: children listing"): a read, like list_tasks
  producer := producer || array['list_children'];
  worker := worker || array['list_children'];
  admin := admin || array['list_children'];
  case kind
    when 'producer' then return producer;
    when 'worker' then return worker;
    when 'admin' then return admin;
    when 'all' then return worker || admin;
    else raise exception 'unknown role kind %: producer, worker or admin', quote_literal(kind)
      using errcode = 'TG004';
  end case;
end
$$;

-- Grants role_name USAGE on the schema and EXECUTE on kind's entry points.
create or replace function teguh._grant(role_name name, kind text) returns void
language plpgsql as $$
declare
  fn regprocedure;
begin
  if role_name is null or not exists (select 1 from pg_roles where rolname = role_name) then
    raise exception 'role % does not exist', coalesce(quote_ident(role_name), 'NULL') using errcode = 'TG004';
  end if;
  execute format('grant usage on schema teguh to %I', role_name);
  for fn in select p.oid::regprocedure from pg_proc p
             where p.pronamespace = 'teguh'::regnamespace and p.proname = any(teguh._role_functions(kind))
             order by 1 loop
    execute format('grant execute on function %s to %I', fn, role_name);
  end loop;
end
$$;

-- A new queue's generated functions (_claim_<q>, _spawn_<q>, ...) would be
-- executable by PUBLIC (PostgreSQL's default for functions, which a per-schema
-- ALTER DEFAULT PRIVILEGES cannot take away): create_queue calls this.
create or replace function teguh._lock_down_queue(q text) returns void
language plpgsql as $$
declare
  fn regprocedure;
begin
  for fn in select p.oid::regprocedure from pg_proc p
             where p.pronamespace = 'teguh'::regnamespace
               and p.proname like '\_%' and right(p.proname, length(q) + 1) = '_' || q loop
    execute format('revoke execute on function %s from public', fn);
  end loop;
end
$$;

-- Spawn tasks, emit events, read results: what an application needs.
-- Locks: none of teguh's tables (GRANT changes the catalog). Notifies: nobody.
create or replace function teguh.grant_producer(role_name name) returns void
language sql as $$ select teguh._grant(role_name, 'producer') $$;

-- Everything a worker process calls: claim, complete, fail, checkpoint,
-- heartbeat, sleep, events, spawn (from handlers). Not create or drop queues.
-- Locks: none of teguh's tables (GRANT changes the catalog). Notifies: nobody.
create or replace function teguh.grant_worker(role_name name) returns void
language sql as $$ select teguh._grant(role_name, 'worker') $$;

-- A producer that also manages queues and tasks: create and drop queues,
-- cancel and retry tasks, ticker, cleanup, pg_cron scheduling.
-- Locks: none of teguh's tables (GRANT changes the catalog). Notifies: nobody.
create or replace function teguh.grant_admin(role_name name) returns void
language sql as $$ select teguh._grant(role_name, 'admin') $$;

-- Takes back everything the grant functions gave a role.
-- Locks: none of teguh's tables (REVOKE changes the catalog). Notifies: nobody.
create or replace function teguh.revoke_all(role_name name) returns void
language plpgsql as $$
begin
  if role_name is null or not exists (select 1 from pg_roles where rolname = role_name) then
    raise exception 'role % does not exist', coalesce(quote_ident(role_name), 'NULL') using errcode = 'TG004';
  end if;
  execute format('revoke all on all functions in schema teguh from %I', role_name);
  execute format('revoke all on schema teguh from %I', role_name);
end
$$;

-- Grants EXECUTE on fn to every role (but the owner) that may execute model.
create or replace function teguh._grant_like(model regprocedure, fn regprocedure) returns void
language plpgsql as $$
declare
  grantee regrole;
begin
  for grantee in select distinct a.grantee::regrole from pg_proc p, aclexplode(p.proacl) a
                  where p.oid = model and a.privilege_type = 'EXECUTE'
                    and a.grantee <> 0 and a.grantee <> p.proowner loop
    execute format('grant execute on function %s to %s', fn, grantee);
  end loop;
end
$$;

do $privileges$
declare
  fn regprocedure;
begin
  -- `create or replace` above reset these attributes, so they are set on every install.
  for fn in select p.oid::regprocedure from pg_proc p
             where p.pronamespace = 'teguh'::regnamespace
               and p.proname = any(teguh._role_functions('all'))
               and p.proname not in ('version', 'current_time')  -- they touch no table
             order by 1 loop
    execute format('alter function %s security definer set search_path = pg_catalog, teguh, pg_temp', fn);
  end loop;
  revoke all on schema teguh from public;
  revoke execute on all functions in schema teguh from public;
  -- spawn_plain (0.3) goes to every role that may call spawn_task, so an
  -- upgrade needs no new grant for clients that use it in place of spawn_task
  perform teguh._grant_like('teguh.spawn_task(text, text, jsonb, jsonb)'::regprocedure,
                            'teguh.spawn_plain(text, text, jsonb)'::regprocedure);
end
$privileges$;
