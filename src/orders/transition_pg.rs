//! An order transition on PostgreSQL in one statement: the compare-and-set on the order's
//! version, the stock release (rows locked in item id order) and the timeline rows, in
//! one round trip instead of a four-statement transaction. When the version moved on,
//! nothing matches and nothing is written.

use sqlx::{FromRow, PgPool, Row};
use uuid::Uuid;

use super::group_commit::{GroupCommit, together_or_alone};
use super::store::{
    NewEvent, OrderRecord, OrderRow, OrderUpdate, TransitionJob, TransitionOutcome,
};
use crate::storage::postgres::PgStore;
use crate::storage::{Result, Ts};

/// Built once: the statement text is the same for every transition.
static TRANSITION_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(transition_sql);

fn transition_sql() -> String {
    let fields = super::store::ORDER_FIELDS;
    format!(
        "WITH upd AS (
            UPDATE orders SET status = $1, payment_status = $2, carrier = coalesce($3, carrier),
                   tracking_number = coalesce($4, tracking_number),
                   payment_reference = coalesce($5, payment_reference), version = version + 1, updated_at = $6
            WHERE id = $7 AND version = $8
            RETURNING {fields}
        ), locked AS (
            SELECT i.id FROM items i WHERE i.id = ANY($9) AND EXISTS (SELECT 1 FROM upd)
            ORDER BY i.id FOR NO KEY UPDATE
        ), rel AS (
            UPDATE items i SET stock = i.stock + r.qty, updated_at = $6
            FROM unnest($9::uuid[], $10::int[]) AS r(item_id, qty) JOIN locked ON locked.id = r.item_id
            WHERE i.id = r.item_id
        ), ev AS (
            INSERT INTO order_events (order_id, customer_id, event, status, previous_status, note, location, carrier,
                                      tracking_number, description, carrier_status, estimated_delivery, actor, at)
            SELECT upd.id, upd.customer_id, e.event, e.status, e.previous_status, e.note, e.location, e.carrier,
                   e.tracking_number, e.description, e.carrier_status, e.estimated_delivery, e.actor, coalesce(e.at, $6)
            FROM upd CROSS JOIN unnest($11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
                                       $17::text[], $18::text[], $19::text[], $20::text[], $21::text[],
                                       $22::timestamptz[])
                 WITH ORDINALITY AS e(event, status, previous_status, note, location, carrier, tracking_number,
                                      description, carrier_status, estimated_delivery, actor, at, n)
            ORDER BY e.n
        ), pay AS (
            {pay}
        )
        SELECT {fields} FROM upd",
        pay = crate::payments::store::UPSERT_PAYMENT_AFTER_UPDATE
    )
}

/// Group commit for transitions on PostgreSQL.
pub(crate) type Transitioner = GroupCommit<TransitionJob, TransitionOutcome>;

/// Starts `workers` transition workers over `pool` (they hold only the pool).
pub(crate) fn spawn_transitioner(pool: PgPool, workers: usize) -> Transitioner {
    GroupCommit::spawn("transition", workers, move |batch| {
        let pool = pool.clone();
        async move { transition_batch(&pool, batch).await }
    })
}

impl PgStore {
    pub(crate) async fn transition_single_statement(
        &self,
        current: &OrderRecord,
        u: &OrderUpdate,
        release_stock: bool,
        events: &[NewEvent],
        at: Ts,
    ) -> Result<TransitionOutcome> {
        let job = TransitionJob::new(current, u, release_stock, events, at);
        match self.transitioner() {
            Some(queue) => queue.submit(job).await,
            None => transition_one(self.writer(), &job).await,
        }
    }
}

/// Applies a batch: in one statement when there are several, one by one when that fails.
async fn transition_batch(
    pool: &PgPool,
    batch: Vec<TransitionJob>,
) -> Vec<Result<TransitionOutcome>> {
    together_or_alone(
        "transition",
        batch.len(),
        transition_together(pool, &batch),
        |i| transition_one(pool, &batch[i]),
    )
    .await
}

