//! `Lsn` ordering agrees with PostgreSQL's own `pg_lsn` comparison.

use fly_postgres::Lsn;
use fly_postgres::sqlx;
use fly_postgres_testkit::PgCluster;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn lsn_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0..4096u64,
        (0..4u64, 0..4u64).prop_map(|(hi, lo)| (hi << 32) | lo),
        (0..3u64).prop_map(|hi| (hi << 32) | 0xFFFF_FFFF),
    ]
}

#[test]
fn order_agrees_with_postgres_pg_lsn() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt.block_on(PgCluster::start()).unwrap();
    let pool = rt
        .block_on(sqlx::PgPool::connect_with(
            cluster.primary().connect_options(),
        ))
        .unwrap();
    let mut runner = TestRunner::new(Config::with_cases(32));
    runner
        .run(
            &proptest::collection::vec((lsn_value(), lsn_value()), 1..300),
            |pairs| {
                let (a, b): (Vec<String>, Vec<String>) = pairs
                    .iter()
                    .map(|&(a, b)| (Lsn::new(a).to_string(), Lsn::new(b).to_string()))
                    .unzip();
                let rows: Vec<(i32, String, String)> = rt
                    .block_on(
                        sqlx::query_as(
                            "select sign(x::pg_lsn - y::pg_lsn)::int, x::pg_lsn::text, y::pg_lsn::text \
                             from unnest($1::text[], $2::text[]) as u(x, y)",
                        )
                        .bind(&a)
                        .bind(&b)
                        .fetch_all(&pool),
                    )
                    .unwrap();
                for ((&(x, y), (sign, px, py)), (tx, ty)) in pairs.iter().zip(rows).zip(a.iter().zip(&b)) {
                    let ours = Lsn::new(x).cmp(&Lsn::new(y)) as i32;
                    prop_assert_eq!(ours, sign, "{} vs {}", tx, ty);
                    // Postgres prints the same text we do, and we parse its text.
                    prop_assert_eq!(&px, tx);
                    prop_assert_eq!(px.parse::<Lsn>().unwrap().as_u64(), x);
                    prop_assert_eq!(py.parse::<Lsn>().unwrap().as_u64(), y);
                }
                Ok(())
            },
        )
        .unwrap();
}
