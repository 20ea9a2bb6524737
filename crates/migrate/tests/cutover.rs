//! Cut-over freezes legacy for real (a login role can no longer connect), drains and verifies;
//! writes made on the target afterwards (a contribution through the ledger, a renamed member, a
//! meeting and its register, a withdrawal request and an official's decision, deleted and read
//! notifications) are replayed into legacy by rollback, which reopens it.

#![allow(clippy::unwrap_used)]

use pesachama_migrate::{copy, cutover, generate, source, sync};
use pesachama_testkit::TestDb;
use sqlx::Connection as _;

#[tokio::test]
async fn cutover_freezes_legacy_and_rollback_returns_the_targets_writes() {
    let legacy = TestDb::empty().await;
    let mut src = source::connect(&legacy.url, "legacy").await.unwrap();
    generate::run(
        &mut src,
        &generate::GenerateOptions {
            scale: 0.001,
            quirk_rate: 0.05,
            seed: 5,
        },
    )
    .await
    .unwrap();
    sync::install_capture(&mut src).await.unwrap();
    let role = format!("legacy_app_{}", &legacy.name[legacy.name.len() - 8..]);
    sqlx::raw_sql(&format!("create role {role} login password 'app'; grant connect on database {} to {role}; grant select on all tables in schema public to {role}", legacy.name))
        .execute(&mut src).await.unwrap();
    let app_url = legacy.url.replacen("postgres:", &format!("{role}:"), 1);
    let app_url = match app_url.split_once('@') {
        Some((_, rest)) => format!("postgres://{role}:app@{rest}"),
        None => app_url,
    };
    sqlx::PgConnection::connect(&app_url)
        .await
        .expect("the app role connects before cut-over");

    let target = TestDb::new().await;
    let options = copy::CopyOptions {
        batch_size: 500,
        progress: false,
        ..Default::default()
    };
    copy::run(&legacy.url, &target.url, &options).await.unwrap();
    // A write after the copy, drained by the cut-over.
    sqlx::query("update users set first_name = 'Drained' where id = (select id from users where deleted_at is null order by id limit 1)")
        .execute(&mut src).await.unwrap();
    drop(src);

    let done = cutover::cutover(&legacy.url, &target.url, 500)
        .await
        .unwrap();
    assert!(done.frozen_roles.contains(&role), "{done:?}");
    assert!(done.drained_changes >= 1);
    let refused = sqlx::PgConnection::connect(&app_url).await;
    assert!(refused.is_err(), "legacy refuses the app after cut-over");
    let drained: i64 =
        sqlx::query_scalar("select count(*) from public.users where first_name = 'Drained'")
            .fetch_one(&target.pool)
            .await
            .unwrap();
    assert_eq!(drained, 1);

    // Writes on the target after the cut-over.
    let (chama, user): (uuid::Uuid, uuid::Uuid) = sqlx::query_as(
        "select m.chama_id, m.user_id from public.chama_members m join public.chamas c on c.id = m.chama_id
          where m.status = 'active' and c.status = 'active' order by m.id limit 1",
    )
    .fetch_one(&target.pool).await.unwrap();
    let tx: uuid::Uuid = sqlx::query_scalar(
        "select internal.record_contribution($1, $2, 777700, 'cash', 'after-cutover')",
    )
    .bind(chama)
    .bind(user)
    .fetch_one(&target.pool)
    .await
    .unwrap();
    sqlx::query("update public.users set last_name = 'AfterCutover' where id = $1")
        .bind(user)
        .execute(&target.pool)
        .await
        .unwrap();
    // A withdrawal request by the member, and an official's approval, as the app makes them.
    let official: uuid::Uuid = sqlx::query_scalar(
        "select user_id from public.chama_members where chama_id = $1 and user_id <> $2
            and status = 'active' and role in ('chairperson', 'treasurer', 'secretary') limit 1",
    )
    .bind(chama)
    .bind(user)
    .fetch_one(&target.pool)
    .await
    .unwrap();
    let request = as_user(
        &target,
        user,
        "select public.request_disbursement($1, 150000, 'School fees for the term', null, 'rb-1', 'h') -> 'request' ->> 'id'",
        chama,
    )
    .await;
    let request: uuid::Uuid = request.parse().unwrap();
    as_user(
        &target,
        official,
        "select public.decide_disbursement($1, 'approve', 'Approved in the meeting')::text",
        request,
    )
    .await;
    // A meeting scheduled on the target and the member marked present.
    let meeting: uuid::Uuid = sqlx::query_scalar(
        "insert into public.meetings (chama_id, title, scheduled_for, created_by)
         values ($1, 'Planning after the switch', '2027-01-15 07:00:00+00', $2) returning id",
    )
    .bind(chama)
    .bind(official)
    .fetch_one(&target.pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into public.meeting_attendance (meeting_id, chama_id, user_id, status, recorded_by)
         values ($1, $2, $3, 'present', $4)",
    )
    .bind(meeting)
    .bind(chama)
    .bind(user)
    .bind(official)
    .execute(&target.pool)
    .await
    .unwrap();
    // Two migrated notifications: one read, one deleted.
    let migrated: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "select id, legacy_id from public.notifications where legacy_id is not null
          order by id limit 2",
    )
    .fetch_all(&target.pool)
    .await
    .unwrap();
    assert_eq!(migrated.len(), 2, "the generated data has notifications");
    sqlx::query("update public.notifications set read_at = now() where id = $1")
        .bind(migrated[0].0)
        .execute(&target.pool)
        .await
        .unwrap();
    sqlx::query("delete from public.notifications where id = $1")
        .bind(migrated[1].0)
        .execute(&target.pool)
        .await
        .unwrap();
    target.assert_ledger_balanced().await;
    let balance: i64 = sqlx::query_scalar("select balance from public.chamas where id = $1")
        .bind(chama)
        .fetch_one(&target.pool)
        .await
        .unwrap();

    let back = cutover::rollback(&legacy.url, &target.url).await.unwrap();
    assert!(back.replayed >= 2, "{back:?}");
    let mut src = source::connect(&legacy.url, "legacy").await.unwrap();
    let amount: String = sqlx::query_scalar(
        "select amount::text from transactions where reference = 'after-cutover'",
    )
    .fetch_one(&mut src)
    .await
    .unwrap();
    assert_eq!(
        amount, "7777.00",
        "the contribution made on the target is in legacy"
    );
    let legacy_balance: String =
        sqlx::query_scalar("select balance::text from chamas where id = $1")
            .bind(chama)
            .fetch_one(&mut src)
            .await
            .unwrap();
    assert_eq!(
        legacy_balance,
        format!("{}.{:02}", balance / 100, balance % 100)
    );
    let last: String = sqlx::query_scalar("select last_name from users where id = $1")
        .bind(user)
        .fetch_one(&mut src)
        .await
        .unwrap();
    assert_eq!(last, "AfterCutover");
    let (status, approvals, amount): (String, serde_json::Value, String) = sqlx::query_as(
        "select status, approvals, amount::text from disbursement_requests where id = $1",
    )
    .bind(request)
    .fetch_one(&mut src)
    .await
    .unwrap();
    assert_eq!(amount, "1500.00");
    assert!(status == "pending" || status == "approved", "{status}");
    assert_eq!(approvals.as_array().unwrap().len(), 1, "{approvals}");
    assert_eq!(approvals[0]["user_id"], official.to_string());
    assert_eq!(approvals[0]["approved"], true);
    let (title, scheduled, attendees): (String, String, Vec<uuid::Uuid>) =
        sqlx::query_as("select title, scheduled_for::text, attendees from meetings where id = $1")
            .bind(meeting)
            .fetch_one(&mut src)
            .await
            .unwrap();
    assert_eq!(title, "Planning after the switch");
    assert_eq!(
        scheduled, "2027-01-15 10:00:00",
        "Nairobi time, as legacy keeps it"
    );
    assert_eq!(attendees, vec![user]);
    let read: bool = sqlx::query_scalar("select is_read from notifications where id = $1")
        .bind(migrated[0].1.parse::<i64>().unwrap())
        .fetch_one(&mut src)
        .await
        .unwrap();
    assert!(read, "read on the target, read in legacy");
    let deleted: i64 = sqlx::query_scalar("select count(*) from notifications where id = $1")
        .bind(migrated[1].1.parse::<i64>().unwrap())
        .fetch_one(&mut src)
        .await
        .unwrap();
    assert_eq!(deleted, 0, "deleted on the target, deleted in legacy");
    assert!(
        back.not_replayed.is_empty(),
        "every change replayed: {:?}",
        back.not_replayed
    );
    sqlx::PgConnection::connect(&app_url)
        .await
        .expect("legacy reopened for the app");
    // Run again: nothing is inserted twice.
    let _ = tx;
    let again = cutover::rollback(&legacy.url, &target.url).await;
    assert!(again.is_err(), "the cut-over is rolled back already");
    let copies: i64 =
        sqlx::query_scalar("select count(*) from transactions where reference = 'after-cutover'")
            .fetch_one(&mut src)
            .await
            .unwrap();
    assert_eq!(copies, 1);
    sqlx::raw_sql(&format!("revoke all on all tables in schema public from {role}; revoke connect on database {} from {role}; drop role {role}", legacy.name))
        .execute(&mut src).await.unwrap();
}

/// Runs `sql` (one uuid parameter, one text column) as `user` would through the API: their
/// claims in the transaction, so `auth.uid()` is theirs.
async fn as_user(target: &TestDb, user: uuid::Uuid, sql: &str, arg: uuid::Uuid) -> String {
    let mut tx = target.pool.begin().await.unwrap();
    sqlx::query("select set_config('request.jwt.claims', $1, true)")
        .bind(serde_json::json!({"sub": user, "role": "authenticated"}).to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let answer: String = sqlx::query_scalar(sql)
        .bind(arg)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    answer
}