/// One transition, one statement (`TRANSITION_SQL`).
async fn transition_one(pool: &PgPool, job: &TransitionJob) -> Result<TransitionOutcome> {
    let (u, events, at) = (&job.update, &job.events, job.at);
    let (ids, qtys): (Vec<Uuid>, Vec<i32>) = job.release.iter().copied().unzip();
    let col =
        |f: fn(&NewEvent) -> Option<String>| events.iter().map(f).collect::<Vec<Option<String>>>();
    let row =
        sqlx::query_as::<sqlx::Postgres, OrderRow>(sqlx::AssertSqlSafe(TRANSITION_SQL.as_str()))
            .bind(&u.status)
            .bind(&u.payment_status)
            .bind(&u.carrier)
            .bind(&u.tracking_number)
            .bind(&u.payment_reference)
            .bind(at)
            .bind(job.id)
            .bind(job.version)
            .bind(&ids)
            .bind(&qtys)
            .bind(col(|e| Some(e.event.to_owned())))
            .bind(col(|e| Some(e.status.clone())))
            .bind(col(|e| e.previous_status.clone()))
            .bind(col(|e| e.note.clone()))
            .bind(col(|e| e.location.clone()))
            .bind(col(|e| e.carrier.clone()))
            .bind(col(|e| e.tracking_number.clone()))
            .bind(col(|e| e.description.clone()))
            .bind(col(|e| e.carrier_status.clone()))
            .bind(col(|e| e.estimated_delivery.clone()))
            .bind(col(|e| e.actor.clone()))
            .bind(events.iter().map(|e| e.at).collect::<Vec<Option<Ts>>>());
    let w = u.payment.as_ref();
    let row = row
        .bind(Uuid::now_v7())
        .bind(w.map(|w| w.kind.as_str()))
        .bind(w.map(|w| w.idempotency_key.as_str()))
        .bind(w.and_then(|w| w.method.as_deref()))
        .bind(w.map(|w| w.amount))
        .bind(w.map(|w| w.currency.as_str()))
        .bind(w.map(|w| w.status.as_str()))
        .bind(w.and_then(|w| w.reference.as_deref()))
        .bind(w.map(|w| w.attempts))
        .bind(w.and_then(|w| w.error.as_deref()))
        .bind(w.and_then(|w| w.next_attempt_at))
        .fetch_optional(pool)
        .await?;
    Ok(match row {
        Some(order) => TransitionOutcome::Applied(order),
        None => TransitionOutcome::Stale,
    })
}

