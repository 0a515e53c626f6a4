//! Three instances in lax on one replica share one replay poller: the
//! lowest address polls, the others ask it; when it goes away the others
//! keep reading their own writes and a new leader takes over.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{CreateTodo, node, pool, registered};
use fly_postgres::Repo;
use fly_postgres::advanced::TrackerStats;
use fly_postgres_testkit::{PgCluster, free_loopback_addrs};
use fly_rpc::StaticPeers;

async fn lax_instance(
    cluster: &PgCluster,
    syd: SocketAddr,
    me: SocketAddr,
    all: &[SocketAddr],
    share: bool,
) -> Result<Repo, fly_postgres::Error> {
    let mut peers = StaticPeers::new().with("syd", syd);
    for addr in all {
        peers = peers.with("lax", *addr);
    }
    registered(Repo::builder())
        .share_replay_polls(share)
        .pool(pool(cluster.replica().connect_options()).await)
        .node(node("lax", peers).listen(me))
        .start()
        .await
}

/// A primary with syd's instance, and `instances` lax instances on the
/// replica, each listing all the others, sharing polls or not.
async fn region(instances: usize, share: bool) -> (PgCluster, Repo, Vec<Repo>) {
    let cluster = PgCluster::builder()
        .replication_delay(Duration::from_millis(3))
        .start()
        .await
        .unwrap();
    let syd = registered(Repo::builder())
        .pool(pool(cluster.primary().connect_options()).await)
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap();
    syd.migrate().await.unwrap();
    fly_postgres::sqlx::raw_sql(common::SCHEMA)
        .execute(syd.local())
        .await
        .unwrap();
    cluster
        .wait_for_catch_up(Duration::from_secs(10))
        .await
        .unwrap();
    let syd_addr = syd.node().local_addr().unwrap();
    // The addresses are reserved before the instances bind them (each
    // lists all the others): an outgoing connection's ephemeral port may
    // take one meanwhile, and then all start again on new ones.
    'tries: for _ in 0..5 {
        let addrs = free_loopback_addrs(instances).unwrap();
        let mut lax = Vec::new();
        for addr in &addrs {
            match lax_instance(&cluster, syd_addr, *addr, &addrs, share).await {
                Ok(repo) => lax.push(repo),
                Err(fly_postgres::Error::Rpc(fly_rpc::Error::Io(e)))
                    if e.kind() == std::io::ErrorKind::AddrInUse =>
                {
                    continue 'tries;
                }
                Err(e) => panic!("{e}"),
            }
        }
        return (cluster, syd, lax);
    }
    panic!("no free addresses for {instances} lax instances in five tries");
}

/// Each instance writes `each` todos through syd and reads every one back
/// from the replica at once; returns the slowest write.
async fn write_and_read_back(instances: &[&Repo], round: &str, each: usize) -> Duration {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, repo) in instances.iter().enumerate() {
        let repo = (*repo).clone();
        let round = round.to_owned();
        tasks.spawn(async move {
            let mut slowest = Duration::ZERO;
            for n in 0..each {
                let started = Instant::now();
                let todo = repo
                    .write(CreateTodo {
                        title: format!("{round}-{i}-{n}"),
                    })
                    .await
                    .unwrap();
                slowest = slowest.max(started.elapsed());
                let seen = common::find_todo(repo.local(), todo.id).await;
                assert_eq!(seen, Some(todo), "instance {i} did not read its own write");
            }
            slowest
        });
    }
    let mut slowest = Duration::ZERO;
    while let Some(done) = tasks.join_next().await {
        slowest = slowest.max(done.unwrap());
    }
    slowest
}

fn polls(stats: &[TrackerStats]) -> u64 {
    stats.iter().map(|s| s.polls).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_polls_its_replica_once_and_survives_its_leader_leaving() {
    let (_cluster, _syd, mut lax) = region(3, true).await;

    // Warm up: every instance meets the leader once.
    write_and_read_back(&lax.iter().collect::<Vec<_>>(), "warm", 3).await;
    let before: Vec<_> = lax.iter().map(|r| r.tracker().stats()).collect();
    write_and_read_back(&lax.iter().collect::<Vec<_>>(), "shared", 30).await;
    let after: Vec<_> = lax.iter().map(|r| r.tracker().stats()).collect();
    let leader_polls = after[0].polls - before[0].polls;
    let follower_polls = (after[1].polls - before[1].polls) + (after[2].polls - before[2].polls);
    assert!(leader_polls > 0, "the lowest address polls: {after:?}");
    assert!(
        follower_polls * 5 <= leader_polls,
        "followers polled {follower_polls} times next to the leader's {leader_polls}"
    );
    for follower in &after[1..] {
        assert!(
            follower.sibling_answers > 0,
            "a follower learnt nothing from the leader: {after:?}"
        );
    }

    // The leader goes away (a deploy, a crash); discovery still lists it.
    let leader = lax.remove(0);
    leader.node().shutdown().await.unwrap();
    drop(leader);
    let survivors: Vec<&Repo> = lax.iter().collect();
    let slowest = write_and_read_back(&survivors, "after-leader", 20).await;
    assert!(
        slowest < Duration::from_secs(2),
        "a write waited {slowest:?} while the region chose a new leader"
    );
    // Within a few seconds the next address leads: a round of writes in
    // which the last instance sends the replica nothing and learns from it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut round = 0;
    loop {
        round += 1;
        let before: Vec<_> = lax.iter().map(|r| r.tracker().stats()).collect();
        write_and_read_back(&survivors, &format!("new-leader-{round}"), 10).await;
        let after: Vec<_> = lax.iter().map(|r| r.tracker().stats()).collect();
        let led = after[0].polls > before[0].polls;
        let followed = after[1].polls == before[1].polls
            && after[1].sibling_answers > before[1].sibling_answers;
        if led && followed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader 10 s after the old one left: {before:?} -> {after:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_off_polls_in_every_instance() {
    let (_cluster, _syd, lax) = region(2, false).await;
    write_and_read_back(&lax.iter().collect::<Vec<_>>(), "solo", 10).await;
    let stats: Vec<_> = lax.iter().map(|r| r.tracker().stats()).collect();
    assert!(
        stats.iter().all(|s| s.polls > 0 && s.sibling_answers == 0),
        "{stats:?}"
    );
    assert!(polls(&stats) > 0);
}