/// Many transitions in one statement: `TRANSITION_SQL` over arrays, every row tagged with
/// its job's index `n`. Each job's compare-and-set stands alone (a stale one writes
/// nothing and does not stop the others); stock comes back once per item, in item id
/// order; the timeline rows go in the batch's order.
static TRANSITION_BATCH_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let fields = super::store::ORDER_FIELDS;
    let returned = fields
        .split(", ")
        .map(|f| format!("o.{f}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH job AS (
            SELECT * FROM unnest($1::int[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                                 $7::text[], $8::text[], $9::timestamptz[])
                AS t(n, id, version, status, payment_status, carrier, tracking_number, payment_reference, at)
        ), upd AS (
            UPDATE orders o SET status = job.status, payment_status = job.payment_status,
                   carrier = coalesce(job.carrier, o.carrier),
                   tracking_number = coalesce(job.tracking_number, o.tracking_number),
                   payment_reference = coalesce(job.payment_reference, o.payment_reference),
                   version = o.version + 1, updated_at = job.at
            FROM job WHERE o.id = job.id AND o.version = job.version
            RETURNING job.n, job.at AS job_at, {returned}
        ), rel AS (
            SELECT r.item_id, sum(r.qty) AS qty
            FROM unnest($10::int[], $11::uuid[], $12::int[]) AS r(n, item_id, qty) JOIN upd ON upd.n = r.n
            GROUP BY r.item_id
        ), locked AS (
            SELECT i.id FROM items i WHERE i.id IN (SELECT item_id FROM rel) ORDER BY i.id FOR NO KEY UPDATE
        ), back AS (
            UPDATE items i SET stock = i.stock + rel.qty, updated_at = $13
            FROM rel JOIN locked ON locked.id = rel.item_id
            WHERE i.id = rel.item_id
        ), ev AS (
            INSERT INTO order_events (order_id, customer_id, event, status, previous_status, note, location, carrier,
                                      tracking_number, description, carrier_status, estimated_delivery, actor, at)
            SELECT upd.id, upd.customer_id, e.event, e.status, e.previous_status, e.note, e.location, e.carrier,
                   e.tracking_number, e.description, e.carrier_status, e.estimated_delivery, e.actor,
                   coalesce(e.at, upd.job_at)
            FROM unnest($14::int[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[],
                        $21::text[], $22::text[], $23::text[], $24::text[], $25::text[], $26::timestamptz[])
                 WITH ORDINALITY AS e(n, event, status, previous_status, note, location, carrier, tracking_number,
                                      description, carrier_status, estimated_delivery, actor, at, k)
            JOIN upd ON upd.n = e.n
            ORDER BY e.k
        ), pay AS (
            INSERT INTO payment_transactions (id, order_id, kind, idempotency_key, method, amount, currency, status,
                                              gateway_reference, attempts, last_error, next_attempt_at, created_at,
                                              updated_at)
            SELECT p.id, upd.id, p.kind, p.key, p.method, p.amount, p.currency, p.status, p.reference, p.attempts,
                   p.error, p.next_attempt_at, upd.job_at, upd.job_at
            FROM unnest($27::int[], $28::uuid[], $29::text[], $30::text[], $31::text[], $32::bigint[], $33::text[],
                        $34::text[], $35::text[], $36::int[], $37::text[], $38::timestamptz[])
                 AS p(n, id, kind, key, method, amount, currency, status, reference, attempts, error,
                      next_attempt_at)
            JOIN upd ON upd.n = p.n
            {conflict}
        )
        SELECT n, {fields} FROM upd",
        conflict = crate::payments::store::PAYMENT_ON_CONFLICT,
    )
});

/// The columns of `TRANSITION_BATCH_SQL`'s arrays.
#[derive(Default)]
struct Columns {
    n: Vec<i32>,
    id: Vec<Uuid>,
    version: Vec<i64>,
    status: Vec<String>,
    payment_status: Vec<String>,
    carrier: Vec<Option<String>>,
    tracking_number: Vec<Option<String>>,
    payment_reference: Vec<Option<String>>,
    at: Vec<Ts>,
    rel_n: Vec<i32>,
    rel_item: Vec<Uuid>,
    rel_qty: Vec<i32>,
    ev_n: Vec<i32>,
    ev: [Vec<Option<String>>; 11],
    ev_at: Vec<Option<Ts>>,
    pay_n: Vec<i32>,
    pay_id: Vec<Uuid>,
    pay_kind: Vec<&'static str>,
    pay_key: Vec<String>,
    pay_method: Vec<Option<String>>,
    pay_amount: Vec<i64>,
    pay_currency: Vec<String>,
    pay_status: Vec<&'static str>,
    pay_reference: Vec<Option<String>>,
    pay_attempts: Vec<i32>,
    pay_error: Vec<Option<String>>,
    pay_next: Vec<Option<Ts>>,
}

impl Columns {
    fn of(batch: &[TransitionJob]) -> Self {
        let mut c = Columns::default();
        // Orders' rows are locked in id order, so that two batches never wait on each
        // other in a cycle.
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&n| batch[n].id);
        for n in order {
            let job = &batch[n];
            let k = n as i32;
            let u = &job.update;
            c.n.push(k);
            c.id.push(job.id);
            c.version.push(job.version);
            c.status.push(u.status.clone());
            c.payment_status.push(u.payment_status.clone());
            c.carrier.push(u.carrier.clone());
            c.tracking_number.push(u.tracking_number.clone());
            c.payment_reference.push(u.payment_reference.clone());
            c.at.push(job.at);
            for (item, qty) in &job.release {
                c.rel_n.push(k);
                c.rel_item.push(*item);
                c.rel_qty.push(*qty);
            }
            if let Some(w) = &u.payment {
                c.pay_n.push(k);
                c.pay_id.push(Uuid::now_v7());
                c.pay_kind.push(w.kind.as_str());
                c.pay_key.push(w.idempotency_key.clone());
                c.pay_method.push(w.method.clone());
                c.pay_amount.push(w.amount);
                c.pay_currency.push(w.currency.clone());
                c.pay_status.push(w.status.as_str());
                c.pay_reference.push(w.reference.clone());
                c.pay_attempts.push(w.attempts);
                c.pay_error.push(w.error.clone());
                c.pay_next.push(w.next_attempt_at);
            }
        }
        // Timeline rows in the order the jobs came.
        for (n, job) in batch.iter().enumerate() {
            for e in &job.events {
                c.ev_n.push(n as i32);
                let fields = [
                    Some(e.event.to_owned()),
                    Some(e.status.clone()),
                    e.previous_status.clone(),
                    e.note.clone(),
                    e.location.clone(),
                    e.carrier.clone(),
                    e.tracking_number.clone(),
                    e.description.clone(),
                    e.carrier_status.clone(),
                    e.estimated_delivery.clone(),
                    e.actor.clone(),
                ];
                for (col, v) in c.ev.iter_mut().zip(fields) {
                    col.push(v);
                }
                c.ev_at.push(e.at);
            }
        }
        c
    }
}

async fn transition_together(
    pool: &PgPool,
    batch: &[TransitionJob],
) -> Result<Vec<TransitionOutcome>> {
    let c = Columns::of(batch);
    let Some(now) = c.at.iter().copied().max() else {
        return Ok(Vec::new());
    };
    // Planned on every run (an unnamed statement): a plan cached while `orders` was small
    // (a fresh database, before autovacuum's first ANALYZE) hash-joins the batch with a
    // sequential scan of every order, and keeps doing so until the next ANALYZE: 6 → 17 ms
    // per batch as orders grew from 28,000 to 60,000, half of checkout's throughput. A
    // custom plan sees the table's current size, and costs far less than one order's
    // share of the statement.
    let mut q = sqlx::query::<sqlx::Postgres>(sqlx::AssertSqlSafe(TRANSITION_BATCH_SQL.as_str()))
        .persistent(false)
        .bind(&c.n)
        .bind(&c.id)
        .bind(&c.version)
        .bind(&c.status)
        .bind(&c.payment_status)
        .bind(&c.carrier)
        .bind(&c.tracking_number)
        .bind(&c.payment_reference)
        .bind(&c.at)
        .bind(&c.rel_n)
        .bind(&c.rel_item)
        .bind(&c.rel_qty)
        .bind(now)
        .bind(&c.ev_n);
    for col in &c.ev {
        q = q.bind(col);
    }
    let rows = q
        .bind(&c.ev_at)
        .bind(&c.pay_n)
        .bind(&c.pay_id)
        .bind(&c.pay_kind)
        .bind(&c.pay_key)
        .bind(&c.pay_method)
        .bind(&c.pay_amount)
        .bind(&c.pay_currency)
        .bind(&c.pay_status)
        .bind(&c.pay_reference)
        .bind(&c.pay_attempts)
        .bind(&c.pay_error)
        .bind(&c.pay_next)
        .fetch_all(pool)
        .await?;
    let mut outcomes: Vec<TransitionOutcome> =
        batch.iter().map(|_| TransitionOutcome::Stale).collect();
    for row in rows {
        let n: i32 = row.try_get("n")?;
        let order = OrderRow::from_row(&row)?;
        if let Some(slot) = usize::try_from(n).ok().and_then(|n| outcomes.get_mut(n)) {
            *slot = TransitionOutcome::Applied(order);
        }
    }
    Ok(outcomes)
}
